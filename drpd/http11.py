"""A lean HTTP/1.1 layer over UNIX sockets, on trio and h11, for both sides.

drpd talks to every plugin instance over two UNIX sockets (docs/protocol.md): it
serves ``/api-server-plugin/v4`` to the provider and calls the provider's
``/api-plugin/v4``; the Python SDK does the mirror image. With 200
instances, each one costs a listener, a pool and their tasks, so this
module is plain trio tasks around h11: no framework, no routing, no
drpd policy. Bytes in, bytes out; every body is sent with a
``Content-Length``, and chunked bodies are read too (Go's net/http chunks
any body over about 2 KB), bounded by the same byte limit.

Server: :func:`serve_unix` runs ``handler(method, target, body) ->
(status, body)`` for each request, on keep-alive connections.

Client: :class:`UnixHTTPClient` keeps a small pool of kept-alive
connections and returns ``(status, body)``.

Error tree (client side)::

    HTTPError
    ├── ConnectError          could not connect (missing socket, refused,
    │                         backlog full past the retry window)
    ├── ConnectionClosed      the peer closed before the response was complete
    ├── RemoteProtocolError   the peer's bytes are not HTTP/1.1
    ├── ResponseTooLarge      the response body exceeds ``max_body``
    └── ClientClosed          the client was closed (before or during a request)

Timeouts are the caller's: wrap calls in ``trio.fail_after``. Cancellation
never leaves a half-used connection behind: a request that does not finish
closes its connection.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as _socket
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus

import h11
import msgspec
import trio

from .unixsock import MAX_UNIX_PATH, bind_unix, check_unix_path

__all__ = [
    "DEFAULT_MAX_BODY",
    "ClientClosed",
    "ConnectError",
    "ConnectionClosed",
    "HTTPError",
    "Handler",
    "MAX_UNIX_PATH",
    "RemoteProtocolError",
    "ResponseTooLarge",
    "UnixHTTPClient",
    "check_unix_path",
    "serve_unix",
]

log = logging.getLogger("drpd.http11")

#: ``handler(method, target, body) -> (status, body)``; the body answered is JSON.
Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]

#: Largest body either side accepts unless told otherwise.
DEFAULT_MAX_BODY = 64 * 1024 * 1024
#: Largest request line plus headers; h11 refuses more (431/400).
MAX_HEAD = 64 * 1024
_READ_SIZE = 65536
#: Bodies up to this size go out in the same write as the head (one syscall).
_COALESCE = 65536
_NO_BODY_STATUS = frozenset({204, 304})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
#: accept() failures that mean "out of resources now", not "listener broken".
_ACCEPT_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


class HTTPError(Exception):
    """Base of everything :class:`UnixHTTPClient` raises about the exchange."""


class ConnectError(HTTPError):
    """No connection could be made to the socket."""


class ConnectionClosed(HTTPError):
    """The peer closed the connection before the response was complete."""


class RemoteProtocolError(HTTPError):
    """The peer sent bytes that are not valid HTTP/1.1."""


class ResponseTooLarge(HTTPError):
    """The response body is larger than the client's ``max_body``."""


class ClientClosed(HTTPError):
    """The client was closed with :meth:`UnixHTTPClient.aclose`."""


def _error_json(code: int, message: str) -> bytes:
    """Build DRP's ``Error`` shape without importing drpd's models (no policy here)."""
    return msgspec.json.encode(
        {"Model": "", "Key": "", "Type": "API_ERROR", "Messages": [message], "Code": code}
    )


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


# --------------------------------------------------------------------------- server


