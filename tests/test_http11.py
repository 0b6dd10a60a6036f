"""drpd.http11 over real UNIX sockets: server, client, and both misbehaving."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import msgspec
import pytest
import trio

from drpd import http11
from drpd.http11 import UnixHTTPClient, serve_unix

Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


async def echo(method: str, target: str, body: bytes) -> tuple[int, bytes]:
    return 200, msgspec.json.encode({"Method": method, "Target": target, "Size": len(body)})


@asynccontextmanager
async def server(path: Path, handler: Handler = echo, **kw: object) -> AsyncIterator[str]:
    """Run serve_unix in a nursery for the duration of the block."""
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_unix, str(path), handler, **kw))
        yield str(path)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw_server(
    path: Path, on_conn: Callable[[trio.SocketStream], Awaitable[None]]
) -> AsyncIterator[str]:
    """A bare socket server, for peers that break HTTP on purpose."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(64)
    listener = trio.SocketListener(sock)
    async with trio.open_nursery() as nursery:

        async def serve_one(stream: trio.SocketStream) -> None:
            try:
                await on_conn(stream)
            except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                stream.socket.close()

        async def accept_loop() -> None:
            while True:
                stream = await listener.accept()
                nursery.start_soon(serve_one, stream)

        nursery.start_soon(accept_loop)
        yield str(path)
        nursery.cancel_scope.cancel()
    sock.close()


