"""HTTP/1.1 for the hot routes, on the connection itself, without hypercorn.

A connection's requests are read here while they are for the hot routes
(:class:`~drpd.api.hot_routes.HotRoutes`: objects, their params and
actions, posted events), which are called on the ASGI interface as
hypercorn would call them. The first request that is anything else (any
other path, HEAD, an ``Upgrade``, HTTP/2's preface, a head too long or not
HTTP at all) ends this: the connection goes to hypercorn with the bytes
read so far in front of it, and hypercorn serves it from then on (and
answers what is malformed, as it always has). Through hypercorn, each
request cost an app task, a queue per direction, an idle-timer task and
three layers of events on top of h11 (py-spy, issue 19); here it is h11
and one call.

What hypercorn does for a request, this does the same way: the ASGI scope
(``path`` percent-decoded, method upper-cased), ``100 Continue`` when a
client waits for it, a ``date`` header (no ``server`` header: DRP's Go
server sends none; hypercorn's answers keep theirs), keep-alive until
``keep_alive_timeout`` of idleness, a head bounded by
``h11_max_incomplete_size``, idle connections closed at once when drpd
shuts down, and a client that goes away told to the app as
``http.disconnect``. A response write has the keep-alive timeout as its
deadline, so a client that never reads cannot hold a task.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote
from wsgiref.handlers import format_date_time

import h11
import trio
from hypercorn.config import Config

from .hot_routes import HotRoutes

log = logging.getLogger(__name__)

RECEIVE_BYTES = 64 * 1024
_HEAD_END = b"\r\n\r\n"


class _Closed(Exception):
    """The connection is finished (the client left, or it must not be reused)."""


class HotHTTP:
    """Serves a connection's hot requests; see the module's docstring."""

    def __init__(self, app: HotRoutes, config: Config) -> None:
        self.app = app
        self.config = config
        #: cancel scopes of connections waiting for their next request
        self._idle: set[trio.CancelScope] = set()
        self._closing = False

    def close_idle(self) -> None:
        """drpd is shutting down: connections between requests close now,
        those in a request close after its answer."""
        self._closing = True
        for scope in self._idle:
            scope.cancel()

    async def serve(self, stream: trio.abc.Stream, head: bytes, scheme: str,
                    client: tuple[str, int] | None,
                    server: tuple[str, int] | None) -> bytes | None:
        """Serve requests while they are hot. Returns the bytes of the first
        request that is not (hypercorn's to serve, with the stream), or None
        when the connection is done with."""
        limit = self.config.h11_max_incomplete_size
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limit)
        if head:  # (an empty receive_data is h11's end of stream)
            conn.receive_data(head)
        try:
            while True:
                buffered = await self._next_head(stream, conn, limit)
                if buffered is None:
                    return None
                if not self._hot(buffered):
                    return buffered
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    event = None
                if not isinstance(event, h11.Request):
                    return buffered  # malformed: hypercorn answers it as it always has
                await self._one(stream, conn, event, scheme, client, server)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE \
                        or self._closing:
                    return None
                conn.start_next_cycle()
        except (_Closed, h11.RemoteProtocolError, trio.BrokenResourceError,
                trio.ClosedResourceError):
            return None

    async def _next_head(self, stream: trio.abc.Stream, conn: h11.Connection,
                         limit: int) -> bytes | None:
        """The bytes buffered once a whole request head is (or too much is);
        None when the client closed or stayed idle past the keep-alive timeout."""
        buffered = conn.trailing_data[0]
        with trio.move_on_after(self.config.keep_alive_timeout) as idle:
            self._idle.add(idle)
            try:
                while _HEAD_END not in buffered and len(buffered) <= limit \
                        and may_be_hot(buffered):
                    if self._closing:
                        return None
                    data = await stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        return None
                    conn.receive_data(bytes(data))
                    buffered = conn.trailing_data[0]
                return buffered
            finally:
                self._idle.discard(idle)
        return None

    def _hot(self, buffered: bytes) -> bool:
        """Is the request at the front of ``buffered`` one HotRoutes serves?"""
        end = buffered.find(_HEAD_END)
        if end < 0:
            return False
        head = buffered[:end]
        line, _, headers = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return False
        if b"upgrade:" in headers.lower():
            return False  # a websocket or h2c upgrade is hypercorn's
        try:
            method = parts[0].decode("ascii").upper()
            path = unquote(parts[1].partition(b"?")[0].decode("ascii"))
        except UnicodeDecodeError:
            return False
        return self.app.route(method, path) is not None

    async def _one(self, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request,
                   scheme: str, client: tuple[str, int] | None,
                   server: tuple[str, int] | None) -> None:
        raw_path, _, query = request.target.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "http_version": request.http_version.decode(),
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "method": request.method.decode("ascii").upper(),
            "scheme": scheme,
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": self.config.root_path,
            "headers": list(request.headers),
            "client": client,
            "server": server,
            "state": {},
            "extensions": {},
        }
        exchange = _Exchange(stream, conn, self.config)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except _Closed:
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception:  # noqa: BLE001 - one request's defect, never the listener
            log.exception("error while serving %s %s", scope["method"], scope["path"][:200])
            if not exchange.started:
                await exchange.send({"type": "http.response.start", "status": 500,
                                     "headers": [(b"connection", b"close")]})
                await exchange.send({"type": "http.response.body", "body": b""})
            raise _Closed from None
        if not exchange.finished:
            raise _Closed  # the app answered nothing (its client left): close


_HOT_METHODS = (b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ")
_API = b"/api/v3/"


def may_be_hot(start: bytes) -> bool:
    """Can these first bytes of a request still turn out to be a hot one?

    Anything else (a TLS hello on the plain port, another path, a request
    whose head takes long to arrive) goes to hypercorn as soon as that is
    known, never waiting for a head it does not need.
    """
    start = start.lstrip(b"\r\n")  # h11, like hypercorn, skips blank lines between requests
    first = start[:16].upper()
    for method in _HOT_METHODS:
        if first.startswith(method):
            target = start[len(method):len(method) + len(_API)]
            return _API.startswith(target)
        if method.startswith(first):
            return True  # not all of the method yet
    return False


class _Exchange:
    """One request's ``receive`` and ``send``, on the connection's h11 state."""

    __slots__ = ("stream", "conn", "config", "started", "finished", "_status", "_headers",
                 "_head_sent", "_watched")

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, config: Config) -> None:
        self.stream = stream
        self.conn = conn
        self.config = config
        self.started = False
        self.finished = False
        self._status = 500
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_sent = False
        self._watched = False

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if conn.their_state is h11.SEND_BODY:
            if conn.they_are_waiting_for_100_continue:
                await self._write(conn.send(h11.InformationalResponse(
                    status_code=100, headers=self.config.response_headers("h11"))) or b"")
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if not await self._read():
                        return {"type": "http.disconnect"}
                    continue
                if isinstance(event, h11.Data):
                    return {"type": "http.request", "body": bytes(event.data), "more_body": True}
                if isinstance(event, h11.EndOfMessage):
                    return {"type": "http.request", "body": b"", "more_body": False}
                return {"type": "http.disconnect"}
        # the body is read: what is left to hear of is the client leaving (or
        # its next request, sent ahead: read once and kept for later)
        if not self._watched:
            self._watched = True
            if not await self._read():
                return {"type": "http.disconnect"}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def _read(self) -> bool:
        """Read what the client sent into h11; False when it has gone."""
        try:
            data = await self.stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        if not data:
            return False
        self.conn.receive_data(bytes(data))
        return True

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = list(message.get("headers", ()))
            self.started = True
            return
        if kind != "http.response.body" or self.finished:
            return
        conn = self.conn
        out = bytearray()
        if not self._head_sent:
            self._head_sent = True
            headers = self._headers
            headers.append((b"date", _date()))
            out += conn.send(h11.Response(status_code=self._status, headers=headers)) or b""
        body = message.get("body", b"")
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        if not message.get("more_body", False):
            out += conn.send(h11.EndOfMessage()) or b""
            self.finished = True
        await self._write(bytes(out))

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        with trio.move_on_after(self.config.keep_alive_timeout) as scope:
            await self.stream.send_all(data)
        if scope.cancelled_caught:
            raise _Closed


_dated: list[tuple[int, bytes]] = [(0, b"")]


def _date() -> bytes:
    """The ``date`` header's value, formatted once a second."""
    now = int(time.time())
    second, value = _dated[0]
    if second != now:
        value = format_date_time(now).encode("ascii")
        _dated[0] = (now, value)
    return value
