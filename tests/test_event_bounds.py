"""Event memory bounded by bytes as well as by count (issue 11, items 11 and 18).

In-process: the ring, consumer queues, replays and per-connection patterns;
the API caps (``POST /events``, a provider's publish) against a real drpd
are at the end.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from drpd.bus import Entry, EventBus, Feed, Notice
from drpd.config import ConfigError, load_settings
from drpd.models import Event
from drpd.patterns import Pattern
from drpd.plugins.server_api import ServerApi
from drpd.testing import DrpdProcess

from .helpers import api_client
from .ws_helpers import connect

KIB = 1024


def big(seq: int, size: int = KIB) -> Event:
    return Event(Type="machines", Action="update", Key="k", Seq=seq, Object={"v": "x" * size})


def drain(feed: Feed | object) -> list[Entry | Notice]:
    out = []
    while (item := feed.pop_nowait()) is not None:  # type: ignore[attr-defined]
        out.append(item)
    return out


def test_the_ring_keeps_at_most_retain_bytes() -> None:
    bus = EventBus(retain=1_000, retain_bytes=10 * KIB)
    for seq in range(1, 51):
        bus.publish(big(seq))
    assert bus.ring_bytes <= 10 * KIB
    kept = bus.retained_after(0)
    assert 5 <= len(kept) < 10 and kept[-1].seq == 50
    # what was evicted is a gap for a resume from before it
    assert bus.floor == kept[0].seq - 1
    feed = bus.feed(since=0)
    feed.register(Pattern("*.*.*"))
    assert [(i.Action) for i in drain(feed) if isinstance(i, Notice)][0] == "gap"


def test_the_newest_event_stays_even_when_bigger_than_the_ring() -> None:
    bus = EventBus(retain_bytes=KIB)
    bus.publish(big(1, 4 * KIB))
    bus.publish(big(2, 4 * KIB))
    assert [e.seq for e in bus.retained_after(0)] == [2]


def test_a_queue_is_bounded_by_bytes_and_says_what_it_missed() -> None:
    bus = EventBus(queue_size=1_000, queue_bytes=5 * KIB)
    sub = bus.subscribe()
    for seq in range(1, 21):
        bus.publish(big(seq))
    items = drain(sub)
    events = [i for i in items if isinstance(i, Entry)]
    assert 3 <= len(events) < 5
    overflow = items[len(events)]
    assert isinstance(overflow, Notice) and overflow.Action == "overflow"
    assert overflow.Object == {"Missed": 20 - len(events)}
    assert sub.queued_bytes == 0
    # room again: the next event is queued
    bus.publish(big(21))
    assert [i.seq for i in drain(sub) if isinstance(i, Entry)] == [21]


def test_one_event_bigger_than_the_queue_bound_still_reaches_an_idle_consumer() -> None:
    bus = EventBus(queue_bytes=KIB)
    sub = bus.subscribe()
    bus.publish(big(1, 8 * KIB))
    bus.publish(big(2, 8 * KIB))
    items = drain(sub)
    assert isinstance(items[0], Entry) and items[0].seq == 1
    assert isinstance(items[1], Notice) and items[1].Object == {"Missed": 1}


def test_a_replay_is_bounded_by_bytes() -> None:
    bus = EventBus(retain=1_000, retain_bytes=1 << 20, queue_bytes=4 * KIB)
    for seq in range(1, 101):
        bus.publish(big(seq))
    feed = bus.feed(since=0)
    feed.backlog_bytes = 10 * KIB
    feed.register(Pattern("*.*.*"))
    items = drain(feed)
    events = [i for i in items if isinstance(i, Entry)]
    assert 5 <= len(events) < 10 and [e.seq for e in events] == list(range(1, len(events) + 1))
    missed = [i for i in items if isinstance(i, Notice) and i.Action == "overflow"]
    assert missed and missed[0].Object == {"Missed": 100 - len(events)}


def test_a_connection_holds_at_most_max_patterns() -> None:
    bus = EventBus(max_patterns=3)
    feed = bus.feed()
    assert all(feed.register(Pattern(f"machines.*.m{i}")) for i in range(3))
    assert feed.register(Pattern("machines.*.m0"))  # again: no new pattern
    assert not feed.register(Pattern("machines.*.m3"))
    assert len(feed.patterns) == 3
    feed.deregister(Pattern("machines.*.m0"))
    assert feed.register(Pattern("machines.*.m3"))


async def test_a_provider_publish_over_max_event_size_is_413() -> None:
    published: list[Event] = []

    async def emit(event: Event) -> Event:
        published.append(event)
        return event

    settings = SimpleNamespace(max_event_size=1000, max_json_depth=64)
    api = ServerApi(settings, SimpleNamespace(emit=emit), SimpleNamespace())  # type: ignore[arg-type]
    body = b'{"Type":"x","Action":"y","Key":"k","Object":"' + b"z" * 2000 + b'"}'
    status, answer = await api.handle("p1", "POST", "/api-server-plugin/v4/publish", body)
    assert status == 413 and b"max_event_size" in answer
    assert not published
    status, _ = await api.handle("p1", "POST", "/api-server-plugin/v4/publish",
                                 b'{"Type":"x","Action":"y","Key":"k"}')
    assert status == 200 and len(published) == 1


async def test_event_caps_over_the_api(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"DRPD_MAX_EVENT_SIZE": "4096", "DRPD_MAX_WS_PATTERNS": "5"}
    with DrpdProcess(tmp_path / "state", env=env, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/events", json={"Type": "t", "Action": "a", "Key": "k",
                                                "Object": "x" * 5000})
            assert r.status_code == 413, r.text
            assert "max_event_size" in r.json()["Messages"][0]
            r = await api.post("/events", json={"Type": "t", "Action": "a", "Key": "k"})
            assert r.status_code == 200, r.text
        async with connect(drpd) as ws:
            for i in range(5):
                await ws.ws.send_message(f"register t.a.k{i}")
                assert (await ws.next())["Action"] == "register"
            await ws.ws.send_message("register t.a.k5")
            frame = await ws.next()
            assert frame["Action"] == "error" and frame["Object"]["Code"] == 422
            assert "max_ws_patterns" in frame["Object"]["Messages"][0]
            # still a working connection: a registered pattern delivers
            async with api_client(drpd) as api:
                assert (await api.post("/events", json={"Type": "t", "Action": "a",
                                                         "Key": "k1"})).status_code == 200
            with trio.fail_after(10):
                assert (await ws.next())["Key"] == "k1"


def test_the_new_limits_must_be_positive() -> None:
    for name in ("event_queue_bytes", "event_retain_bytes", "max_event_size", "max_ws_patterns",
                 "max_define_output", "max_unpack_size", "provider_log_rate",
                 "provider_log_burst"):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: 0}, env={})
    settings = load_settings({}, env={"DRPD_EVENT_RETAIN_BYTES": "1024"})
    assert settings.event_retain_bytes == 1024
