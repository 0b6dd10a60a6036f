"""The event bus, patterns and the resume protocol, in-process (no drpd, no sockets).

The websocket and provider behaviour against a real drpd is in test_ws.py.
"""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from drpd.bus import Entry, EventBus, Feed, Notice
from drpd.client import resolve_settings
from drpd.models import Event
from drpd.patterns import Pattern, PatternError, parse_command
from drpd.plugins.publisher import Publisher
from drpd.wsclient import DELIVER, NOTICE, READY, RESUME, SKIP, EventStream


def ev(seq: int, type_: str = "machines", action: str = "update", key: str = "k") -> Event:
    return Event(Type=type_, Action=action, Key=key, Seq=seq)


def drain(feed: Feed) -> list[Entry | Notice]:
    out = []
    while (item := feed.pop_nowait()) is not None:
        out.append(item)
    return out


def seqs(items: list[Entry | Notice]) -> list[int]:
    return [i.seq for i in items if isinstance(i, Entry)]


def notices(items: list[Entry | Notice]) -> list[tuple[str, str]]:
    return [(i.Action, i.Key) for i in items if isinstance(i, Notice)]


# ------------------------------------------------------------------ patterns
@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ("*.*.*", ("machines", "create", "m1"), True),
        ("machines.*.*", ("machines", "create", "m1"), True),
        ("machines.*.*", ("profiles", "create", "m1"), False),
        ("machines,profiles.create,delete.*", ("profiles", "delete", "p"), True),
        ("machines,profiles.create,delete.*", ("profiles", "update", "p"), False),
        # split on the first two dots only: keys may contain dots
        ("machines.update.m1.example.com", ("machines", "update", "m1.example.com"), True),
        ("machines.update.m1.example.com", ("machines", "update", "m1"), False),
        ("*.*.a.b,c.d", ("x", "y", "c.d"), True),
        ("*.*.a.b,c.d", ("x", "y", "a.b"), True),
        ("*.*.a.b,c.d", ("x", "y", "a"), False),
        # a * among a list means any
        ("machines,*.create.*", ("params", "create", "p"), True),
        # values are exact: no globbing inside a value
        ("mach*.create.*", ("machines", "create", "m"), False),
        ("plugins.*.", ("plugins", "x", ""), False),
    ],
)
def test_pattern_matching(pattern: str, event: tuple[str, str, str], expected: bool) -> None:
    if pattern.endswith("."):
        with pytest.raises(PatternError, match="empty key"):
            Pattern(pattern)
        return
    p = Pattern(pattern)
    assert p.matches(*event) is expected
    assert p.matches_event(Event(Type=event[0], Action=event[1], Key=event[2])) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty pattern"),
        ("machines", "has 1 part"),
        ("machines.create", "has 2 parts"),
        ("machines..x", "empty action"),
        (".create.x", "empty type"),
        ("machines,,profiles.*.*", "empty type"),
        ("machines.* .*", "blanks"),
    ],
)
def test_pattern_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        Pattern(text)


def test_pattern_identity_is_its_text() -> None:
    assert Pattern(" machines.*.* ") == Pattern("machines.*.*")
    assert Pattern("machines.*.*").text == "machines.*.*"
    assert len({Pattern("a.b.c"), Pattern("a.b.c"), Pattern("a.b.d")}) == 2


def test_parse_command() -> None:
    cmd = parse_command("register machines.*.m1.lab")
    assert (cmd.verb, cmd.pattern.text) == ("register", "machines.*.m1.lab")
    assert parse_command("  deregister a.b.c\n").verb == "deregister"
    for bad, message in [("subscribe a.b.c", "unknown command 'subscribe'"),
                         ("register", "empty pattern"), ("", "unknown command"),
                         ("register a.b", "has 2 parts"), ("x" * 5000, "over the limit")]:
        with pytest.raises(PatternError, match=message):
            parse_command(bad)