async def serve_unix(
    path: str,
    handler: Handler,
    *,
    backlog: int = 512,
    max_body: int = DEFAULT_MAX_BODY,
    on_sent: Callable[[str, str, int], None] | None = None,
    mode: int | None = None,
    bound: tuple[_socket.socket, int] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP/1.1 on the UNIX socket ``path`` until cancelled.

    ``bound``: the socket already listening there and its file's inode
    (``drpd.unixsock.bind_unix``; the SDK binds before it imports this).

    Start it with ``await nursery.start(serve_unix, path, handler)``: that
    returns once the socket is listening, so a client may connect at once.
    A stale socket file at ``path`` is removed first; any other kind of
    file there is an error (it is not ours to delete).

    Each connection is one task; its requests are answered in order. The
    whole request body is always read before ``handler`` runs (an unread
    body would stall the keep-alive connection). ``handler``'s body is
    sent as ``application/json`` with a ``Content-Length``. When the
    client disconnects while ``handler`` runs, ``handler`` is cancelled:
    no one is left to read its answer (a client that half-closes its
    sending side after the request counts as gone). ``on_sent(method,
    target, status)`` is called once an answer has been written, which
    lets a caller act only after its answer is on the wire (exit after
    ``stop``).

    Error handling: an exception from ``handler`` answers 500 with an
    ``Error`` body naming it, and is logged; a malformed request answers
    400, a body over ``max_body`` 413 (both close the connection).

    Resource handling: the listening socket is closed and its file removed
    (if it is still ours) when this returns; open connections are closed
    by cancellation.
    """
    if bound is None:
        # bound here, with the lstat and stat around it: a short local path
        # (trio would use a worker thread, which a test's mock clock cannot see)
        bound = bind_unix(path, backlog=backlog, mode=mode)
    raw, inode = bound
    try:
        sock = trio.socket.from_stdlib_socket(raw)
    except BaseException:
        raw.close()
        raise
    await trio.lowlevel.checkpoint()
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_TRANSIENT:
                        raise
                    log.error("accept on %s: %s; pausing 100 ms", path, exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(_serve_connection, stream, handler, max_body, on_sent)
    finally:
        sock.close()
        _unlink_if_ours(path, inode)


def _unlink_if_ours(path: str, inode: int) -> None:
    """Remove the socket file unless a successor already bound the same path."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


async def _serve_connection(
    stream: trio.SocketStream,
    handler: Handler,
    max_body: int,
    on_sent: Callable[[str, str, int], None] | None,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        while True:
            try:
                request = await _receive_request(conn, stream, max_body)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    await _send_response(conn, stream, status, _error_json(status, str(exc)), True)
                return
            if request is None:
                return
            method, target, body = request
            if isinstance(body, int):  # refused: too large
                await _send_response(conn, stream, body, _error_json(body, "body too large"), True)
                return
            answer = await _call_handler(handler, conn, stream, method, target, body)
            if answer is None:  # client went away while handler ran
                return
            status, out = answer
            await _send_response(conn, stream, status, out, False)
            if on_sent is not None:
                on_sent(method, target, status)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        stream.socket.close()


async def _receive_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(_READ_SIZE))


async def _receive_request(
    conn: h11.Connection, stream: trio.SocketStream, max_body: int
) -> tuple[str, str, bytes | int] | None:
    """Read one whole request; None on a clean close, an int status when refused."""
    event = await _receive_event(conn, stream)
    if isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request), event
    method = event.method.decode("ascii")
    target = event.target.decode("ascii")
    for name, value in event.headers:
        if name == b"content-length" and int(value) > max_body:
            return method, target, 413
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _receive_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_body:
                return method, target, 413
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return method, target, b"".join(chunks)
        else:  # ConnectionClosed mid-body raises in h11; anything else is a bug
            raise h11.RemoteProtocolError(f"unexpected {event!r}")


async def _call_handler(
    handler: Handler,
    conn: h11.Connection,
    stream: trio.SocketStream,
    method: str,
    target: str,
    body: bytes,
) -> tuple[int, bytes] | None:
    """Run ``handler`` while watching for the client hanging up."""
    answer: tuple[int, bytes] | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_eof, conn, stream, nursery.cancel_scope)
        try:
            status, out = await handler(method, target, body)
            if not 200 <= int(status) <= 599:
                raise ValueError(f"handler answered status {status!r}")
            answer = (int(status), bytes(out))
        except Exception as exc:
            log.exception("handler failed for %s %s", method, target)
            answer = (500, _error_json(500, f"{type(exc).__name__}: {exc}"))
        nursery.cancel_scope.cancel()
    return answer


async def _cancel_on_eof(
    conn: h11.Connection, stream: trio.SocketStream, scope: trio.CancelScope
) -> None:
    data = await stream.receive_some(_READ_SIZE)
    if data:
        # A pipelined next request: h11 keeps it for the next cycle.
        conn.receive_data(data)
    else:
        scope.cancel()


