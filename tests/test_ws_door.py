"""The API port's door (``drpd.api.server``): a websocket upgrade to
``/api/v3/ws`` as a connection's first request is served by drpd itself
(``RawWebsocket``), everything else by hypercorn, byte for byte as if the
door were not there. Raw sockets (TLS, as drpd serves by default) and
wsproto's client side, so each test controls exactly what is sent when.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import pytest
import trio
from trio_websocket import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from drpd.api.websocket import MAX_COMMAND_BYTES
from drpd.testing import DrpdProcess

from .ws_helpers import connect


def auth_header(drpd: DrpdProcess) -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(":".join(drpd.auth).encode()))


@asynccontextmanager
async def raw(drpd: DrpdProcess) -> AsyncIterator[trio.abc.Stream]:
    host, port = drpd.endpoint.rsplit("/", 1)[1].rsplit(":", 1)
    stream: trio.abc.Stream
    if drpd.no_tls:
        stream = await trio.open_tcp_stream(host, int(port))
    else:
        context = ssl.create_default_context(cafile=drpd.ca_cert)
        stream = await trio.open_ssl_over_tcp_stream(host, int(port), ssl_context=context)
    async with stream:
        yield stream


class Peer:
    """A websocket client on a raw stream: what it sends, when, is the test's."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[object] = []

    def handshake(self, drpd: DrpdProcess, target: str = "/api/v3/ws") -> bytes:
        return self.ws.send(Request(host="127.0.0.1", target=target,
                                    extra_headers=[auth_header(drpd)]))

    async def event(self) -> object:
        with trio.fail_after(10):
            while not self.pending:
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(bytes(data) if data else None)
                self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def message(self) -> dict[str, object]:
        parts = []
        while True:
            event = await self.event()
            assert isinstance(event, TextMessage), event
            parts.append(event.data)
            if event.message_finished:
                return json.loads("".join(parts))

    async def send(self, event: object) -> None:
        await self.stream.send_all(self.ws.send(event))  # type: ignore[arg-type]


async def test_an_upgrade_as_first_request_is_served_by_drpd_itself(
        shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        peer = Peer(stream)
        await stream.send_all(peer.handshake(shared_drpd))
        accepted = await peer.event()
        assert isinstance(accepted, AcceptConnection)
        # hypercorn names itself in every answer; this one did not pass through it
        assert not any(name == b"server" for name, _ in accepted.extra_headers)
        await peer.send(TextMessage(data="register machines.*.*"))
        ack = await peer.message()
        assert (ack["Type"], ack["Action"], ack["Key"]) == ("websocket", "register",
                                                            "machines.*.*")
        await peer.send(Ping(payload=b"are you there"))
        pong = await peer.event()
        assert isinstance(pong, Pong) and pong.payload == b"are you there"
        await peer.send(CloseConnection(code=1000))
        closed = await peer.event()
        assert isinstance(closed, CloseConnection) and closed.code == 1000


async def test_commands_sent_with_the_handshake_are_not_lost(shared_drpd: DrpdProcess) -> None:
    """The handshake and a first command in one write: what the door read
    past the head reaches the connection."""
    from wsproto.frame_protocol import FrameProtocol

    async with raw(shared_drpd) as stream:
        peer = Peer(stream)
        # wsproto's client will not send before the 101: the frame is built alone
        frame = FrameProtocol(client=True, extensions=[]).send_data("register profiles.*.*")
        await stream.send_all(peer.handshake(shared_drpd) + bytes(frame))
        assert isinstance(await peer.event(), AcceptConnection)
        ack = await peer.message()
        assert (ack["Action"], ack["Key"]) == ("register", "profiles.*.*")


async def test_an_upgrade_after_a_request_on_the_same_connection_still_works(
        shared_drpd: DrpdProcess) -> None:
    """The door reads a connection's first request only; a websocket opened
    later on a kept-alive connection is hypercorn's, in front of quart
    (``WsFront``), with the same behaviour."""
    async with raw(shared_drpd) as stream:
        http = h11.Connection(h11.CLIENT)
        await stream.send_all(http.send(h11.Request(
            method="GET", target="/api/v3/info",
            headers=[("host", "127.0.0.1"), auth_header(shared_drpd)])) or b"")
        await stream.send_all(http.send(h11.EndOfMessage()) or b"")
        status = None
        with trio.fail_after(10):
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(bytes(await stream.receive_some(65536)))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                if isinstance(event, h11.EndOfMessage):
                    break
        assert status == 200
        peer = Peer(stream)
        await stream.send_all(peer.handshake(shared_drpd))
        accepted = await peer.event()
        assert isinstance(accepted, AcceptConnection)
        assert any(name == b"server" for name, _ in accepted.extra_headers)  # hypercorn's
        await peer.send(TextMessage(data="register params.*.*"))
        ack = await peer.message()
        assert (ack["Action"], ack["Key"]) == ("register", "params.*.*")


async def test_a_refused_handshake_is_a_drp_error_and_never_upgraded(
        shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        peer = Peer(stream)
        await stream.send_all(peer.ws.send(Request(
            host="127.0.0.1", target="/api/v3/ws",
            extra_headers=[(b"authorization", b"Basic " + base64.b64encode(b"rocketskates:no"))])))
        rejected = await peer.event()
        assert isinstance(rejected, RejectConnection) and rejected.status_code == 401
        body = b""
        while True:
            data = await peer.event()
            assert isinstance(data, RejectData)
            body += data.data
            if data.body_finished:
                break
        error = json.loads(body)
        assert error["Code"] == 401 and error["Messages"]


async def test_a_command_over_the_size_bound_closes_with_1009(shared_drpd: DrpdProcess) -> None:
    async with connect(shared_drpd) as client:
        await client.ws.send_message("register " + "x" * MAX_COMMAND_BYTES)
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1009


@pytest.mark.parametrize("first", [
    b"GET /api/v3/ws HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"j" * 40_000,  # head too big
    b"GET /api/v3/ws HTTP/1.1\r\nHost: x\r\n\r\n",  # no upgrade
    b"GET /api/v3/wsx HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"\x00\x01garbage\r\n\r\n",
    b"G",  # then the connection closes
])
async def test_what_the_door_does_not_take_gets_hypercorns_answer(
        shared_drpd: DrpdProcess, first: bytes) -> None:
    """Never a hang and never a crash: hypercorn answers (an HTTP status) or
    closes, and the port serves the next client."""
    async with raw(shared_drpd) as stream:
        await stream.send_all(first)
        if first == b"G":
            if isinstance(stream, trio.SSLStream):
                await stream.aclose()
            else:
                await stream.send_eof()
        answer = b""
        with trio.fail_after(10):
            try:
                while data := await stream.receive_some(65536):
                    answer += data
                    if b"\r\n\r\n" in answer:
                        break
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500, answer[:200]
    async with connect(shared_drpd) as client:  # the port still serves
        await client.ws.send_message("register machines.*.*")
        with trio.fail_after(10):
            ack = json.loads(await client.ws.get_message())
        assert ack["Action"] == "register"


async def test_a_request_split_across_writes_reaches_hypercorn_whole(
        shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        request = (b"GET /api/v3/info HTTP/1.1\r\nHost: x\r\nAuthorization: "
                   + auth_header(shared_drpd)[1] + b"\r\nConnection: close\r\n\r\n")
        for i in range(0, len(request), 5):  # "GET /" first: may still be the websocket
            await stream.send_all(request[i:i + 5])
        answer = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
