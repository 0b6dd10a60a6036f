"""HasPublish forwarding: every event, in order, to ``POST /api-plugin/v4/publish``.

One :class:`Publisher` per supervisor, built with the bus, whether the
instance wants events now, and where to record what went wrong (no
reference back to the supervisor). Its subscription lives as long as the
supervisor (opened when ``Supervisor.run`` starts, closed when it ends), not
one provider run, so events published while the instance restarts wait in
its bounded queue and are delivered to the next process. The forwarding task
(:meth:`Publisher.forward`) runs in the nursery of one provider run, started
once that run is available; cancelling the run cancels it.

Delivery rules:

- one event at a time, in Seq order; an event leaves the queue only once
  the provider answered it (or the per-event deadline passed), so an event
  whose delivery a restart interrupted goes to the next process (at least
  once around a restart, never out of order);
- a provider that does not want events (no ``HasPublish``, or
  ``IgnoreEvents``) queues nothing;
- a slow or stuck provider only fills its own queue: the bus drops what
  does not fit (``event_queue`` events, ``event_queue_bytes`` bytes) and the publisher records how many
  were missed in the instance's ``PluginErrors``; an event not answered
  within its deadline (``action_timeout``) is skipped and recorded likewise;
- a non-2xx answer is the provider's business: logged, not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from .. import wire
from ..bus import Entry, EventBus, Notice, Subscription
from ..http11 import HTTPError, UnixHTTPClient
from ..models import Event

log = logging.getLogger("drpd.plugins")
#: retry delays after a failed connection (the provider is restarting or stopping)
RETRY_FIRST, RETRY_MAX = 0.02, 1.0


class Publisher:
    def __init__(self, bus: EventBus | None, name: str, wants: Callable[[], bool], *,
                 available: Callable[[], bool], note_error: Callable[[str], None],
                 log_line: Callable[[str, str], None]) -> None:
        self.bus = bus
        self.name = name
        #: whether the instance is available (forwarding ends when it is not)
        self.available = available
        #: whether the instance wants events now (HasPublish and not IgnoreEvents)
        self.wants = wants
        self.note_error = note_error
        self.log_line = log_line
        self._sub: Subscription | None = None
        #: events answered by the provider (for tests and metrics)
        self.delivered = 0

    def open(self) -> None:
        """Start queueing (``Supervisor.run`` calls it once)."""
        if self.bus is not None and self._sub is None:
            self._sub = self.bus.subscribe(self._wanted)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def _wanted(self, event: Event) -> bool:
        return self.wants()

    async def forward(self, client: UnixHTTPClient, per_event: float) -> None:
        """Deliver queued events to this run's process while it is available.

        Returns when the instance stops being available (the run is ending);
        whatever is still queued waits for the next run.
        """
        sub = self._sub
        if sub is None:
            return
        delay = RETRY_FIRST
        while True:
            try:
                await sub.wait()
            except trio.EndOfChannel:  # the bus shut down: drpd is stopping
                return
            item = sub.peek_nowait()
            if isinstance(item, Notice):
                missed = (item.Object or {}).get("Missed", 0)
                self.note_error(
                    f"missed {missed} event(s): more than {sub.maxlen} (or {sub.max_bytes} "
                    "bytes of them) waited for delivery"
                )
                sub.pop_nowait()
                continue
            assert isinstance(item, Entry)
            if not self.available():
                return
            try:
                await self._deliver(client, item, per_event)
            except HTTPError as exc:
                # the process is going away, or refusing connections for now
                log.debug("plugin %s: publish of Seq %d failed: %s", self.name, item.seq,
                          exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            sub.pop_nowait()

    async def _deliver(self, client: UnixHTTPClient, entry: Entry, per_event: float) -> None:
        with trio.move_on_after(per_event) as scope:
            status, body = await client.request("POST", wire.PUBLISH_PATH, entry.json())
        event = entry.event
        what = f"event Seq {event.Seq} ({event.Type}.{event.Action}.{event.Key})"
        if scope.cancelled_caught:
            self.note_error(f"publish of {what} not answered within {per_event:g} s; skipped")
            return
        self.delivered += 1
        if not 200 <= status < 300:
            text = body[:300].decode(errors="replace")
            self.log_line("publish", f"{what} refused ({status}): {text}")
