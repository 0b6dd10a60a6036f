"""The hot routes served before hypercorn (``drpd.api.hot_http``, ``hot_routes``).

A connection's requests for objects, params, actions and posted events are
answered by drpd's own HTTP/1.1 loop, the first other request hands the
connection to hypercorn, and a client cannot tell the two apart but by
hypercorn's ``server`` header. Raw sockets (TLS, as drpd serves by
default) and h11's client, so each test controls exactly what is sent when.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import h11
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from quart_trio import QuartTrio

from drpd.api import current, objects
from drpd.api.app import create_app
from drpd.api.context import ApiContext
from drpd.api.hot_http import HotHTTP, may_be_hot
from drpd.api.hot_routes import HotRoutes
from drpd.auth import Authenticator
from drpd.bus import EventBus
from drpd.config import Settings
from drpd.store import SQLiteStore
from drpd.testing import DrpdProcess

from .test_ws_door import auth_header, raw


class Client:
    """HTTP/1.1 on a raw stream: requests sent whole or in pieces, answers read whole."""

    def __init__(self, stream: trio.abc.Stream, drpd: DrpdProcess | None) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)
        self.auth = auth_header(drpd) if drpd is not None else (b"x-no-auth", b"")

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: list[tuple[bytes, bytes]] | None = None, *, auth: bool = True) -> bytes:
        """The bytes of one request (sent by the caller: alone, or with others)."""
        sent = [(b"host", b"127.0.0.1")] + ([self.auth] if auth else []) + (headers or [])
        if body is not None and not any(name == b"transfer-encoding" for name, _ in sent):
            sent.append((b"content-length", str(len(body)).encode()))
        out = self.http.send(h11.Request(method=method, target=target, headers=sent)) or b""
        if body:
            out += self.http.send(h11.Data(data=body)) or b""
        return out + (self.http.send(h11.EndOfMessage()) or b"")

    async def event(self) -> object:
        """h11's next event off the stream (reading as much as it takes)."""
        while (event := self.http.next_event()) is h11.NEED_DATA:
            self.http.receive_data(bytes(await self.stream.receive_some(65536)))
        return event

    async def answer(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next response: status, headers, body (informational ones skipped)."""
        status, headers, body = 0, {}, b""
        with trio.fail_after(10):
            while True:
                event = await self.event()
                if isinstance(event, h11.Response):
                    status, headers = event.status_code, dict(event.headers)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
        return status, headers, body

    async def call(self, method: str, target: str, body: bytes | None = None,
                   headers: list[tuple[bytes, bytes]] | None = None, *,
                   auth: bool = True) -> tuple[int, dict[bytes, bytes], bytes]:
        await self.stream.send_all(self.request(method, target, body, headers, auth=auth))
        return await self.answer()


def machine(name: str) -> bytes:
    return json.dumps({"Name": name, "Uuid": str(uuid.uuid4())}).encode()


def hypercorns(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"server", b"").startswith(b"hypercorn")


async def test_hot_requests_are_drpds_until_another_hands_the_connection_to_hypercorn(
        shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        status, headers, body = await client.call("POST", "/api/v3/machines", machine("hot-1"))
        assert status == 201 and not hypercorns(headers)
        assert headers[b"content-type"] == b"application/json" and b"date" in headers
        uuid_ = json.loads(body)["Uuid"]
        status, headers, mine = await client.call("GET", f"/api/v3/machines/{uuid_}")
        assert status == 200 and not hypercorns(headers)
        status, headers, _ = await client.call("GET", "/api/v3/info")
        assert status == 200 and hypercorns(headers)
        # the connection is hypercorn's now: the same request, the same answer
        status, theirs_headers, theirs = await client.call("GET", f"/api/v3/machines/{uuid_}")
        assert status == 200 and hypercorns(theirs_headers)
        assert json.loads(theirs) == json.loads(mine)
        assert set(theirs_headers) - {b"server"} == set(headers) - {b"server"} | {b"etag"}


def one_request(drpd: DrpdProcess, method: str, target: str, body: bytes = b"") -> bytes:
    http = h11.Connection(h11.CLIENT)
    headers = [(b"host", b"x"), auth_header(drpd), (b"content-length", str(len(body)).encode())]
    out = http.send(h11.Request(method=method, target=target, headers=headers)) or b""
    return out + (http.send(h11.Data(data=body)) or b"") + (http.send(h11.EndOfMessage()) or b"")


async def pipelined_answers(stream: trio.abc.Stream, count: int
                            ) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """``count`` answers read off one stream (h11's client reads one per request)."""
    answers = []
    leftover = b""
    for _ in range(count):
        http = h11.Connection(h11.CLIENT)
        http.send(h11.Request(method="GET", target="/", headers=[(b"host", b"x")]))
        http.send(h11.EndOfMessage())
        if leftover:  # (an empty receive_data is h11's end of stream)
            http.receive_data(leftover)
        client = Client.__new__(Client)
        client.stream, client.http = stream, http
        answers.append(await client.answer())
        leftover = http.trailing_data[0]
    return answers


@pytest.mark.parametrize("method, target, body", [
    ("GET", "/api/v3/machines/Name:nobody-at-all", None),  # 404
    ("POST", "/api/v3/profiles", b'{"Name": '),  # 400
    ("POST", "/api/v3/profiles", b'{"Name": "bad name with spaces"}'),  # 422
    ("PUT", "/api/v3/machines/x/y/z", b"{}"),  # no such sub-resource
    ("GET", "/api/v3/profiles/global/params", None),
    ("GET", "/api/v3/profiles?limit=1&offset=0", None),
    ("GET", "/api/v3/params?Name=nonesuch", None),
    ("POST", "/api/v3/events", b'{"Type": "websocket", "Action": "x", "Key": "y"}'),  # 400
])
async def test_drpd_and_hypercorn_answer_a_request_alike(
        shared_drpd: DrpdProcess, method: str, target: str, body: bytes | None) -> None:
    answers = []
    for through_hypercorn in (False, True):
        async with raw(shared_drpd) as stream:
            client = Client(stream, shared_drpd)
            if through_hypercorn:
                status, headers, _ = await client.call("GET", "/api/v3/info")
                assert status == 200 and hypercorns(headers)
            status, headers, answer = await client.call(method, target, body)
            assert hypercorns(headers) is through_hypercorn
            shown = {name: value for name, value in headers.items()
                     if name not in (b"server", b"date")}
            answers.append((status, shown, json.loads(answer)))
    assert answers[0] == answers[1]


async def test_pipelined_requests_are_answered_in_order(shared_drpd: DrpdProcess) -> None:
    name = "piped-" + uuid.uuid4().hex[:8]
    async with raw(shared_drpd) as stream:
        await stream.send_all(
            one_request(shared_drpd, "POST", "/api/v3/machines", machine(name))
            + one_request(shared_drpd, "GET", f"/api/v3/machines/Name:{name}")
            + one_request(shared_drpd, "GET", "/api/v3/info")
            + one_request(shared_drpd, "GET", f"/api/v3/machines/Name:{name}"))
        answers = await pipelined_answers(stream, 4)
    assert [a[0] for a in answers] == [201, 200, 200, 200]
    assert json.loads(answers[1][2])["Name"] == name
    assert json.loads(answers[3][2]) == json.loads(answers[1][2])
    assert [hypercorns(a[1]) for a in answers] == [False, False, True, True]


async def test_a_client_waiting_for_100_continue_gets_it(shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        body = machine("continued-" + uuid.uuid4().hex[:8])
        http = client.http
        await stream.send_all(http.send(h11.Request(
            method="POST", target="/api/v3/machines",
            headers=[(b"host", b"x"), client.auth, (b"expect", b"100-continue"),
                     (b"content-length", str(len(body)).encode())])) or b"")
        with trio.fail_after(10):
            event = await client.event()
        assert isinstance(event, h11.InformationalResponse) and event.status_code == 100
        await stream.send_all((http.send(h11.Data(data=body)) or b"")
                              + (http.send(h11.EndOfMessage()) or b""))
        status, headers, _ = await client.answer()
        assert status == 201 and not hypercorns(headers)


async def test_a_chunked_body_is_read_whole(shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        http = client.http
        name = "chunked-" + uuid.uuid4().hex[:8]
        body = machine(name)
        out = http.send(h11.Request(method="POST", target="/api/v3/machines", headers=[
            (b"host", b"x"), client.auth, (b"transfer-encoding", b"chunked")])) or b""
        for i in range(0, len(body), 7):
            out += http.send(h11.Data(data=body[i:i + 7])) or b""
        await stream.send_all(out + (http.send(h11.EndOfMessage()) or b""))
        status, headers, answer = await client.answer()
        assert status == 201 and json.loads(answer)["Name"] == name


async def test_refusals_and_errors_are_drp_errors_and_keep_the_connection(
        shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        wrong = (b"authorization", b"Basic cm9ja2V0c2thdGVzOm5v")  # rocketskates:no
        cases: list[tuple[str, str, bytes | None, list[tuple[bytes, bytes]], int]] = [
            ("POST", "/api/v3/machines", machine("refused"), [wrong], 401),
            ("POST", "/api/v3/machines", b'{"Name": ', [], 400),
            ("GET", f"/api/v3/machines/{uuid.uuid4()}", None, [], 404),
            ("GET", "/api/v3/nosuchkind", None, [], 404),
            ("PUT", "/api/v3/machines/Name:nobody", b"{}", [], 404),
            ("POST", "/api/v3/machines", b"[" * 10_000 + b"]" * 10_000, [], 400),
        ]
        for method, target, body, extra, expected in cases:
            status, headers, answer = await client.call(method, target, body, extra,
                                                        auth=not extra)
            assert status == expected, answer[:300]
            error = json.loads(answer)
            assert error["Code"] == expected and error["Messages"], error
            assert not hypercorns(headers)
        status, headers, _ = await client.call("GET", "/api/v3/machines?limit=1")
        assert status == 200 and not hypercorns(headers)


@pytest.mark.parametrize("method, target, extra", [
    ("HEAD", "/api/v3/machines", []),  # HEAD is hypercorn's (and quart's)
    ("GET", "/api/v3/machines", [(b"upgrade", b"something")]),  # any upgrade is
    ("GET", "/api/v3/machines/", []),  # a trailing slash: werkzeug's rules
    ("GET", "/api/v3/files", []),  # a prefix another route owns
])
async def test_what_hot_http_does_not_take_is_hypercorns(
        shared_drpd: DrpdProcess, method: str, target: str,
        extra: list[tuple[bytes, bytes]]) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        status, headers, _ = await client.call(method, target, headers=extra)
        assert hypercorns(headers) and status < 500


@pytest.mark.parametrize("head", [
    b"GET /api/v3/machines HTTP/1.1\r\nHost x\r\n\r\n",  # a header line without a colon
    b"GET /api/v3/machines HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n",
    b"GET /api/v3/machines HTTP/1.1\r\n" + b"X: " + b"y" * 20_000 + b"\r\n\r\n",  # too long
])
async def test_a_malformed_head_gets_hypercorns_answer(
        shared_drpd: DrpdProcess, head: bytes) -> None:
    async with raw(shared_drpd) as stream:
        await stream.send_all(head)
        answer = b""
        with trio.fail_after(10):
            try:
                while b"\r\n\r\n" not in answer and (data := await stream.receive_some(65536)):
                    answer += data
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    async with raw(shared_drpd) as stream:  # the port still serves
        status, _, _ = await Client(stream, shared_drpd).call("GET", "/api/v3/machines?limit=1")
        assert status == 200


async def test_a_client_gone_mid_body_costs_only_its_connection(
        shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        http = client.http
        await stream.send_all(http.send(h11.Request(
            method="POST", target="/api/v3/machines",
            headers=[(b"host", b"x"), client.auth, (b"content-length", b"1000")])) or b"")
        await stream.send_all(b'{"Name": "gone"')
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        status, _, body = await client.call("GET", "/api/v3/machines?Name=gone")
        assert status == 200 and json.loads(body) == []


async def test_hot_requests_are_counted_in_metrics(shared_drpd: DrpdProcess) -> None:
    async with raw(shared_drpd) as stream:
        client = Client(stream, shared_drpd)
        status, _, _ = await client.call("POST", "/api/v3/profiles",
                                         json.dumps({"Name": "counted-profile"}).encode())
        assert status == 201
        status, _, text = await client.call("GET", "/api/v3/metrics")
        assert status == 200
    line = next(line for line in text.decode().splitlines()
                if line.startswith("drpd_api_requests_total{")
                and 'route="/api/v3/profiles"' in line and 'method="POST"' in line
                and 'status="201"' in line)
    assert float(line.rsplit(" ", 1)[1]) >= 1


async def test_idle_kept_alive_connections_close_when_drpd_stops(tmp_path: Path) -> None:
    """Shutdown does not wait out the graceful period for a client that keeps
    its connection open between requests."""
    with DrpdProcess(tmp_path / "state") as drpd:
        async with raw(drpd) as stream:
            client = Client(stream, drpd)
            status, headers, _ = await client.call("GET", "/api/v3/machines?limit=1")
            assert status == 200 and not hypercorns(headers)
            drpd.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(3):  # the graceful period is 5 s
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            assert data == b""
        assert await trio.to_thread.run_sync(drpd.proc.wait, 30) == 0


async def test_close_idle_ends_a_connection_between_requests_at_once(tmp_path: Path) -> None:
    """What drpd's shutdown calls (``serve_api`` when hypercorn's workers are
    told to terminate): a connection waiting for its next request closes now,
    not after the 75 s keep-alive timeout."""
    app, routes = _apps(tmp_path)
    config = HyperConfig()
    config.keep_alive_timeout = 75
    hot = HotHTTP(routes, config)
    ours, theirs = trio.socket.socketpair()
    server, client_stream = trio.SocketStream(ours), trio.SocketStream(theirs)
    async with trio.open_nursery() as nursery:
        left: list[bytes | None] = []

        async def serve() -> None:
            async with server:
                left.append(await hot.serve(server, b"", "http", None, None))
            # nothing of the request stays bound in the connection's task
            # (hypercorn's tasks, if it took the connection over, copy it)
            assert not current.serving() and objects.CURRENT.get(None) is None

        nursery.start_soon(serve)
        client = Client(client_stream, None)
        status, headers, _ = await client.call("GET", "/api/v3/machines", auth=False)
        assert status == 401 and not hypercorns(headers)  # answered here, kept alive
        hot.close_idle()
        with trio.fail_after(5):
            assert await client_stream.receive_some(10) == b""  # closed by the server
        assert left == [None]


# -- the routing: only what quart's router reads the same way ---------------
@pytest.mark.parametrize("method, path", [
    ("POST", "/api/v3/machines"), ("GET", "/api/v3/machines"),
    ("GET", "/api/v3/machines/abc"), ("PUT", "/api/v3/machines/abc"),
    ("PATCH", "/api/v3/profiles/p1"), ("DELETE", "/api/v3/params/a/b/c"),
    ("POST", "/api/v3/machines/abc/actions/poweron"), ("GET", "/api/v3/machines/a/params/x"),
    ("POST", "/api/v3/events"), ("GET", "/api/v3/nosuchkind"), ("POST", "/api/v3/machines/x"),
    ("GET", "/api/v3/users/u1/token"), ("POST", "/api/v3/plugins/p/restart"),
    ("GET", "/api/v3/system/actions"), ("POST", "/api/v3/system/actions/ping"),
    ("GET", "/api/v3/system/actions/drpd-ipmi:poweron"), ("POST", "/api/v3/system/actions/a/b"),
])
def test_a_hot_route_is_the_route_quart_would_take(tmp_path: Path, method: str,
                                                   path: str) -> None:
    app, hot = _apps(tmp_path)
    found = hot.route(method, path)
    assert found is not None
    _, endpoint, view_args, _ = found
    rule, args = app.url_map.bind("x").match(path, method, return_rule=True)
    assert (rule.endpoint, args) == (endpoint, view_args)


@pytest.mark.parametrize("method, path", [
    ("HEAD", "/api/v3/machines"), ("GET", "/api/v3/machines/"), ("GET", "/api/v3//machines"),
    ("GET", "/api/v3/machines//x"), ("GET", "/api/v3/files/x"), ("POST", "/api/v3/contents"),
    ("GET", "/api/v3/info"), ("GET", "/api/v3/events"), ("POST", "/api/v3/plugin_providers/p"),
    ("GET", "/api/v3/indexes/machines"), ("GET", "/api/v3/metrics"),
    ("GET", "/ui/"), ("DELETE", "/api/v3/machines"), ("OPTIONS", "/api/v3/machines/x"),
    ("GET", "/api/v3/catalog"), ("POST", "/api/v3/system/actions"),
    ("PUT", "/api/v3/system/actions/x"), ("GET", "/api/v3/system/actions/"),
    ("GET", "/api/v3/system/actions//x"), ("GET", "/api/v3/system/other"),
])
def test_everything_else_is_left_to_quart(tmp_path: Path, method: str, path: str) -> None:
    _, hot = _apps(tmp_path)
    assert hot.route(method, path) is None


def _apps(tmp_path: Path) -> tuple[QuartTrio, HotRoutes]:
    store = SQLiteStore(tmp_path / "db")
    auth = Authenticator(b"k" * 32, default_user=True)
    context = ApiContext(settings=Settings(), store=store, bus=EventBus(), auth=auth)
    app = create_app(context)
    return app, HotRoutes(app, context)


@pytest.mark.parametrize("start, hot", [
    (b"G", True), (b"GET", True), (b"GET /api/v3/", True), (b"get /api/v3/x", True),
    (b"DELETE /api/v", True), (b"\r\nPOST /api", True),
    (b"GET /ui", False), (b"HEAD /api", False), (b"\x16\x03\x01\x02\x00", False),
    (b"OPTIONS /", False), (b"PATCH/api", False), (b"PRI * HTTP/2.0", False),
])
def test_what_cannot_be_a_hot_request_is_known_from_its_first_bytes(start: bytes,
                                                                     hot: bool) -> None:
    assert may_be_hot(start) is hot


async def test_a_tls_hello_on_the_plain_port_is_answered_at_once(tmp_path: Path) -> None:
    """Not held for the rest of a head that will never come (the keep-alive
    timeout is 75 s): a Go provider dialing wss:// on a --no-tls drpd is told
    at once, and says so."""
    with DrpdProcess(tmp_path / "state", no_tls=True) as plain:
        host, port = plain.endpoint.rsplit("/", 1)[1].rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
            answer = b""
            with trio.fail_after(10):
                try:
                    while data := await stream.receive_some(65536):
                        answer += data
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:100]
