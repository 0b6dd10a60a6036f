"""Helpers for tests of drpd's event websocket: clients, a cuttable TCP proxy, line readers."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from drpd.testing import DrpdProcess


def ws_url(drpd: DrpdProcess, query: str = "", *, endpoint: str | None = None) -> str:
    base = (endpoint or drpd.endpoint).replace("https://", "wss://").replace("http://", "ws://")
    return f"{base}/api/v3/ws{query}"


def ssl_context(drpd: DrpdProcess) -> ssl.SSLContext | None:
    return None if drpd.no_tls else ssl.create_default_context(cafile=drpd.ca_cert)


def basic(user: str = "rocketskates", password: str = "r0cketsk8ts") -> list[tuple[bytes, bytes]]:
    token = base64.b64encode(f"{user}:{password}".encode())
    return [(b"authorization", b"Basic " + token)]


@asynccontextmanager
async def connect(drpd: DrpdProcess, query: str = "",
                  headers: list[tuple[bytes, bytes]] | None = None) -> AsyncIterator[Client]:
    opened: list[WebSocketConnection] = []
    try:
        async with open_websocket_url(ws_url(drpd, query), ssl_context(drpd),
                                      extra_headers=basic() if headers is None else headers,
                                      disconnect_timeout=5) as ws:
            opened.append(ws)
            yield Client(ws)
    finally:
        # trio-websocket leaves the socket of a connection that the server
        # closed to the garbage collector (a ResourceWarning in tests)
        for ws in opened:
            await trio.aclose_forcefully(ws._stream)


class Client:
    """A raw websocket client that keeps what it read and can wait for a frame."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def next(self, limit: float = 10.0) -> dict[str, Any]:
        with trio.fail_after(limit):
            frame = json.loads(await self.ws.get_message())
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Any, limit: float = 10.0) -> list[dict[str, Any]]:
        """Frames read up to and including the first one ``predicate`` accepts."""
        out = []
        with trio.fail_after(limit):
            while True:
                frame = await self.next(limit)
                out.append(frame)
                if predicate(frame):
                    return out

    async def command(self, verb: str, pattern: str) -> list[dict[str, Any]]:
        """Send a command; return the frames up to its acknowledgement (included)."""
        await self.ws.send_message(f"{verb} {pattern}")
        return await self.until(lambda f: is_notice(f) and f["Action"] == verb
                                and f["Key"] == pattern)

    async def register(self, pattern: str) -> list[dict[str, Any]]:
        return await self.command("register", pattern)


def is_notice(frame: dict[str, Any]) -> bool:
    return frame.get("Type") == "websocket" and "Seq" not in frame


def events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if not is_notice(f)]


class Proxy:
    """A TCP proxy on 127.0.0.1 to ``port``, whose connections a test can cut.

    ``pause()`` cuts every connection and holds new ones (accepted, not yet
    forwarded) until ``resume()``: a client that reconnects meanwhile gets
    through only after events were published behind its back.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.connections = 0
        self._scopes: set[trio.CancelScope] = set()
        self._open = trio.Event()
        self._open.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            await self._open.wait()
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
                    self.connections += 1
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def pause(self) -> None:
        self._open = trio.Event()
        self.cut()

    def resume(self) -> None:
        self._open.set()


async def _pipe(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


class Lines:
    """Lines of a child's output stream, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._buffer = b""

    async def next(self, limit: float = 15.0) -> str:
        with trio.fail_after(limit):
            while b"\n" not in self._buffer:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(f"stream ended; had {self.lines[-5:]}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        text = line.decode()
        self.lines.append(text)
        return text

    async def rest(self, limit: float = 15.0) -> list[str]:
        with trio.fail_after(limit):
            while chunk := await self.stream.receive_some(65536):
                self._buffer += chunk
        out = [line.decode() for line in self._buffer.split(b"\n") if line]
        self._buffer = b""
        self.lines.extend(out)
        return out