# ------------------------------------------------------------------ the bus
def test_publish_never_blocks_and_a_full_queue_drops_at_the_tail() -> None:
    bus = EventBus(retain=100, queue_size=3)
    slow = bus.subscribe()
    fast = bus.subscribe()
    got_fast = []
    for seq in range(1, 9):
        bus.publish(ev(seq))
        got_fast.append(fast.pop_nowait())
    # the slow consumer kept the first three and was told how many it missed
    items = [slow.pop_nowait() for _ in range(4)]
    assert [i.seq for i in items[:3] if isinstance(i, Entry)] == [1, 2, 3]
    assert isinstance(items[3], Notice) and items[3].Action == "overflow"
    assert items[3].Object == {"Missed": 5} and slow.total_missed == 5
    assert slow.pop_nowait() is None
    # everyone else got everything
    assert [i.seq for i in got_fast if isinstance(i, Entry)] == list(range(1, 9))
    assert fast.total_missed == 0
    # the counters drpd.metrics exports
    assert (bus.published, bus.delivered, bus.dropped) == (8, 11, 5)


def test_overflow_notice_sits_where_the_gap_is() -> None:
    bus = EventBus(retain=100, queue_size=2)
    sub = bus.subscribe()
    for seq in (1, 2, 3, 4):  # 3 and 4 are dropped
        bus.publish(ev(seq))
    assert isinstance(sub.pop_nowait(), Entry)  # 1: room for one more
    bus.publish(ev(5))  # the notice goes in before 5
    items = [sub.pop_nowait(), sub.pop_nowait(), sub.pop_nowait()]
    assert isinstance(items[0], Entry) and items[0].seq == 2
    assert isinstance(items[1], Notice) and items[1].Object == {"Missed": 2}
    assert isinstance(items[2], Entry) and items[2].seq == 5
    assert "Seq" not in items[1].text()  # per-connection frames carry no Seq


def test_entry_json_is_encoded_once_and_shared() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish(ev(1))
    ea, eb = a.pop_nowait(), b.pop_nowait()
    assert ea is eb
    assert isinstance(ea, Entry) and b'"Seq":1' in ea.json() and ea.size == len(ea.json())
    # kept as its websocket frame: the same bytes for every subscriber
    assert ea.frame() is eb.frame() and ea.frame().endswith(ea.json())
    assert len(ea.frame()) - ea.size == 2  # a 7-bit length: the JSON and two bytes


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_a_shared_frame_is_what_a_client_parses_as_one_text_message(size: int) -> None:
    """Every header length of RFC 6455 (7-bit, 16-bit, 64-bit), read back by
    wsproto's client side, as a websocket client of drpd reads it."""
    from wsproto.frame_protocol import FrameProtocol, Opcode

    from drpd.wsframes import text_frame

    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(text_frame(payload))
    frames = list(client.received_frames())
    assert len(frames) == 1
    frame = frames[0]
    assert frame.opcode is Opcode.TEXT and frame.frame_finished and frame.message_finished
    assert frame.payload == payload.decode()


async def test_get_waits_and_close_ends_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe(lambda e: e.Type == "machines")
    got: list[int] = []

    async def reader() -> None:
        async for item in sub:
            assert isinstance(item, Entry)
            got.append(item.seq)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            bus.publish(ev(1))
            bus.publish(ev(2, type_="profiles"))
            bus.publish(ev(3))
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
    assert got == [1, 3] and bus.subscribers == 0


def test_ring_keeps_the_last_events_and_moves_the_floor() -> None:
    bus = EventBus(retain=5)
    bus.resume_from(100)
    assert (bus.floor, bus.last_seq, bus.oldest) == (100, 100, 101)
    for seq in range(101, 109):
        bus.publish(ev(seq))
    assert [e.seq for e in bus.retained_after(0)] == [104, 105, 106, 107, 108]
    assert [e.seq for e in bus.retained_after(106)] == [107, 108]
    assert bus.retained_after(108) == []
    assert (bus.floor, bus.oldest, bus.last_seq) == (103, 104, 108)


