"""Baseline server: a bare trio-websocket broadcast server, the floor of drpd's event fan-out.

    python bench/bare_ws.py --fd N [--queue 1000]

``/sub`` is a subscriber: the server sends it one ``hello`` frame once it is
in the broadcast set, then every published frame. ``/pub`` is a publisher:
every text frame it sends is broadcast to all subscribers, as is. Each
subscriber has what drpd gives each websocket connection and nothing more: a
bounded queue (``--queue``; a frame that finds it full is dropped and
counted) drained by its own sender task, so a slow subscriber stalls only
itself (STACK-NOTES.md). No auth, no JSON parsing, no filters, no Seq.

It serves on an already listening socket handed over as fd N (the parent
binds 127.0.0.1 port 0), and ends on SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, WebSocketServer

HELLO = '{"Type":"bare","Action":"hello","Key":""}'


class Broadcast:
    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.subscribers: set[trio.MemorySendChannel[str]] = set()
        self.dropped = 0

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            if request.path.startswith("/pub"):
                while True:
                    text = await ws.get_message()
                    for channel in list(self.subscribers):
                        try:
                            channel.send_nowait(text)  # type: ignore[arg-type]
                        except trio.WouldBlock:
                            self.dropped += 1
                return
            send, receive = trio.open_memory_channel[str](self.queue)
            self.subscribers.add(send)
            try:
                await ws.send_message(HELLO)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_drain_input, ws, nursery.cancel_scope)
                    async for text in receive:
                        await ws.send_message(text)
            finally:
                self.subscribers.discard(send)
        except ConnectionClosed:
            pass


async def _drain_input(ws: object, scope: trio.CancelScope) -> None:
    """Read (and ignore) what a subscriber sends, so its close is noticed."""
    try:
        while True:
            await ws.get_message()  # type: ignore[attr-defined]
    except ConnectionClosed:
        scope.cancel()


async def serve(fd: int, queue: int) -> None:
    sock = socket.socket(fileno=fd)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    broadcast = Broadcast(queue)
    server = WebSocketServer(broadcast.handle, [listener], max_message_size=16 * 1024 * 1024)
    await server.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    parser.add_argument("--queue", type=int, default=1000, help="frames queued per subscriber")
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args.fd, args.queue)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