async def read_request(stream: trio.SocketStream, buf: bytearray) -> bytes:
    """Read one request head (bodies in these tests are empty or sized by the test)."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    buf[:] = rest[length:]
    return head


def json_response(body: bytes, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# ------------------------------------------------------------------ basics


async def test_round_trip_and_keep_alive(short_tmp: Path) -> None:
    async with server(short_tmp / "s") as path, UnixHTTPClient(path) as client:
        connects = 0
        real_connect = client._connect

        async def counting_connect() -> object:
            nonlocal connects
            connects += 1
            return await real_connect()

        client._connect = counting_connect  # type: ignore[method-assign]
        for i in range(20):
            status, body = await client.request("POST", f"/x?i={i}", b'{"a": 1}')
            assert status == 200
            assert msgspec.json.decode(body) == {"Method": "POST", "Target": f"/x?i={i}", "Size": 8}
        status, body = await client.request("GET", "/get")
        assert (status, msgspec.json.decode(body)["Size"]) == (200, 0)
        assert connects == 1
        assert client.idle_connections == 1


async def test_response_headers_are_json_with_content_length(short_tmp: Path) -> None:
    async with server(short_tmp / "s") as path:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(path)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        # two pipelined requests on one connection, answered in order
        await stream.send_all(
            b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
            b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = b""
        with trio.fail_after(5):
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
                data += await stream.receive_some(65536)
        first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
        assert b"content-type: application/json" in first.lower()
        assert b"content-length: " in first.lower()
        assert b"transfer-encoding" not in data.lower()
        assert b'"Target":"/one"' in first and b'"Target":"/two"' in second
        await stream.aclose()


async def test_handler_exception_answers_500_error(short_tmp: Path) -> None:
    async def broken(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        if target == "/boom":
            raise RuntimeError("kaput")
        return await echo(method, target, body)

    async with server(short_tmp / "s", broken) as path, UnixHTTPClient(path) as client:
        status, body = await client.request("POST", "/boom", b"{}")
        assert status == 500
        error = msgspec.json.decode(body)
        assert error["Code"] == 500 and "RuntimeError: kaput" in error["Messages"][0]
        # the same connection keeps serving
        assert (await client.request("POST", "/ok", b"{}"))[0] == 200
        assert client.idle_connections == 1


async def test_malformed_request_gets_400(short_tmp: Path) -> None:
    async with server(short_tmp / "s") as path:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(path)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 400")
        await stream.aclose()


async def test_on_sent_runs_after_the_answer_is_written(short_tmp: Path) -> None:
    sent: list[tuple[str, str, int]] = []
    async with server(short_tmp / "s", on_sent=lambda *a: sent.append(a)) as path:
        async with UnixHTTPClient(path) as client:
            await client.request("POST", "/stop", None)
    assert sent == [("POST", "/stop", 200)]


# ------------------------------------------------------------------ socket files


async def test_stale_socket_file_is_replaced_and_removed_on_exit(short_tmp: Path) -> None:
    path = short_tmp / "s"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    assert stat.S_ISSOCK(path.lstat().st_mode)
    async with server(path), UnixHTTPClient(str(path)) as client:
        assert (await client.request("GET", "/"))[0] == 200
    assert not path.exists()


async def test_refuses_to_replace_a_regular_file(short_tmp: Path) -> None:
    path = short_tmp / "s"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        await serve_unix(str(path), echo)
    assert path.read_text() == "precious"


async def test_too_long_socket_path_is_a_clear_error(short_tmp: Path) -> None:
    path = str(short_tmp / ("x" * 120))
    with pytest.raises(ValueError, match="limit is 107"):
        await serve_unix(path, echo)
    with pytest.raises(ValueError, match="limit is 107"):
        UnixHTTPClient(path)


async def test_connect_errors(short_tmp: Path) -> None:
    async with UnixHTTPClient(str(short_tmp / "missing")) as client:
        with pytest.raises(http11.ConnectError, match="No such file"):
            await client.request("GET", "/")
    dead = short_tmp / "dead"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(dead))
    sock.close()
    async with UnixHTTPClient(str(dead), connect_timeout=0.05) as client:
        with trio.fail_after(5), pytest.raises(http11.ConnectError, match="refused"):
            await client.request("GET", "/")


# ------------------------------------------------------------------ concurrency


async def test_many_concurrent_requests(short_tmp: Path) -> None:
    async def slowish(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        await trio.sleep(0.001)
        return 200, body

    results: dict[int, bytes] = {}
    async with server(short_tmp / "s", slowish) as path:
        async with UnixHTTPClient(path, max_connections=16) as client:

            async def one(i: int) -> None:
                status, body = await client.request("POST", "/", msgspec.json.encode({"i": i}))
                assert status == 200
                results[i] = body

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for i in range(500):
                        nursery.start_soon(one, i)
            assert client.idle_connections <= 4
    assert {i: msgspec.json.decode(b)["i"] for i, b in results.items()} == {
        i: i for i in range(500)
    }


async def test_burst_of_100_against_a_fresh_server_with_a_tiny_backlog(short_tmp: Path) -> None:
    """Every one of 100 simultaneous connects gets through a backlog of 1 (EAGAIN retried)."""
    arrived = 0
    all_in = trio.Event()

    async def gather(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        nonlocal arrived
        arrived += 1
        if arrived == 100:
            all_in.set()
        await all_in.wait()  # so all 100 connections are open at once
        return 200, b"{}"

    async with server(short_tmp / "s", gather, backlog=1) as path:
        async with UnixHTTPClient(path, max_connections=100, connect_timeout=10) as client:
            statuses: list[int] = []

            async def one() -> None:
                statuses.append((await client.request("POST", "/", b"{}"))[0])

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for _ in range(100):
                        nursery.start_soon(one)
    assert statuses == [200] * 100


async def test_max_connections_caps_concurrency(short_tmp: Path) -> None:
    running = 0
    peak = 0
    three = trio.Event()
    release = trio.Event()

    async def track(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three.set()
        await release.wait()
        running -= 1
        return 200, b"{}"

    async with server(short_tmp / "s", track) as path:
        async with UnixHTTPClient(path, max_connections=3) as client:
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(client.request, "POST", "/", b"{}")
                with trio.fail_after(5):
                    await three.wait()
                await trio.testing.wait_all_tasks_blocked()  # the other 7 wait for a slot
                assert running == 3
                release.set()
    assert peak == 3


# ------------------------------------------------------------------ big bodies


async def test_big_bodies_both_ways(short_tmp: Path) -> None:
    big = b'"' + b"x" * (20 * 1024 * 1024) + b'"'

    async def mirror(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 200, body

    async with server(short_tmp / "s", mirror) as path, UnixHTTPClient(path) as client:
        with trio.fail_after(30):
            status, body = await client.request("POST", "/", big)
        assert status == 200 and body == big
        assert client.idle_connections == 1


async def test_request_over_max_body_gets_413(short_tmp: Path) -> None:
    async with server(short_tmp / "s", max_body=1000) as path, UnixHTTPClient(path) as client:
        with trio.fail_after(10):
            status, body = await client.request("POST", "/", b"1" * 5_000_000)
        assert status == 413
        assert msgspec.json.decode(body)["Code"] == 413
        assert (await client.request("POST", "/", b"1" * 999))[0] == 200


async def test_response_over_max_body_raises(short_tmp: Path) -> None:
    async def large(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 200, b"1" * 10_000

    async with server(short_tmp / "s", large) as path:
        async with UnixHTTPClient(path, max_body=1000) as client:
            with pytest.raises(http11.ResponseTooLarge):
                await client.request("GET", "/")
            assert client.idle_connections == 0


# ------------------------------------------------------------------ peers that close


async def test_peer_closing_mid_response_is_a_clear_error(short_tmp: Path) -> None:
    async def half_answer(stream: trio.SocketStream) -> None:
        await read_request(stream, bytearray())
        await stream.send_all(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"par')
        await stream.aclose()

    async with raw_server(short_tmp / "s", half_answer) as path, UnixHTTPClient(path) as client:
        with pytest.raises(http11.ConnectionClosed, match="mid-response after"):
            await client.request("GET", "/")
        assert client.idle_connections == 0


async def test_peer_closing_without_answer_on_a_fresh_connection(short_tmp: Path) -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await read_request(stream, bytearray())
        await stream.aclose()

    async with raw_server(short_tmp / "s", hang_up) as path, UnixHTTPClient(path) as client:
        for method in ("GET", "POST"):  # never retried on a fresh connection
            with pytest.raises(http11.ConnectionClosed, match="without answering"):
                await client.request(method, "/")


async def test_idle_connection_closed_by_peer_is_replaced(short_tmp: Path) -> None:
    closed = trio.Event()

    async def one_then_close(stream: trio.SocketStream) -> None:
        await read_request(stream, bytearray())
        await stream.send_all(json_response(b"{}"))
        await stream.aclose()
        closed.set()

    async with raw_server(short_tmp / "s", one_then_close) as path:
        async with UnixHTTPClient(path) as client:
            assert (await client.request("POST", "/", b"{}"))[0] == 200
            assert client.idle_connections == 1
            with trio.fail_after(5):
                await closed.wait()
            # not idempotent, yet safe: the dead connection is noticed before use
            assert (await client.request("POST", "/", b"{}"))[0] == 200


async def test_reused_connection_dying_under_a_request(short_tmp: Path) -> None:
    """Only idempotent requests are sent again when a reused connection hangs up."""
    seen: list[bytes] = []

    async def second_request_hangs_up(stream: trio.SocketStream) -> None:
        buf = bytearray()
        head = await read_request(stream, buf)
        seen.append(head.split(b"\r\n")[0])
        await stream.send_all(json_response(b"{}"))
        head = await read_request(stream, buf)
        seen.append(head.split(b"\r\n")[0])
        await stream.aclose()

    async with raw_server(short_tmp / "s", second_request_hangs_up) as path:
        async with UnixHTTPClient(path) as client:
            await client.request("GET", "/warm")
            assert (await client.request("GET", "/again"))[0] == 200
            assert seen == [b"GET /warm HTTP/1.1", b"GET /again HTTP/1.1", b"GET /again HTTP/1.1"]
            seen.clear()
            await client.request("GET", "/warm")
            with pytest.raises(http11.ConnectionClosed):
                await client.request("POST", "/once", b"{}")
            assert seen[-1] == b"POST /once HTTP/1.1" and seen.count(b"POST /once HTTP/1.1") == 1


# ------------------------------------------------------------------ cancellation


async def test_cancelled_request_drops_its_connection_and_cancels_the_handler(
    short_tmp: Path,
) -> None:
    started = trio.Event()
    handler_cancelled = trio.Event()

    async def stuck(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        if target == "/stuck":
            started.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                handler_cancelled.set()
                raise
        return 200, b'"fine"'

    async with server(short_tmp / "s", stuck) as path, UnixHTTPClient(path) as client:
        await client.request("GET", "/warm")
        assert client.idle_connections == 1
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def doomed() -> None:
                with scope:
                    await client.request("POST", "/stuck", b"{}")

            nursery.start_soon(doomed)
            with trio.fail_after(5):
                await started.wait()
            scope.cancel()
        assert client.idle_connections == 0
        with trio.fail_after(5):
            await handler_cancelled.wait()  # the server noticed the hang-up
        assert await client.request("GET", "/") == (200, b'"fine"')


async def test_cancel_mid_body_never_pools_a_half_read_connection(short_tmp: Path) -> None:
    part_sent = trio.Event()

    async def dribble(stream: trio.SocketStream) -> None:
        buf = bytearray()
        head = await read_request(stream, buf)
        if b"/slow" in head:
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
            part_sent.set()
            await trio.sleep_forever()
        await stream.send_all(json_response(b'"quick"'))

    async with raw_server(short_tmp / "s", dribble) as path, UnixHTTPClient(path) as client:
        with trio.move_on_after(10) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.request, "GET", "/slow")
                await part_sent.wait()
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert client.idle_connections == 0
        assert await client.request("GET", "/quick") == (200, b'"quick"')


async def test_aclose_fails_requests_in_flight(short_tmp: Path) -> None:
    started = trio.Event()

    async def forever(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        started.set()
        await trio.sleep_forever()
        raise AssertionError

    async with server(short_tmp / "s", forever) as path:
        client = UnixHTTPClient(path)
        failure: list[BaseException] = []

        async def call() -> None:
            try:
                await client.request("GET", "/")
            except http11.HTTPError as exc:
                failure.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await started.wait()
                await client.aclose()
        assert isinstance(failure[0], http11.ClientClosed)
        with pytest.raises(http11.ClientClosed):
            await client.request("GET", "/")


def test_public_names_are_pinned() -> None:
    assert sorted(http11.__all__) == sorted(
        [
            "DEFAULT_MAX_BODY", "ClientClosed", "ConnectError", "ConnectionClosed", "HTTPError",
            "Handler", "MAX_UNIX_PATH", "RemoteProtocolError", "ResponseTooLarge", "UnixHTTPClient",
            "check_unix_path", "serve_unix",
        ]
    )  # fmt: skip
    assert os.path.basename(http11.__file__) == "http11.py"