# ------------------------------------------------------------------ feeds
def test_register_acks_and_each_event_once() -> None:
    bus = EventBus()
    feed = bus.feed()
    bus.publish(ev(1))  # nothing registered yet
    feed.register(Pattern("machines.*.*"))
    feed.register(Pattern("*.update.*"))
    feed.register(Pattern("machines.*.*"))  # again: acknowledged, changes nothing
    bus.publish(ev(2))  # matches both: sent once
    bus.publish(ev(3, type_="profiles", action="create"))  # matches neither
    feed.deregister(Pattern("machines.*.*"))
    bus.publish(ev(4, action="create"))  # only the deregistered pattern matched
    bus.publish(ev(5, type_="params"))  # *.update.*
    feed.deregister(Pattern("nothing.*.*"))  # not registered: acknowledged anyway
    items = drain(feed)
    assert seqs(items) == [2, 5]
    assert notices(items) == [("register", "machines.*.*"), ("register", "*.update.*"),
                              ("register", "machines.*.*"), ("deregister", "machines.*.*"),
                              ("deregister", "nothing.*.*")]
    acks = [i for i in items if isinstance(i, Notice)]
    assert [a.Object["Last"] for a in acks] == [1, 1, 1, 3, 5]


def test_since_replays_what_matches_and_was_not_sent() -> None:
    bus = EventBus()
    for seq in range(1, 7):
        bus.publish(ev(seq, type_="machines" if seq % 2 else "profiles"))
    feed = bus.feed(since=2)
    feed.register(Pattern("machines.*.*"))  # replays 3, 5
    bus.publish(ev(7))  # live
    feed.register(Pattern("*.*.*"))  # replays 4, 6 only: 3, 5, 7 were sent already
    bus.publish(ev(8, type_="profiles"))
    items = drain(feed)
    assert seqs(items) == [3, 5, 7, 4, 6, 8]
    assert [(n.Action, n.Object) for n in items if isinstance(n, Notice)] == [
        ("register", {"Last": 6}), ("register", {"Last": 7})]


def test_since_remembers_what_deregistered_patterns_sent() -> None:
    bus = EventBus()
    bus.publish(ev(1))
    feed = bus.feed(since=0)
    feed.register(Pattern("machines.*.*"))  # replays 1
    bus.publish(ev(2))
    feed.deregister(Pattern("machines.*.*"))
    bus.publish(ev(3))  # not sent: nothing registered
    feed.register(Pattern("*.*.*"))  # replays 3 only
    assert seqs(drain(feed)) == [1, 2, 3]


def test_a_resume_older_than_the_ring_is_told_of_the_gap() -> None:
    bus = EventBus(retain=3)
    for seq in range(1, 7):
        bus.publish(ev(seq))
    feed = bus.feed(since=1)
    feed.register(Pattern("*.*.*"))
    items = drain(feed)
    gap = items[0]
    assert isinstance(gap, Notice) and gap.Action == "gap" and gap.Key == "*.*.*"
    assert gap.Object == {"Since": 1, "Oldest": 4}
    assert seqs(items) == [4, 5, 6]
    # a Seq this drpd never reached is a gap too (another drpd, a new store)
    other = bus.feed(since=99)
    other.register(Pattern("*.*.*"))
    assert notices(drain(other))[0] == ("gap", "*.*.*")
    # caught up: no gap
    fine = bus.feed(since=6)
    fine.register(Pattern("*.*.*"))
    assert notices(drain(fine)) == [("register", "*.*.*")]


def test_a_restart_is_a_gap_for_older_resumes() -> None:
    bus = EventBus()
    bus.resume_from(10_000)  # the store's Seq when this drpd started
    feed = bus.feed(since=9_990)
    feed.register(Pattern("*.*.*"))
    assert notices(drain(feed))[0] == ("gap", "*.*.*")


