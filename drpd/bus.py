"""The in-process event bus.

The store's change hook and every other event source call ``publish``,
which never blocks: each consumer has its own bounded queue, and a consumer
that falls behind loses the oldest events it has not read and is told how
many (``Subscription.missed``), while everyone else is unaffected. A ring
buffer keeps the last events for consumers that resume from a ``Seq``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import trio

from .models import Event

Filter = Callable[[Event], bool]


class Subscription:
    """One consumer's bounded queue. Iterate with ``async for`` or ``get``."""

    def __init__(self, bus: EventBus, maxlen: int, accept: Filter | None) -> None:
        self._bus = bus
        self._queue: deque[Event] = deque()
        self._maxlen = maxlen
        self._accept = accept
        self._wakeup = trio.Event()
        self.missed = 0
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self._accept is not None and not self._accept(event):
            return
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self.missed += 1
        self._queue.append(event)
        self._wakeup.set()

    def take_missed(self) -> int:
        missed, self.missed = self.missed, 0
        return missed

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    async def wait(self) -> None:
        """Until there is something to read (events or missed ones)."""
        while not self._queue and not self.missed:
            if self.closed:
                raise trio.EndOfChannel
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    async def get(self) -> Event:
        while not self._queue:
            if self.closed:
                raise trio.EndOfChannel
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, *, retain: int = 10_000, queue_size: int = 1_000) -> None:
        self._ring: deque[Event] = deque(maxlen=retain)
        self._subs: set[Subscription] = set()
        self.queue_size = queue_size
        self.published = 0

    def publish(self, event: Event) -> None:
        self.published += 1
        self._ring.append(event)
        for sub in list(self._subs):
            sub._offer(event)

    def subscribe(self, accept: Filter | None = None, *, maxlen: int | None = None) -> Subscription:
        sub = Subscription(self, maxlen or self.queue_size, accept)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def retained_since(self, seq: int) -> tuple[int, Iterator[Event]]:
        """(oldest retained Seq, the retained events with Seq > ``seq``)."""
        oldest = self._ring[0].Seq if self._ring else seq + 1
        return oldest, (e for e in list(self._ring) if e.Seq > seq)
