"""Floor servers for the provider hop: HTTP/1.1 on a UNIX socket, echoing the body.

    python bench/h11_floor.py raw  /tmp/x/raw.sock    # trio + h11, nothing else
    python bench/h11_floor.py drpd /tmp/x/drpd.sock   # drpd.http11.serve_unix, echo handler

``raw`` is the least a trio server speaking HTTP/1.1 with h11 can do: one
task per connection, read a request to its end, answer the same bytes with
a Content-Length in one write, next cycle; no handler call, no hang-up
watch, no error answers. ``drpd`` is drpd's own server with a handler that
returns the body. Both run until SIGTERM; ``bench/limits.py`` starts them
(and the minimal client, :class:`RawClient`, lives here too).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

import h11
import trio

READ_SIZE = 65536


# -- the minimal server -------------------------------------------------------------------
async def _raw_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    chunks: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_SIZE)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                body = b"".join(chunks)
                chunks = []
                out = conn.send(h11.Response(status_code=200, headers=[
                    ("content-type", "application/json"),
                    ("content-length", str(len(body)))]))
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        return
    finally:
        stream.socket.close()


async def serve_raw(path: str) -> None:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)  # main() removed a stale file
    sock.listen(512)
    listener = trio.SocketListener(sock)
    async with trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            nursery.start_soon(_raw_connection, stream)


async def serve_drpd(path: str) -> None:
    from drpd.http11 import serve_unix

    async def echo(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 200, body

    await serve_unix(path, echo)


# -- the minimal client --------------------------------------------------------------------
class RawClient:
    """One kept-alive connection, h11, POST and read the answer: nothing else."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_unix_socket(self.path)
        conn = self.conn
        out = conn.send(h11.Request(method="POST", target=target, headers=[
            ("host", "localhost"), ("content-type", "application/json"),
            ("content-length", str(len(body)))]))
        out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        await self.stream.send_all(out)
        status = 0
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self.stream.receive_some(READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                conn.start_next_cycle()
                return status, b"".join(chunks)
            else:
                raise RuntimeError(f"unexpected {event!r}")

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


async def _until_signal(serve: Any, path: str) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, path)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("raw", "drpd"):
        sys.stderr.write("usage: h11_floor.py raw|drpd <socket-path>\n")
        return 2
    serve = serve_raw if argv[0] == "raw" else serve_drpd
    if os.path.exists(argv[1]):
        os.unlink(argv[1])
    try:
        trio.run(_until_signal, serve, argv[1])
    finally:
        if os.path.exists(argv[1]):
            os.unlink(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
