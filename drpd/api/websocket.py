"""``/api/v3/ws`` on the raw connection: the event fan-out without per-frame layers.

Through hypercorn, each delivered frame was an ASGI message, a hypercorn
stream event, a wsproto serialisation and a socket write under a lock: most
of the cost of a hundred subscribers (issue 19). Here the upgrade is taken
before hypercorn sees the connection (``drpd.api.server``), wsproto does the
handshake and parses what the client sends, and the sender writes the
event's frame, built once for every subscriber (``Entry.frame``), straight
to the stream; when a subscriber is behind, everything queued for it (up to
``BATCH_BYTES``) leaves in one write.

The rules are those of :class:`~drpd.api.events.WsFront` (which still
serves an upgrade hypercorn receives, e.g. one that is not a connection's
first request): the API's credentials, a refusal answered with a DRP
``Error`` before any upgrade, each event shown only to whom may ``get`` its
object, commands as in docs/api.md, 1008 for a client that does not read
what it asks for, 1001 when drpd stops.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..bus import Entry, Feed
from ..models import DrpError, Event
from ..wsframes import text_frame
from .context import ApiContext
from .events import (
    GOING_AWAY,
    POLICY_VIOLATION,
    WsFront,
    admit,
    apply_command,
    behind,
    refusal,
    viewer,
)

__all__ = ["BATCH_BYTES", "MAX_COMMAND_BYTES", "RawWebsocket"]

#: frames written to a subscriber in one send, at most (one bigger frame goes alone)
BATCH_BYTES = 256 * 1024
#: a client's message (a command) longer than this closes the connection (1009)
MAX_COMMAND_BYTES = 64 * 1024
MESSAGE_TOO_BIG = 1009
RECEIVE_BYTES = 64 * 1024


class RawWebsocket:
    """Serves websocket upgrades to ``/api/v3/ws`` on a stream drpd accepted."""

    PATH = WsFront.PATH

    def __init__(self, context: ApiContext) -> None:
        self.context = context

    @classmethod
    def may_be_mine(cls, head: bytes) -> bool:
        """Whether a request starting with ``head`` can be an upgrade to the
        websocket path (so the rest of its head is worth reading)."""
        start = b"GET " + cls.PATH.encode()
        if len(head) <= len(start):
            return start.startswith(head)
        return head.startswith(start) and head[len(start):len(start) + 1] in (b" ", b"?")

    async def serve(self, stream: trio.abc.Stream, head: bytes, client: str | None) -> bool:
        """Serve the connection whose first bytes are ``head`` (the whole
        request head, and what followed it) if it is a websocket upgrade to
        the path; False, having read and written nothing more, if it is not
        (hypercorn answers it then)."""
        ws = WSConnection(ConnectionType.SERVER)
        # wsproto's server drops what follows the head (frames a client sent
        # before the 101, against RFC 6455 4.1): it is given them after the accept
        end = head.find(b"\r\n\r\n")
        head, rest = (head, b"") if end < 0 else (head[:end + 4], head[end + 4:])
        try:
            ws.receive_data(head)
            request = next(iter(ws.events()), None)
        except RemoteProtocolError:
            return False
        if not isinstance(request, Request):
            return False
        path, _, query = request.target.partition("?")
        if path != self.PATH:
            return False
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in request.extra_headers}
        try:
            principal, since = await admit(self.context, headers, query, client)
        except DrpError as exc:
            extra, body = refusal(exc)
            out = ws.send(RejectConnection(status_code=exc.code, headers=extra, has_body=True))
            out += ws.send(RejectData(data=body))
            await stream.send_all(out)
            return True
        await stream.send_all(ws.send(AcceptConnection()))
        if rest:
            ws.receive_data(rest)
        with self.context.bus.feed(since=since) as feed:
            await _Connection(stream, ws, feed).run(viewer(self.context, principal))
        return True


class _Connection:
    """One accepted subscriber: a sender task and the receiving task, one
    lock for the stream (the sender's batches, the receiver's pongs and
    closes)."""

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, feed: Feed) -> None:
        self.stream = stream
        self.ws = ws
        self.feed = feed
        self.lock = trio.Lock()
        #: the parts of the client message being received, and their size
        self.parts: list[str] = []
        self.size = 0
        self.binary = False

    async def run(self, sees: Callable[[Event], bool] | None) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop, sees, nursery.cancel_scope)
            # the handshake's bytes may carry the first commands already
            if await self._commands():
                await self._receive_loop()
            nursery.cancel_scope.cancel()

    async def _send_loop(self, sees: Callable[[Event], bool] | None,
                         scope: trio.CancelScope) -> None:
        """The subscriber's frames, as many per write as are queued (a slow
        reader blocks this task alone). When drpd stops the bus ends the
        feed: the connection is closed with 1001 (going away)."""
        feed = self.feed
        while True:
            try:
                await feed.wait()
            except trio.EndOfChannel:
                await self._close(GOING_AWAY, "drpd is shutting down")
                scope.cancel()
                return
            frames: list[bytes] = []
            size = 0
            while size < BATCH_BYTES:
                item = feed.pop_nowait()
                if item is None:
                    break
                if type(item) is Entry:
                    if sees is not None and not sees(item.event):
                        continue
                    frame = item.frame()
                else:
                    frame = text_frame(item.json())
                frames.append(frame)
                size += len(frame)
            if not frames:
                continue
            try:
                async with self.lock:
                    await self.stream.send_all(frames[0] if len(frames) == 1
                                               else b"".join(frames))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                scope.cancel()
                return

    async def _receive_loop(self) -> None:
        """Apply the client's commands until it closes, breaks the protocol
        or stops reading what it asked for."""
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            try:
                self.ws.receive_data(bytes(data) if data else None)
            except RemoteProtocolError:
                return
            if not data or not await self._commands():
                return

    async def _commands(self) -> bool:
        """Handle what wsproto parsed so far; False once the connection is over."""
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                if isinstance(event, BytesMessage):
                    self.binary = True
                else:
                    self.parts.append(event.data)
                self.size += len(event.data)
                if self.size > MAX_COMMAND_BYTES:
                    await self._close(MESSAGE_TOO_BIG,
                                      f"a message of over {MAX_COMMAND_BYTES} bytes")
                    return False
                if not event.message_finished:
                    continue
                text = None if self.binary else "".join(self.parts)
                self.parts, self.size, self.binary = [], 0, False
                if behind(self.feed):
                    await self._close(POLICY_VIOLATION, "too many unread frames")
                    return False
                apply_command(self.feed, text)
            elif isinstance(event, Ping):
                await self._write(event.response())
            elif isinstance(event, CloseConnection):
                await self._write(event.response())
                return False
        return True

    async def _write(self, event: CloseConnection | Pong) -> None:
        try:
            data = self.ws.send(event)
        except LocalProtocolError:
            return  # closed already
        try:
            async with self.lock:
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _close(self, code: int, reason: str) -> None:
        await self._write(CloseConnection(code=code, reason=reason))