def test_a_replay_is_bounded_and_the_rest_counted_missed() -> None:
    bus = EventBus(retain=50, queue_size=10)
    for seq in range(1, 51):
        bus.publish(ev(seq))
    feed = bus.feed(since=0, maxlen=10)
    feed.backlog_limit = 20
    feed.register(Pattern("*.*.*"))
    items = drain(feed)
    assert seqs(items) == list(range(1, 21))
    overflow = items[20]
    assert isinstance(overflow, Notice) and overflow.Action == "overflow"
    assert overflow.Object == {"Missed": 30}
    assert notices(items)[-1] == ("register", "*.*.*")


# ------------------------------------------------------------------ resume, simulated
def _client(patterns: list[str]) -> EventStream:
    return EventStream(resolve_settings(endpoint="http://127.0.0.1:9", env={}), patterns)


@pytest.mark.parametrize("seed", range(40))
def test_resume_protocol_loses_and_repeats_nothing(seed: int) -> None:
    """Random publishes, registrations and dropped connections, bus against client.

    The client registers its patterns at each connection (the server handles
    them one by one, with events published in between), reads a random part
    of what is queued, and loses the connection; at the end it reads all.
    Every matching event must be delivered exactly once.
    """
    rng = random.Random(seed)
    types, actions = ["machines", "profiles", "params"], ["create", "update", "delete"]
    patterns = rng.sample(["machines.*.*", "*.delete.*", "profiles,params.update.*",
                           "*.*.k1", "params.*.*"], k=rng.randint(1, 3))
    bus = EventBus(retain=10_000, queue_size=10_000)
    client = _client(patterns)
    published: list[Event] = []
    delivered: list[int] = []

    def publish_some(most: int) -> None:
        for _ in range(rng.randint(0, most)):
            event = Event(Type=rng.choice(types), Action=rng.choice(actions),
                          Key=rng.choice(["k1", "k2"]), Seq=len(published) + 1)
            published.append(event)
            bus.publish(event)

    def read(feed: Feed, waiting: set[str], limit: int | None) -> None:
        count = 0
        while limit is None or count < limit:
            item = feed.pop_nowait()
            if item is None:
                return
            count += 1
            frame = item.event if isinstance(item, Entry) else Event(
                Type=item.Type, Action=item.Action, Key=item.Key, Object=item.Object)
            verdict = client.on_frame(frame, waiting)
            assert verdict != NOTICE  # nothing is evicted from this ring
            if verdict == DELIVER:
                delivered.append(frame.Seq)

    publish_some(20)
    client.since = start = len(published)  # the client starts from a known Seq
    for _ in range(rng.randint(1, 6)):
        client.begin()
        with bus.feed(since=client.since) as feed:
            waiting = set(client.patterns)
            for pattern in client.patterns:
                publish_some(5)
                feed.register(Pattern(pattern))
                if rng.random() < 0.5:
                    read(feed, waiting, rng.randint(0, 5))
            publish_some(10)
            read(feed, waiting, rng.randint(0, 30))
    client.begin()
    with bus.feed(since=client.since) as feed:
        waiting = set(client.patterns)
        for pattern in client.patterns:
            feed.register(Pattern(pattern))
        publish_some(10)
        read(feed, waiting, None)
    wanted = [e.Seq for e in published[start:]
              if any(Pattern(p).matches_event(e) for p in patterns)]
    assert len(delivered) == len(set(delivered)), "an event was delivered twice"
    assert sorted(delivered) == wanted, "an event was lost"


