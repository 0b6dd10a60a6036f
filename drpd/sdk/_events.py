"""Selected events: the provider's own subscription on drpd's websocket.

A provider that declares the events it wants (``Provider(..., events=[...])``
for its publish handler, or ``@provider.events(...)`` handlers) gets only
those, over ``/api/v3/ws`` with the instance's ``RS_ENDPOINT``, ``RS_TOKEN``
and ``RS_CA_CERT``, instead of every event through HasPublish: DRP's
``SelectEvents``. :class:`drpd.wsclient.EventStream` does the connection
work: a dropped connection is resumed with ``since=`` and nothing is lost
or repeated while drpd still holds the events.

Handlers run one event at a time, in order, in the serve process's nursery;
a slow handler makes drpd's queue for this connection overflow, and the
stream then resumes from drpd's ring buffer. A failing handler has its
traceback written to stderr (drpd's log) and the next event goes on.

Loaded only by ``serve`` and only when events are selected: trio-websocket
and httpx (for the TLS and credential rules of :mod:`drpd.client`) are not
part of ``import drpd.sdk``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING

import trio

from drpd.models.objects import Event

if TYPE_CHECKING:
    from drpd.patterns import Pattern

    from ._context import Context
    from ._provider import Provider, PublishHandler

#: how long ``serve`` waits for the first registration before READY! anyway
REGISTER_TIMEOUT = 10.0


def selections(provider: Provider) -> list[tuple[tuple[Pattern, ...], PublishHandler]]:
    """(patterns, handler) pairs, the publish handler first if it has patterns."""
    out = []
    if provider.publish_patterns:
        if provider.publish_handler is None:
            raise ValueError(
                f"{provider.name}: events={[p.text for p in provider.publish_patterns]} "
                "needs a @provider.publish handler to receive them"
            )
        out.append((provider.publish_patterns, provider.publish_handler))
    out.extend(provider.event_handlers)
    return out


async def follow_events(provider: Provider, ctx: Context, registered: trio.Event) -> None:
    """Deliver the selected events until cancelled; sets ``registered`` once
    every pattern is registered (``serve`` waits for it before READY!)."""
    from drpd.client import ClientError
    from drpd.wsclient import EventStream

    chosen = selections(provider)
    patterns = [p.text for patterns, _ in chosen for p in patterns]
    try:
        # loads the CA file: off the trio thread
        stream = await trio.to_thread.run_sync(EventStream.from_env, dict(os.environ), patterns)
    except ClientError as exc:
        _say(f"{provider.name}: selected events unavailable: {exc}")
        registered.set()
        return

    async def deliver(event: Event, text: str) -> None:
        for patterns, handler in chosen:
            if any(p.matches(event.Type, event.Action, event.Key) for p in patterns):
                try:
                    await handler(ctx, event)
                except Exception:
                    traceback.print_exc()

    async def notice(frame: Event) -> None:
        _say(f"{provider.name}: drpd says {frame.Action} {frame.Key}: {frame.Object}")

    def disconnected(reason: str) -> None:
        _say(f"{provider.name}: event stream interrupted ({reason}); resuming")

    try:
        await stream.run(deliver, on_notice=notice, on_ready=registered.set,
                         on_disconnect=disconnected)
    except ClientError as exc:  # the token was refused: the instance is going away
        _say(f"{provider.name}: selected events stopped: {exc}")
        registered.set()


def _say(line: str) -> None:
    sys.stderr.write(" ".join(line.split()) + "\n")
    sys.stderr.flush()