async def _send_response(
    conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes, close: bool
) -> None:
    if status in _NO_BODY_STATUS:
        body = b""
        headers = []
    else:
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    if close:
        headers.append(("connection", "close"))
    head = conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
    await _send_message(conn, stream, head, body)


async def _send_message(
    conn: h11.Connection, stream: trio.SocketStream, head: bytes, body: bytes
) -> None:
    """Write head, body and end; small messages in one write, big bodies without a copy."""
    parts = (conn.send_with_data_passthrough(h11.Data(data=body)) or []) if body else []
    tail = conn.send(h11.EndOfMessage()) or b""
    if len(body) > _COALESCE:
        await stream.send_all(head)
        for part in parts:
            await stream.send_all(part)
        if tail:
            await stream.send_all(tail)
    else:
        await stream.send_all(b"".join([head, *parts, tail]))


# --------------------------------------------------------------------------- client


class _Conn:
    """One kept-alive client connection and its h11 state."""

    __slots__ = ("eof", "h11", "raw", "received", "reused", "stream")

    def __init__(self, raw: _socket.socket) -> None:
        self.raw = raw
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.reused = False
        #: bytes received during the current exchange (0: the peer said nothing yet)
        self.received = 0
        self.eof = False

    def looks_alive(self) -> bool:
        """Cheap check, without blocking, that the peer has not closed an idle connection."""
        try:
            self.raw.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # EOF, or bytes nobody asked for: either way unusable

    def close(self) -> None:
        self.stream.socket.close()


class _NoAnswer(Exception):
    """The peer closed the connection without sending a single byte of answer."""


class _Retry(Exception):
    """The request certainly did not reach the peer's handler; a new connection may retry."""


