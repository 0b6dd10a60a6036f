"""The API port: each accepted connection goes to hypercorn, except a
websocket upgrade to ``/api/v3/ws`` and requests on the hot routes, which
drpd serves itself.

``serve_api`` is hypercorn's trio ``worker_serve`` (the app's lifespan, a
``TCPServer`` per connection, the graceful period at shutdown) with one
change: a connection's first bytes are read here. A request that may be an
upgrade to the websocket path (starting ``GET /api/v3/ws``) is read up to
the end of its head and offered to
:class:`~drpd.api.websocket.RawWebsocket`, which serves it or gives it
back. Then :class:`~drpd.api.hot_http.HotHTTP` serves the connection's
requests while they are for the hot routes, and hands the connection to
hypercorn, with the bytes it read of the first other request in front of
the stream (``PrefixedStream``), when one is not. The first read has the
deadline hypercorn gives an idle connection (``keep_alive_timeout``), and a
head is bounded like hypercorn's (``h11_max_incomplete_size``).

This reaches into hypercorn's trio worker (``TCPServer``, ``Lifespan``,
``WorkerContext``), hence the pinned minor version in pyproject.toml.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, parse_socket_addr, raise_shutdown, repr_socket_addr

from .hot_http import HotHTTP
from .websocket import RawWebsocket

__all__ = ["PrefixedStream", "serve_api"]

log = logging.getLogger(__name__)

RECEIVE_BYTES = 64 * 1024
_HEAD_END = b"\r\n\r\n"


class PrefixedStream(trio.abc.Stream):
    """``stream`` with ``prefix`` (bytes already read from it) in front.

    Everything else (``socket``, ``do_handshake``, ``transport_stream``, ...)
    is the wrapped stream's, so hypercorn tells TLS from plain TCP as it
    would without this.
    """

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        prefix = self._prefix
        if prefix:
            if max_bytes is None or max_bytes >= len(prefix):
                self._prefix = b""
                await trio.lowlevel.checkpoint()
                return prefix
            self._prefix = prefix[max_bytes:]
            await trio.lowlevel.checkpoint()
            return prefix[:max_bytes]
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _addresses(stream: trio.abc.Stream) -> tuple[str, tuple[str, int] | None,
                                                  tuple[str, int] | None]:
    """(scheme, client, server) of a connection, as hypercorn puts them in a scope."""
    transport = getattr(stream, "transport_stream", None)
    scheme = "https" if transport is not None else "http"
    sock = getattr(transport if transport is not None else stream, "socket", None)
    if sock is None:
        return scheme, None, None
    try:
        return (scheme, parse_socket_addr(sock.family, sock.getpeername()),
                parse_socket_addr(sock.family, sock.getsockname()))
    except OSError:
        return scheme, None, None


def _peer(stream: trio.abc.Stream) -> str | None:
    transport = getattr(stream, "transport_stream", stream)
    sock = getattr(transport, "socket", None)
    try:
        peer = sock.getpeername() if sock is not None else None
    except OSError:
        return None
    return peer[0] if isinstance(peer, tuple) else None


class _Door:
    """Reads a connection's first bytes and sends it the right way."""

    def __init__(self, app: AppWrapper, config: Config, context: WorkerContext,
                 state: LifespanState, websocket: RawWebsocket, hot: HotHTTP | None) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.state = state
        self.websocket = websocket
        self.hot = hot

    async def __call__(self, stream: trio.abc.Stream) -> None:
        head = await self._head(stream)
        if head is None:
            await trio.aclose_forcefully(stream)
            return
        if RawWebsocket.may_be_mine(head):
            try:
                served = await self.websocket.serve(stream, head, _peer(stream))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                served = True
            except Exception:  # a defect must cost one connection, never the listener
                log.exception("websocket connection failed")
                served = True
            if served:
                await trio.aclose_forcefully(stream)
                return
        if self.hot is not None:
            try:
                rest = await self.hot.serve(stream, head, *_addresses(stream))
            except Exception:  # a defect must cost one connection, never the listener
                log.exception("HTTP connection failed")
                rest = None
            if rest is None:
                await trio.aclose_forcefully(stream)
                return
            head = rest
        server = TCPServer(self.app, self.config, self.context,
                           ConnectionState(self.state.copy()),
                           cast(Any, PrefixedStream(stream, head)))
        await server.run()

    async def _head(self, stream: trio.abc.Stream) -> bytes | None:
        """The first bytes; for a request that may be a websocket upgrade,
        up to the end of its head. None when the client sent nothing in
        time, closed, or failed the TLS handshake."""
        limit = self.config.h11_max_incomplete_size
        head = b""
        with trio.move_on_after(self.config.keep_alive_timeout):
            try:
                while True:
                    data = await stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        return head or None
                    head += data
                    if not RawWebsocket.may_be_mine(head) or _HEAD_END in head \
                            or len(head) > limit:
                        return head
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return None
        return None


async def serve_api(app: AppWrapper, config: Config, *, websocket: RawWebsocket,
                    sockets: Sockets, hot: HotHTTP | None = None,
                    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """hypercorn's ``worker_serve`` for listening ``sockets``, each
    connection through :class:`_Door`."""
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            ssl_context = config.create_ssl_context()
            listeners: list[trio.abc.Listener[Any]] = []
            binds: list[str] = []
            for sock in sockets.secure_sockets:
                assert ssl_context is not None
                listeners.append(trio.SSLListener(
                    trio.SocketListener(trio.socket.from_stdlib_socket(sock)), ssl_context,
                    https_compatible=True))
                binds.append("https://" + repr_socket_addr(sock.family, sock.getsockname()))
            for sock in sockets.insecure_sockets:
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))
            door = _Door(app, config, context, lifespan_state, websocket, hot)
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    nursery.start_soon(partial(trio.serve_listeners, door, listeners,
                                               handler_nursery=server_nursery))
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, others = error.split(ShutdownError)
                if others is not None:
                    raise others from None
            finally:
                await context.terminated.set()
                if hot is not None:
                    hot.close_idle()
                server_nursery.cancel_scope.deadline = (trio.current_time()
                                                        + config.graceful_timeout)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
