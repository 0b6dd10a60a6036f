"""The event routes: ``POST /api/v3/events`` and the websocket ``GET /api/v3/ws``.

A websocket connection is two tasks in one nursery (docs/api.md, "Events and the
websocket"): the receiver parses ``register`` / ``deregister`` frames and
updates the connection's :class:`~drpd.bus.Feed`; the sender drains that feed
into the socket. The bus only ever appends to the feed, so a client that
reads slowly (a websocket send waits for the reader, STACK-NOTES.md) stalls
its own sender and nobody else; when its feed is full it is told how many
events it missed (an ``overflow`` frame).

The websocket is served by :class:`WsFront` on the ASGI interface, in front
of quart; auth is the same as the API's (Basic, Bearer or ``?token=``): a
refused handshake is answered with the usual 401 ``Error`` body and never
upgraded. ``?since=<Seq>`` makes the connection resume (see ``Feed``); a
``since`` that is not a non-negative integer is refused with 400 likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import trio
from quart import Blueprint, Response

from ..auth import Principal
from ..bus import Entry, Feed, Notice
from ..claims import ALL_SCOPES, ClaimSet
from ..models import (
    BadRequest,
    DrpError,
    Error,
    Event,
    PayloadTooLarge,
    TooManyRequests,
    decode_as,
)
from ..patterns import PatternError, parse_command
from .context import ApiContext
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


def parse_since(raw: str | None) -> int | None:
    """``?since=``: a Seq to resume after, or None; 400 for anything else."""
    if raw is None or raw == "":
        return None
    try:
        since = int(raw)
    except ValueError:
        since = -1
    if since < 0:
        raise BadRequest(f"since must be a Seq (a non-negative integer), not {raw[:40]!r}",
                         model="events")
    return since


def visible_event(held: ClaimSet, event: Event) -> bool:
    """An event about an object shows to whom may get it; others (a Type that
    is no scope: posted events) to everyone, as DRP's websocket does."""
    if event.Type not in ALL_SCOPES:
        return True
    return held.allows(event.Type, "get", event.Key)


class WsFront:
    """``/api/v3/ws`` served on the ASGI interface itself, in front of the app.

    Every other request goes to quart; this one does not, because each frame
    through quart's websocket object costs a queue and a task switch, and
    fan-out to a hundred subscribers is frames and nothing else. The rules
    are those of the rest of the API: the same credentials (Basic, Bearer,
    ``?token=``, DRP's ``?token=<user>:<password>``), a refusal answered with
    a DRP ``Error`` before any upgrade, each event shown only to whom may
    ``get`` its object.
    """

    PATH = "/api/v3/ws"

    def __init__(self, app: Any, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or scope["path"] != self.PATH:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        try:
            principal, since = await admit(self.context, headers,
                                           scope.get("query_string", b"").decode("latin-1"),
                                           (scope.get("client") or (None,))[0])
        except DrpError as exc:
            await _refuse(send, exc)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        c = self.context
        sees = viewer(c, principal)
        with c.bus.feed(since=since) as feed:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_loop, feed, send, nursery.cancel_scope, sees)
                await _receive_loop(feed, receive, send)
                nursery.cancel_scope.cancel()


async def admit(context: ApiContext, headers: dict[str, str], query: str,
                client: str | None) -> tuple[Principal, int | None]:
    """Who opens this websocket, and the Seq it resumes after: the API's
    credentials (``headers`` with lower-case names), or a DrpError to refuse
    the handshake with."""
    args = dict(parse_qsl(query, keep_blank_values=True))
    auth = context.auth
    header, token = headers.get("authorization"), args.get("token")
    if not header and token and ":" in token:
        # DRP's form ``?token=<user>:<password>`` (a signed token has no ':')
        user, _, password = token.partition(":")
        principal = await auth.check_basic(user, password, client)
    else:
        principal = await auth.check_header(header, token, client)
    return principal, parse_since(args.get("since"))


def viewer(context: ApiContext, principal: Principal) -> Callable[[Event], bool] | None:
    """None for a superuser (sees every event); for anyone else a test of
    each event: may it ``get`` the object (asked again per event: roles and
    in-flight actions change)."""
    access = context.access
    assert access is not None
    if access.rights(principal).everything:
        return None

    def sees(event: Event) -> bool:
        return visible_event(access.rights(principal), event)
    return sees


def refusal(exc: DrpError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body that refuse a handshake with a DRP Error."""
    body = msgspec.json.encode(exc.to_error())
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if exc.code == 401:
        headers.append((b"www-authenticate", b'Basic realm="drpd"'))
    if isinstance(exc, TooManyRequests):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    return headers, body


def behind(feed: Feed) -> bool:
    """A client sending commands while this much is unread does not read
    what it asks for: its connection is closed with 1008."""
    return len(feed) > 2 * feed.backlog_limit or feed.queued_bytes > 2 * feed.backlog_bytes


def apply_command(feed: Feed, frame: str | None) -> None:
    """Carry out one frame a client sent (None: a binary frame); answers,
    errors included, are queued on ``feed`` in order."""
    if frame is None:
        feed.push(_error("", "binary frames are not understood: send text frames "
                             "`register <type>.<action>.<key>`"))
        return
    try:
        command = parse_command(frame)
    except PatternError as exc:
        feed.push(_error(frame, str(exc)))
        return
    if command.verb == "register":
        if not feed.register(command.pattern):
            feed.push(_error(frame, f"this connection holds {feed.max_patterns} patterns, "
                                    "the most it may (max_ws_patterns): deregister one "
                                    "first", code=422))
    else:
        feed.deregister(command.pattern)


async def _refuse(send: Any, exc: DrpError) -> None:
    """The handshake answered with a DRP Error, never upgraded (ASGI's
    websocket denial response, which hypercorn serves)."""
    headers, body = refusal(exc)
    await send({"type": "websocket.http.response.start", "status": exc.code,
                "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def _send_loop(feed: Feed, send: Any, scope: trio.CancelScope,
                     sees: Callable[[Event], bool] | None = None) -> None:
    """The only task that writes to this socket; a slow reader blocks it alone.

    When drpd shuts down the bus ends the feed: the connection is closed with
    1001 (going away) rather than kept open through the graceful period.
    """
    while True:
        try:
            item = await feed.get()
        except trio.EndOfChannel:
            await send({"type": "websocket.close", "code": GOING_AWAY,
                        "reason": "drpd is shutting down"})
            scope.cancel()
            return
        if sees is not None and isinstance(item, Entry) and not sees(item.event):
            continue
        await send({"type": "websocket.send", "text": item.text()})


async def _receive_loop(feed: Feed, receive: Any, send: Any) -> None:
    """Apply the client's commands until it disconnects or stops reading what
    it asked for (closed with 1008)."""
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        if behind(feed):
            await send({"type": "websocket.close", "code": POLICY_VIOLATION,
                        "reason": "too many unread frames"})
            return
        apply_command(feed, message.get("text"))


def _error(frame: str, message: str, code: int = 400) -> Notice:
    key = frame.strip()[:200]
    return Notice(Action="error", Key=key,
                  Object=Error(Model="websocket", Key=key, Type="WEBSOCKET_ERROR",
                               Messages=[message], Code=code))
