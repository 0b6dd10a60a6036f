"""The event routes: ``POST /api/v3/events`` and the websocket ``GET /api/v3/ws``.

A websocket connection is two tasks in one nursery (docs/api.md, "Events and the
websocket"): the receiver parses ``register`` / ``deregister`` frames and
updates the connection's :class:`~drpd.bus.Feed`; the sender drains that feed
into the socket. The bus only ever appends to the feed, so a client that
reads slowly (a websocket send waits for the reader, STACK-NOTES.md) stalls
its own sender and nobody else; when its feed is full it is told how many
events it missed (an ``overflow`` frame).

Auth is the app's ``before_websocket`` hook (Basic, Bearer or ``?token=``):
a refused handshake is answered with the usual 401 ``Error`` body and never
upgraded. ``?since=<Seq>`` makes the connection resume (see ``Feed``); a
``since`` that is not a non-negative integer is refused with 400 likewise.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from quart import Blueprint, Response, g, websocket

from ..bus import Entry, Feed, Notice
from ..claims import ALL_SCOPES, ClaimSet
from ..models import BadRequest, Error, Event, PayloadTooLarge, decode_as
from ..patterns import PatternError, parse_command
from .objects import ctx, json_response, max_depth, principal, read_body

bp = Blueprint("events", __name__)

#: frames of Type ``websocket`` are per-connection notices; nobody may post one
RESERVED_TYPE = "websocket"
#: the close code for a client that sends commands but does not read the answers
POLICY_VIOLATION = 1008
#: the close code when drpd shuts down
GOING_AWAY = 1001


@bp.route("/api/v3/events", methods=["POST"])
async def post_event() -> Response:
    body = await read_body()
    limit = ctx().settings.max_event_size
    if len(body) > limit:
        raise PayloadTooLarge(f"an event of {len(body)} bytes is over max_event_size ({limit})",
                              model="events")
    event = decode_as(Event, body, what="events", max_depth=max_depth())
    if not event.Type or not event.Action:
        raise BadRequest("an event needs Type and Action", model="events")
    if event.Type == RESERVED_TYPE:
        raise BadRequest(f"Type {RESERVED_TYPE!r} is reserved for the websocket's own frames",
                         model="events")
    event.Principal = principal()
    event.Seq = 0
    event = await ctx().store.emit(event)
    return json_response(event)


def _since() -> int | None:
    raw = websocket.args.get("since")
    if raw is None or raw == "":
        return None
    try:
        since = int(raw)
    except ValueError:
        since = -1
    if since < 0:
        raise BadRequest(f"since must be a Seq (a non-negative integer), not {raw!r}",
                         model="events")
    return since


@bp.websocket("/api/v3/ws")
async def ws() -> None:
    c = ctx()
    since = _since()
    await websocket.accept()
    assert c.access is not None
    access, who = c.access, g.principal
    # a superuser sees everything; anyone else each event it may ``get``
    # (asked again per event: roles and in-flight actions change)
    sees: Callable[[Event], bool] | None = None
    if not access.rights(who).everything:
        def sees(event: Event) -> bool:
            return visible_event(access.rights(who), event)
    with c.bus.feed(since=since) as feed:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_loop, feed, nursery.cancel_scope, sees)
            await _receive_loop(feed)
            nursery.cancel_scope.cancel()


def visible_event(held: ClaimSet, event: Event) -> bool:
    """An event about an object shows to whom may get it; others (a Type that
    is no scope: posted events) to everyone, as DRP's websocket does."""
    if event.Type not in ALL_SCOPES:
        return True
    return held.allows(event.Type, "get", event.Key)


async def _send_loop(feed: Feed, scope: trio.CancelScope,
                     sees: Callable[[Event], bool] | None = None) -> None:
    """The only task that writes to this socket; a slow reader blocks it alone.

    When drpd shuts down the bus ends the feed: the connection is closed with
    1001 (going away) rather than kept open through the graceful period.
    """
    while True:
        try:
            item = await feed.get()
        except trio.EndOfChannel:
            await websocket.close(GOING_AWAY, "drpd is shutting down")
            scope.cancel()
            return
        if sees is not None and isinstance(item, Entry) and not sees(item.event):
            continue
        await websocket.send(item.text())


async def _receive_loop(feed: Feed) -> None:
    """Apply the client's commands until it disconnects (which cancels this
    handler) or stops reading what it asked for (closed with 1008)."""
    while True:
        frame = await websocket.receive()
        if len(feed) > 2 * feed.backlog_limit or feed.queued_bytes > 2 * feed.backlog_bytes:
            await websocket.close(POLICY_VIOLATION, "too many unread frames")
            return
        if isinstance(frame, bytes):
            feed.push(_error("", "binary frames are not understood: send text frames "
                                 "`register <type>.<action>.<key>`"))
            continue
        try:
            command = parse_command(frame)
        except PatternError as exc:
            feed.push(_error(frame, str(exc)))
            continue
        if command.verb == "register":
            if not feed.register(command.pattern):
                feed.push(_error(frame, f"this connection holds {feed.max_patterns} patterns, "
                                        "the most it may (max_ws_patterns): deregister one "
                                        "first", code=422))
        else:
            feed.deregister(command.pattern)


def _error(frame: str, message: str, code: int = 400) -> Notice:
    key = frame.strip()[:200]
    return Notice(Action="error", Key=key,
                  Object=Error(Model="websocket", Key=key, Type="WEBSOCKET_ERROR",
                               Messages=[message], Code=code))