class UnixHTTPClient:
    """An HTTP/1.1 client for one UNIX socket, with a small keep-alive pool.

    At most ``max_connections`` requests run at once (further ones wait for
    a slot), so at most that many connections exist and new connects are
    capped; up to ``max_idle`` finished connections are kept for reuse. A
    connect that finds the listener's backlog full (EAGAIN) or nobody
    listening (ECONNREFUSED) is retried with a short back-off for up to
    ``connect_timeout`` seconds.

    A kept connection the peer closed meanwhile is noticed before reuse and
    dropped. If a reused connection still turns out closed, the request is
    sent again on a fresh connection only when that cannot run it twice:
    when the peer provably never received all of it, or when the method is
    idempotent. A request on a fresh connection is never repeated.

    Cancellation: a request cancelled at any point closes its connection,
    so a half-read answer never reaches the pool. :meth:`aclose` closes
    every connection, idle or busy; requests in flight then fail with
    :class:`ClientClosed`.
    """

    def __init__(
        self,
        path: str,
        *,
        max_connections: int = 16,
        max_idle: int = 4,
        connect_timeout: float = 2.0,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        check_unix_path(path)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.path = path
        self._slots = trio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._max_body = max_body
        self._idle: list[_Conn] = []
        self._busy: set[_Conn] = set()
        self._closed = False

    async def __aenter__(self) -> UnixHTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection; later and in-flight requests raise ClientClosed."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        await trio.lowlevel.checkpoint()

    @property
    def idle_connections(self) -> int:
        """How many kept-alive connections wait for reuse (for tests and metrics)."""
        return len(self._idle)

    async def connect(self) -> None:
        """Open one connection and keep it, so a caller knows the peer answers connects."""
        async with self._slots:
            conn = await self._connect()
            self._release(conn)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[int, bytes]:
        """Send one request and return ``(status, body)`` of its answer.

        ``body`` goes out as ``application/json`` with a Content-Length;
        ``None`` sends no body (``Content-Length: 0`` for POST, PUT and
        PATCH, as some servers insist). Raises :class:`HTTPError`.
        """
        method = method.upper()
        async with self._slots:
            retried = False
            while True:
                if self._closed:
                    raise ClientClosed(f"client for {self.path} is closed")
                conn = self._take_idle() or await self._connect()
                try:
                    return await self._exchange(conn, method, target, body, headers)
                except _Retry as exc:
                    if retried or not conn.reused:
                        raise ConnectionClosed(str(exc)) from None
                    retried = True

    def _take_idle(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.looks_alive():
                conn.reused = True
                return conn
            conn.close()
        return None

    def _release(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        if self._closed or len(self._idle) >= self._max_idle:
            conn.close()
        else:
            conn.received = 0
            self._idle.append(conn)

    async def _connect(self) -> _Conn:
        deadline = trio.current_time() + self._connect_timeout
        delay = 0.001
        while True:
            raw = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                raw.setblocking(False)
                raw.connect(self.path)
            except (BlockingIOError, ConnectionRefusedError) as exc:
                # EAGAIN: the listen backlog is full (a UNIX socket never
                # connects "in progress"); ECONNREFUSED: nobody listens yet.
                raw.close()
                if trio.current_time() + delay > deadline:
                    raise ConnectError(f"cannot connect to {self.path}: {exc}") from exc
                await trio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except OSError as exc:
                raw.close()
                raise ConnectError(f"cannot connect to {self.path}: {exc}") from exc
            except BaseException:
                raw.close()
                raise
            conn = _Conn(raw)
            self._busy.add(conn)
            return conn

    async def _exchange(
        self,
        conn: _Conn,
        method: str,
        target: str,
        body: bytes | None,
        headers: Iterable[tuple[str, str]],
    ) -> tuple[int, bytes]:
        self._busy.add(conn)
        keep = False
        try:
            hdrs = [("host", "localhost")]
            if body is not None or method in ("POST", "PUT", "PATCH"):
                payload = body or b""
                hdrs += [
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload))),
                ]
            else:
                payload = b""
            hdrs += list(headers)
            try:
                head = conn.h11.send(h11.Request(method=method, target=target, headers=hdrs))
            except h11.LocalProtocolError as exc:
                raise HTTPError(f"bad request {method} {target!r}: {exc}") from None
            try:
                await _send_message(conn.h11, conn.stream, head, payload)
            except trio.BrokenResourceError:
                # The peer closed before taking all of the request, so it
                # cannot have run it; it may still have answered (say 413).
                if self._closed:
                    raise ClientClosed(f"client for {self.path} is closed") from None
                answer = await self._read_answer_after_broken_send(conn)
                if answer is None:
                    raise _Retry(f"{self.path} closed the connection before the request") from None
                return answer
            status, rbody = await self._read_response(conn, method)
            keep = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
            if keep:
                conn.h11.start_next_cycle()
            return status, rbody
        except trio.ClosedResourceError:
            raise ClientClosed(f"client for {self.path} is closed") from None
        finally:
            if keep:
                self._release(conn)
            else:
                self._busy.discard(conn)
                conn.close()

    async def _read_answer_after_broken_send(self, conn: _Conn) -> tuple[int, bytes] | None:
        try:
            return await self._read_response(conn, "POST")
        except (_Retry, ConnectionClosed, RemoteProtocolError, trio.BrokenResourceError):
            return None

    async def _receive(self, conn: _Conn) -> object:
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if conn.eof and conn.received == 0:
                    raise _NoAnswer from None
                if conn.eof:
                    raise ConnectionClosed(
                        f"{self.path} closed the connection mid-response "
                        f"after {conn.received} bytes: {exc}"
                    ) from None
                raise RemoteProtocolError(f"{self.path}: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await conn.stream.receive_some(_READ_SIZE)
            except trio.BrokenResourceError:  # ECONNRESET
                data = b""
            conn.received += len(data)
            conn.eof = not data
            conn.h11.receive_data(data)

    async def _read_response(self, conn: _Conn, method: str) -> tuple[int, bytes]:
        while True:
            try:
                event = await self._receive(conn)
            except _NoAnswer:
                message = f"{self.path} closed the connection without answering"
                if method in _IDEMPOTENT:
                    raise _Retry(message) from None
                raise ConnectionClosed(message) from None
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):
                raise RemoteProtocolError(f"{self.path}: unexpected {event!r}")
        status = event.status_code
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self._max_body:
                raise ResponseTooLarge(f"{self.path} answered {int(value)} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._receive(conn)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise ResponseTooLarge(f"{self.path} answered over {self._max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            else:
                raise RemoteProtocolError(f"{self.path}: unexpected {event!r}")