def test_client_frame_verdicts() -> None:
    client = _client(["a.*.*", "b.*.*"])
    client.begin()
    waiting = {"a.*.*", "b.*.*"}
    ack = Event(Type="websocket", Action="register", Key="a.*.*", Object={"Last": 7})
    assert client.on_frame(ack, waiting) == SKIP
    assert client.on_frame(ev(5, type_="a"), waiting) == DELIVER
    assert client.on_frame(ev(5, type_="a"), waiting) == SKIP  # a replayed duplicate
    last = Event(Type="websocket", Action="register", Key="b.*.*", Object={"Last": 9})
    assert client.on_frame(last, waiting) == READY and client.since == 9
    assert client.on_frame(ev(9, type_="b"), waiting) == SKIP
    assert client.on_frame(ev(10, type_="b"), waiting) == DELIVER and client.since == 10
    assert client.on_frame(Event(Type="websocket", Action="overflow"), waiting) == RESUME
    assert client.on_frame(Event(Type="websocket", Action="gap"), waiting) == NOTICE
    # an event someone posted with Type websocket still has a Seq: it is an event
    assert client.on_frame(Event(Type="websocket", Action="x", Seq=11), waiting) == DELIVER


# ------------------------------------------------------------------ SDK declarations
def test_sdk_event_selection_declarations() -> None:
    from drpd.sdk import Provider

    plain = Provider("plain")

    @plain.publish
    async def every(ctx: object, event: Event) -> None: ...

    assert plain.has_publish and not plain.selects_events

    chosen = Provider("chosen", events=["machines.*.*", "plugins.create,delete.*"])

    @chosen.publish
    async def some(ctx: object, event: Event) -> None: ...

    @chosen.events("watch.*.*")
    async def watch(ctx: object, event: Event) -> None: ...

    # selected events come over the websocket, not HasPublish
    assert chosen.selects_events and not chosen.has_publish
    assert chosen.definition()["HasPublish"] is False
    assert [p.text for p in chosen.publish_patterns] == ["machines.*.*", "plugins.create,delete.*"]
    assert [p.text for p in chosen.event_handlers[0][0]] == ["watch.*.*"]
    with pytest.raises(ValueError, match="has 2 parts"):
        Provider("bad", events=["machines.*"])
    with pytest.raises(TypeError, match="list of patterns"):
        Provider("bad", events="machines.*.*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one pattern"):
        chosen.events()
    with pytest.raises(ValueError, match="empty type"):
        chosen.events(".x.y")


