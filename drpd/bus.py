"""The in-process event bus.

Every event source (the store's change hook, ``POST /events``, providers'
``publish``, plugin lifecycle) ends in :meth:`EventBus.publish`, in Seq
order: the store hands out Seqs and calls ``publish`` under its write lock.

``publish`` never blocks and never awaits. Each consumer owns a queue
(:class:`Subscription`) bounded in events and in bytes (an event's bytes are
its JSON, encoded once at publish and shared by every holder); a consumer that falls behind has the events
that do not fit dropped *at the tail* and, at the place of the gap, finds an
``overflow`` :class:`Notice` saying how many it missed, while every other
consumer is unaffected. Dropping at the tail keeps what a consumer did get
contiguous, so a resuming client (``since=``) can fill the gap from the ring.

A ring buffer keeps the last ``retain`` events, and at most ``retain_bytes``
of them (counted as their JSON), for consumers that resume from a Seq. ``floor`` is the highest Seq the ring can no longer answer for:
the Seq of the last evicted event, or the store's Seq when drpd started
(events of an earlier run are gone, and Seqs of that run may have been
reserved but never used, so drpd cannot tell whether a client saw them all).

:class:`Feed` is the websocket's consumer: a subscription whose filter is the
set of patterns the client registered, which replays retained events when a
pattern is registered on a connection opened with ``since=`` (see its
docstring for the no-gap, no-duplicate argument).

Resource handling: a subscription is registered with the bus until
``close()`` (or the end of its ``with`` block); an unclosed one keeps
receiving, so every user opens it in a ``with``.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from typing import Any, Self

import msgspec
import trio

from .models import Event
from .patterns import Pattern
from .wsframes import text_frame

__all__ = ["Entry", "EventBus", "Feed", "Item", "Notice", "Subscription"]

Filter = Callable[[Event], bool]
_encode = msgspec.json.Encoder().encode


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Entry:
    """One published event, shared by the ring and every queue that holds it.

    Its JSON is encoded once, at publish, however many consumers send it,
    and kept as the websocket text frame that carries it (``frame``: a
    server's frames are not masked and drpd negotiates no extension, so
    every subscriber gets the same bytes): with a hundred websocket
    subscribers that is most of the per-event cost, and the JSON's length is
    what the event counts against the byte bounds (the frame's header adds
    2 to 10 bytes). The event's ``Object`` and ``Original`` then live in
    those bytes only: ``event`` keeps the header (Type, Action, Key, Seq,
    Time, Principal) that filters and patterns look at, so a retained event
    costs its JSON once, not also the objects it was encoded from.
    Consumers must treat ``event`` as frozen.
    """

    __slots__ = ("event", "size", "_frame")

    def __init__(self, event: Event) -> None:
        data = _encode(event)
        self.size = len(data)
        self._frame = text_frame(data)
        self.event = Event(Time=event.Time, Type=event.Type, Action=event.Action,
                           Key=event.Key, Principal=event.Principal, Seq=event.Seq)

    @property
    def seq(self) -> int:
        return self.event.Seq

    def json(self) -> bytes:
        return self._frame[len(self._frame) - self.size:]

    def text(self) -> str:
        return self.json().decode()

    def frame(self) -> bytes:
        """The websocket text frame of the JSON."""
        return self._frame


class Notice(msgspec.Struct, kw_only=True):
    """A frame for one consumer only: Type ``websocket`` and, unlike events, no Seq.

    Actions: ``register`` / ``deregister`` (the acknowledgement of a command;
    ``Key`` is the pattern, ``Object.Last`` the bus's last Seq when it took
    effect), ``overflow`` (``Object.Missed``: events dropped here because the
    consumer fell behind), ``gap`` (a resume that the ring cannot serve:
    ``Object.Since`` asked, ``Object.Oldest`` the oldest retained Seq) and
    ``error`` (a malformed frame: ``Object`` is a DRP Error).
    """

    Time: str = ""
    Type: str = "websocket"
    Action: str
    Key: str = ""
    Object: Any = None

    def text(self) -> str:
        if not self.Time:
            self.Time = _now()
        return _encode(self).decode()

    def json(self) -> bytes:
        return self.text().encode()


Item = Entry | Notice


class Subscription:
    """One consumer's bounded queue of events and notices, in delivery order.

    At most ``maxlen`` *live* events, and at most ``max_bytes`` of them, wait
    (one event always fits an empty queue, however big); a live event that
    finds the queue full is dropped and counted (``missed``), and an ``overflow`` notice is
    queued at that place once there is room again or the queue runs dry.
    Items added with :meth:`push` (acknowledgements, replays) do not count
    against ``maxlen``: whoever pushes them bounds them.

    Read with ``get`` / ``async for``, or ``peek_nowait`` then ``pop_nowait``
    when an item must stay queued until it was delivered (HasPublish
    forwarding keeps an event across a provider restart that way). One task
    reads a subscription.
    """

    def __init__(self, bus: EventBus, maxlen: int, accept: Filter | None,
                 max_bytes: int | None = None) -> None:
        self._bus = bus
        self._items: deque[tuple[Item, bool]] = deque()
        self._live = 0
        self._live_bytes = 0
        #: bytes of every queued event, live or pushed (replays)
        self.queued_bytes = 0
        self.maxlen = maxlen
        self.max_bytes = max_bytes if max_bytes is not None else bus.queue_bytes
        self._accept = accept
        self._wakeup = trio.Event()
        #: queued for the bus's pacer (``EventBus.pace``), not yet woken
        self._wake_queued = False
        #: dropped events not yet reported by an overflow notice
        self.missed = 0
        #: every event ever dropped here
        self.total_missed = 0
        self.closed = False

    # -- the bus side (synchronous, never blocks) ---------------------------
    def _offer(self, entry: Entry) -> None:
        if self._accept is not None and not self._accept(entry.event):
            return
        size = entry.size
        if self._live >= self.maxlen or (self._live and self._live_bytes + size > self.max_bytes):
            self.missed += 1
            self.total_missed += 1
            self._bus.dropped += 1
            return
        self._flush_missed()
        self._items.append((entry, True))
        self._live += 1
        self._live_bytes += size
        self.queued_bytes += size
        self._bus._wake(self)

    def _flush_missed(self) -> None:
        if self.missed:
            notice = Notice(Time=_now(), Action="overflow", Object={"Missed": self.missed})
            self._items.append((notice, False))
            self.missed = 0
            self._wakeup.set()

    def push(self, item: Item) -> None:
        """Queue an item outside the live bound (after any pending overflow notice)."""
        self._flush_missed()
        self._items.append((item, False))
        if type(item) is Entry:
            self.queued_bytes += item.size
        self._wakeup.set()

    def drop(self, count: int) -> None:
        """Count ``count`` events as missed here (a truncated replay)."""
        self.missed += count
        self.total_missed += count
        self._bus.dropped += count

    # -- the consumer side ----------------------------------------------------
    def __len__(self) -> int:
        """Items waiting (events and notices)."""
        return len(self._items)

    def peek_nowait(self) -> Item | None:
        if not self._items:
            self._flush_missed()
        return self._items[0][0] if self._items else None

    def pop_nowait(self) -> Item | None:
        if not self._items:
            self._flush_missed()
            if not self._items:
                return None
        item, live = self._items.popleft()
        if type(item) is Entry:
            size = item.size
            self.queued_bytes -= size
            if live:
                self._live -= 1
                self._live_bytes -= size
            self._bus.delivered += 1
        return item

    async def wait(self) -> None:
        """Until something can be read; ``trio.EndOfChannel`` once closed and empty."""
        while not self._items and not self.missed:
            if self.closed:
                raise trio.EndOfChannel
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    async def get(self) -> Item:
        await self.wait()
        item = self.pop_nowait()
        assert item is not None
        return item

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._bus._subs.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Feed(Subscription):
    """A websocket connection's subscription: registered patterns, optional resume.

    Each event is queued at most once however many patterns match it, since
    the filter is "any registered pattern matches".

    With ``since`` (the client's last seen Seq), registering a pattern first
    queues, in Seq order, every retained event after ``since`` that matches it
    and was not already queued on this connection, then its acknowledgement;
    live events follow. No gap: the replay runs synchronously with the
    registration (no checkpoint in between), so every event up to the bus's
    last Seq is in the replay and every later one is offered live. No
    duplicate: an event already queued matched a pattern that was registered
    at the time, and a pattern registered on a ``since`` connection covers
    every Seq after ``since`` up to its deregistration; those are skipped.

    For clients that resume: everything queued before an acknowledgement has a
    Seq at most its ``Object.Last``, and everything after it a greater one.
    So once the last of its registrations is acknowledged, a client may take
    that ``Last`` as its resume point and afterwards each event's Seq.
    """

    #: deregistered patterns remembered for de-duplication, at most
    MAX_HISTORY = 1000

    def __init__(self, bus: EventBus, maxlen: int, since: int | None,
                 max_bytes: int | None = None, max_patterns: int | None = None) -> None:
        super().__init__(bus, maxlen, self._wanted, max_bytes)
        self.since = since
        self.patterns: dict[str, Pattern] = {}
        #: deregistered patterns and the last Seq each covered (``since`` feeds only)
        self._history: deque[tuple[Pattern, int]] = deque(maxlen=self.MAX_HISTORY)
        #: queued items (and event bytes) beyond which a replay is truncated
        #: (and counted missed)
        self.backlog_limit = maxlen + bus.retain
        self.backlog_bytes = self.max_bytes + bus.retain_bytes
        #: patterns one connection may hold at once (each costs every publish)
        self.max_patterns = max_patterns if max_patterns is not None else bus.max_patterns

    def _wanted(self, event: Event) -> bool:
        for pattern in self.patterns.values():
            if pattern.matches(event.Type, event.Action, event.Key):
                return True
        return False

    def _covered(self, entry: Entry) -> bool:
        event = entry.event
        if self._wanted(event):
            return True
        return any(end >= entry.seq and p.matches_event(event) for p, end in self._history)

    def register(self, pattern: Pattern) -> bool:
        """Add ``pattern``; False (and nothing changed) when the connection
        already holds ``max_patterns`` others."""
        bus = self._bus
        if pattern.text not in self.patterns and len(self.patterns) >= self.max_patterns:
            return False
        if pattern.text not in self.patterns:
            if self.since is not None:
                self._replay(pattern)
            self.patterns[pattern.text] = pattern
        self.push(Notice(Action="register", Key=pattern.text, Object={"Last": bus.last_seq}))
        return True

    def deregister(self, pattern: Pattern) -> None:
        bus = self._bus
        old = self.patterns.pop(pattern.text, None)
        if old is not None and self.since is not None:
            floor = bus.floor
            while self._history and self._history[0][1] <= floor:
                self._history.popleft()
            self._history.append((old, bus.last_seq))
        self.push(Notice(Action="deregister", Key=pattern.text, Object={"Last": bus.last_seq}))

    def _replay(self, pattern: Pattern) -> None:
        bus = self._bus
        since = self.since
        assert since is not None
        # live events dropped earlier were dropped before this replay
        self._flush_missed()
        if since < bus.floor or since > bus.last_seq:
            self.push(Notice(Action="gap", Key=pattern.text,
                             Object={"Since": since, "Oldest": bus.oldest}))
        replay = [e for e in bus.retained_after(since)
                  if pattern.matches_event(e.event) and not self._covered(e)]
        room = max(0, self.backlog_limit - len(self))
        budget = self.backlog_bytes - self.queued_bytes
        for i, entry in enumerate(replay[:room]):
            budget -= entry.size
            if budget < 0:
                room = i
                break
        if len(replay) > room:
            # the overflow notice lands after what was kept (at the next push)
            self.drop(len(replay) - room)
            replay = replay[:room]
        self._items.extend((entry, False) for entry in replay)
        self.queued_bytes += sum(entry.size for entry in replay)
        if replay:
            self._wakeup.set()


class EventBus:
    """Fans events out to subscriptions; keeps the last ``retain`` of them,
    at most ``retain_bytes`` of JSON (the newest one always)."""

    #: consumers the pacer wakes per turn of the event loop
    WAKE_BATCH = 16

    def __init__(self, *, retain: int = 10_000, queue_size: int = 1_000,
                 retain_bytes: int = 64 << 20, queue_bytes: int = 16 << 20,
                 max_patterns: int = 1_000) -> None:
        self.retain = retain
        self.retain_bytes = retain_bytes
        self._ring: deque[Entry] = deque()
        #: JSON bytes of the events in the ring
        self.ring_bytes = 0
        self._subs: set[Subscription] = set()
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.max_patterns = max_patterns
        #: counters (exported by drpd.metrics): events published, events taken
        #: from a queue by their consumer, events dropped from full queues
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        #: the ring holds every published event with a Seq above this
        self.floor = 0
        self.last_seq = 0
        #: consumers with new events, in the order they got them, while
        #: ``pace`` runs (None: each is woken at once)
        self._to_wake: deque[Subscription] | None = None
        self._pacer_wakeup = trio.Event()

    def _wake(self, sub: Subscription) -> None:
        to_wake = self._to_wake
        if to_wake is None:
            sub._wakeup.set()
        elif not sub._wake_queued:
            sub._wake_queued = True
            to_wake.append(sub)
            self._pacer_wakeup.set()

    async def pace(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wake consumers of new events ``WAKE_BATCH`` at a time, one batch
        per turn of the event loop, until cancelled.

        An event for a hundred websocket subscribers wakes a hundred sender
        tasks; woken at once they run back to back, one scheduling batch of
        milliseconds, and an API request that arrives meanwhile waits for
        all of it. Woken a few at a time, the loop polls for I/O between
        batches, so requests interleave with the fan-out (issue 19: action
        latency under event load). Every consumer is still woken, in the
        order its events came.
        """
        to_wake: deque[Subscription] = deque()
        self._to_wake = to_wake
        try:
            task_status.started()
            while True:
                await self._pacer_wakeup.wait()
                self._pacer_wakeup = trio.Event()
                while to_wake:
                    for _ in range(min(self.WAKE_BATCH, len(to_wake))):
                        sub = to_wake.popleft()
                        sub._wake_queued = False
                        sub._wakeup.set()
                    await trio.lowlevel.checkpoint()
        finally:
            self._to_wake = None
            for sub in to_wake:  # nobody is left waiting for the pacer
                sub._wake_queued = False
                sub._wakeup.set()
            to_wake.clear()

    def resume_from(self, seq: int) -> None:
        """Start after the store's Seq ``seq`` (call once the store is open).

        Events up to it belong to an earlier run of drpd and are not retained;
        a client resuming from before it is told of a gap.
        """
        self.floor = max(self.floor, seq)
        self.last_seq = max(self.last_seq, seq)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscription; never blocks (store's change hook)."""
        entry = Entry(event)
        ring = self._ring
        ring.append(entry)
        self.ring_bytes += entry.size
        while len(ring) > 1 and (len(ring) > self.retain or self.ring_bytes > self.retain_bytes):
            evicted = ring.popleft()
            self.ring_bytes -= evicted.size
            self.floor = evicted.seq
        if event.Seq > self.last_seq:
            self.last_seq = event.Seq
        self.published += 1
        for sub in tuple(self._subs):
            sub._offer(entry)

    def subscribe(self, accept: Filter | None = None, *, maxlen: int | None = None) -> Subscription:
        sub = Subscription(self, maxlen or self.queue_size, accept)
        self._subs.add(sub)
        return sub

    def feed(self, *, since: int | None = None, maxlen: int | None = None) -> Feed:
        """A pattern-registering consumer (a websocket connection), resuming after ``since``."""
        feed = Feed(self, maxlen or self.queue_size, since)
        self._subs.add(feed)
        return feed

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def shutdown(self) -> None:
        """drpd is stopping: every subscription ends once its consumer has read
        what is queued (``EndOfChannel``), so websocket connections close at
        once instead of holding hypercorn's graceful period."""
        for sub in tuple(self._subs):
            sub.close()

    @property
    def oldest(self) -> int:
        """The Seq of the oldest retained event (the next Seq if none is)."""
        return self._ring[0].seq if self._ring else self.last_seq + 1

    def retained_after(self, seq: int) -> list[Entry]:
        """Retained events with a Seq above ``seq``, oldest first.

        Walks from the newest end, so a resume that is nearly caught up costs
        what it returns, not the size of the ring.
        """
        out: list[Entry] = []
        for entry in reversed(self._ring):
            if entry.seq <= seq:
                break
            out.append(entry)
        out.reverse()
        return out