def test_selected_events_need_a_handler_and_keep_the_import_light() -> None:
    code = (
        "import sys\n"
        "from drpd.sdk import Provider\n"
        "p = Provider('p', events=['machines.*.*'])\n"
        "print([m for m in ('trio', 'trio_websocket', 'httpx') if m in sys.modules])\n"
        "sys.exit(p.run(['serve', '/tmp/drpdt-none-p.sock', '/tmp/drpdt-none-s.sock']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
    assert out.returncode == 1
    assert "cannot serve" in out.stderr and "needs a @provider.publish handler" in out.stderr


# ------------------------------------------------------------------ HasPublish forwarding
class _FakeSup:
    """What a Publisher is given by its supervisor: availability and where errors go."""

    def __init__(self, provider: object) -> None:
        self.available = True
        self.provider = provider
        self.recorded: list[str] = []
        self.logged: list[str] = []

    def publisher(self, bus: EventBus) -> Publisher:
        provider = self.provider
        return Publisher(
            bus, "fake",
            lambda: bool(provider.HasPublish and not provider.IgnoreEvents),  # type: ignore[attr-defined]
            available=lambda: self.available, note_error=self.recorded.append,
            log_line=lambda source, line: self.logged.append(line))


class _FakeClient:
    """Answers publish calls; the first ``fail`` calls raise like a restarting provider."""

    def __init__(self, fail: int = 0, status: int = 200) -> None:
        self.fail = fail
        self.status = status
        self.seqs: list[int] = []
        self.calls = 0

    async def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
        from drpd.http11 import ConnectionClosed

        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.calls <= self.fail:
            raise ConnectionClosed("provider restarting")
        assert (method, target) == ("POST", "/api-plugin/v4/publish")
        self.seqs.append(_json(body)["Seq"])
        return self.status, b'{"Code":200}'


def _json(body: bytes | None) -> dict:
    return json.loads(body or b"{}")


async def test_publisher_forwards_in_order_keeps_events_across_failures_and_counts_missed(
        autojump_clock: trio.abc.Clock) -> None:
    bus = EventBus(queue_size=5)
    wants = SimpleNamespace(HasPublish=True, IgnoreEvents=False)
    sup = _FakeSup(wants)
    publisher = sup.publisher(bus)
    publisher.open()
    for seq in range(1, 9):  # 5 fit, 3 are dropped while nobody forwards
        bus.publish(ev(seq))
    client = _FakeClient(fail=2)
    with trio.move_on_after(10):  # autojump: the retries' back-off takes no real time
        await publisher.forward(client, 5.0)  # type: ignore[arg-type]
    assert client.seqs == [1, 2, 3, 4, 5]  # the first one survived two failed attempts
    assert sup.recorded == [
        "missed 3 event(s): more than 5 (or 16777216 bytes of them) waited for delivery"]
    # the instance stops being available: forwarding ends, the rest stays queued
    bus.publish(ev(9))
    sup.available = False
    await publisher.forward(client, 5.0)  # type: ignore[arg-type]
    sup.available = True
    bus.publish(ev(10))
    with trio.move_on_after(1):
        await publisher.forward(client, 5.0)  # type: ignore[arg-type]
    assert client.seqs == [1, 2, 3, 4, 5, 9, 10]
    # a refused event is logged, not retried
    refusing = _FakeClient(status=500)
    bus.publish(ev(11))
    with trio.move_on_after(1):
        await publisher.forward(refusing, 5.0)  # type: ignore[arg-type]
    assert refusing.seqs == [11] and "refused (500)" in sup.logged[0]
    publisher.close()
    assert bus.subscribers == 0


@pytest.mark.parametrize(("has_publish", "ignore"), [(False, False), (True, True)])
async def test_publisher_queues_nothing_for_providers_that_want_no_events(
        has_publish: bool, ignore: bool) -> None:
    bus = EventBus()
    sup = _FakeSup(SimpleNamespace(HasPublish=has_publish, IgnoreEvents=ignore))
    publisher = sup.publisher(bus)
    publisher.open()
    bus.publish(ev(1))
    assert publisher._sub is not None and len(publisher._sub) == 0
    publisher.close()


class _LoopTurns(trio.abc.Instrument):
    """Counts the event loop's turns (each ends polling for I/O)."""

    def __init__(self) -> None:
        self.turns = 0

    def before_io_wait(self, timeout: float) -> None:
        self.turns += 1


@pytest.mark.parametrize("paced", [True, False])
async def test_the_pacer_wakes_a_few_consumers_per_loop_turn(paced: bool) -> None:
    """One event for a hundred consumers: with the pacer running, at most
    ``WAKE_BATCH`` of them run between two polls for I/O (so a request that
    arrives meanwhile is read), and every one of them; without it, all in
    one turn."""
    bus = EventBus()
    turns = _LoopTurns()
    trio.lowlevel.add_instrument(turns)
    woken: list[tuple[int, int]] = []  # (consumer, loop turn)
    subs = [bus.subscribe() for _ in range(100)]

    async def consume(n: int, sub: Any) -> None:
        await sub.wait()
        woken.append((n, turns.turns))

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                if paced:
                    await nursery.start(bus.pace)
                for n, sub in enumerate(subs):
                    nursery.start_soon(consume, n, sub)
                await trio.testing.wait_all_tasks_blocked()
                bus.publish(ev(1))
                while len(woken) < len(subs):
                    await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(turns)
    per_turn = collections.Counter(turn for _, turn in woken)
    assert sorted(n for n, _ in woken) == list(range(100))
    if paced:
        assert max(per_turn.values()) <= EventBus.WAKE_BATCH
    else:
        assert len(per_turn) == 1
