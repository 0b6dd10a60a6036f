"""The provider SDK and the stdlib providers, driven the way drpd drives them.

The test plays drpd: it runs ``define``, serves the server socket with
drpd.http11 (recording publish, log, leaving), spawns ``serve`` as a real
process, waits for ``READY!`` and talks to the plugin socket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from drpd import http11
from drpd.models import Error, PluginProvider

PROVIDERS = Path(__file__).parent / "providers"
SDK_ECHO = PROVIDERS / "sdk_echo.py"
PLAIN = PROVIDERS / "plain_provider.py"
LISTEN_ONLY = PROVIDERS / "listen_only.py"
READY_LIMIT = 15.0


def provider_env(**extra: str) -> dict[str, str]:
    """What drpd gives a provider: its own interpreter's directory first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("DRPD_TEST_MODE", None)
    env.update(extra)
    return env


async def run_verb(binary: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    with trio.fail_after(15):
        return await trio.run_process(
            [str(binary), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env or provider_env(),
        )


@dataclass
class FakeDrpd:
    """drpd's side of the server socket: records what the provider sends."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    objects: list[Any] = field(default_factory=lambda: [{"Uuid": "u-1"}])
    changed: trio.Event = field(default_factory=trio.Event)

    async def handle(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        decoded = msgspec.json.decode(body) if body else None
        self.calls.append((method, target, decoded))
        self.changed.set()
        self.changed = trio.Event()
        if target.startswith("/api-server-plugin/v4/objects/"):
            return 200, msgspec.json.encode(self.objects)
        return 200, msgspec.json.encode(Error(Code=200))

    async def wait_for(self, path: str) -> Any:
        with trio.fail_after(10):
            while True:
                for _, target, body in self.calls:
                    if target == path:
                        return body
                await self.changed.wait()


@dataclass
class Running:
    """One provider process under test, with its sockets and output."""

    process: trio.Process
    client: http11.UnixHTTPClient
    drpd: FakeDrpd
    plugin_sock: str
    stdout: Lines

    async def post(self, verb: str, body: Any) -> tuple[int, Any]:
        with trio.fail_after(15):
            status, raw = await self.client.request(
                "POST", f"/api-plugin/v4/{verb}", msgspec.json.encode(body)
            )
        return status, msgspec.json.decode(raw) if raw else None

    async def action(self, command: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        body = {
            "Model": kw.get("model"),
            "Plugin": "inst1",
            "Command": command,
            "CommandSet": kw.get("provider", "sdk_echo"),
            "Params": params or {},
        }
        return await self.post("action", body)

    async def wait_exit(self) -> int:
        with trio.fail_after(10):
            return await self.process.wait()


class Lines:
    """The provider's stdout as lines; bytes past a line stay for the next read."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.seen: list[str] = []
        self._buf = b""

    async def next(self) -> str:
        while b"\n" not in self._buf:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                raise AssertionError(f"provider closed stdout; it printed {self.seen}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        self.seen.append(line.decode())
        return self.seen[-1]

    async def until_ready(self) -> None:
        while await self.next() != "READY!":
            pass


@asynccontextmanager
async def running(
    short_tmp: Path, binary: Path, verb: str = "serve", env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    drpd = FakeDrpd()
    server_sock, plugin_sock = str(short_tmp / "server.sock"), str(short_tmp / "plugin.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(http11.serve_unix, server_sock, drpd.handle))
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [str(binary), verb, plugin_sock, server_sock],
                stdout=subprocess.PIPE,
                check=False,
                env=env or provider_env(),
            )
        )
        assert process.stdout is not None
        lines = Lines(process.stdout)
        with trio.fail_after(READY_LIMIT):
            await lines.until_ready()
        client = http11.UnixHTTPClient(plugin_sock, max_connections=64)
        try:
            yield Running(process, client, drpd, plugin_sock, lines)
        finally:
            await client.aclose()
            if process.returncode is None:
                process.kill()
            nursery.cancel_scope.cancel()


CONFIG = {"Name": "inst1", "echo/greeting": "hi", "echo/delay": 0.5}


# ------------------------------------------------------------------ define / unpack


async def test_define_prints_the_provider() -> None:
    result = await run_verb(SDK_ECHO, "define")
    assert result.returncode == 0, result.stderr
    defined = msgspec.json.decode(result.stdout, type=PluginProvider)
    assert (defined.Name, defined.Version, defined.PluginVersion) == ("sdk_echo", "1.2.3", 4)
    assert defined.RequiredParams == ["echo/greeting"]
    assert "echo/delay" in (defined.OptionalParams or [])
    assert defined.HasPublish is True
    actions = {a.Command: a for a in defined.AvailableActions or []}
    assert sorted(actions) == ["crash", "echo", "fail", "sleep", "status", "target", "whoami"]
    assert actions["echo"].Model == "machines"
    assert actions["echo"].RequiredParams == ["echo/greeting"]
    assert actions["whoami"].Model == "plugins" and actions["status"].Model == "system"
    assert result.stdout.count(b"\n") == 1  # one JSON object, nothing else


async def test_unpack_writes_declared_files(short_tmp: Path) -> None:
    dest = short_tmp / "assets"
    result = await run_verb(SDK_ECHO, "unpack", str(dest))
    assert result.returncode == 0, result.stderr
    helper = dest / "echo-helper.sh"
    assert helper.read_text() == "#!/bin/sh\necho helper\n"
    assert os.access(helper, os.X_OK)
    assert (dest / "data" / "readme.txt").read_bytes() == b"sdk_echo assets\n"


async def test_unknown_verb_is_a_usage_error() -> None:
    result = await run_verb(SDK_ECHO, "frobnicate")
    assert result.returncode == 2
    assert b"usage:" in result.stderr and not result.stdout


def test_sdk_import_stays_light() -> None:
    code = (
        "import sys, drpd.sdk\n"
        "heavy = ['trio', 'h11', 'httpx', 'quart', 'hypercorn', 'drpd.api', 'drpd.store',"
        " 'drpd.plugins', 'drpd.client']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_declaration_mistakes_raise_at_import() -> None:
    from drpd.sdk import ActionError, Provider

    with pytest.raises(ValueError, match="invalid provider name"):
        Provider("bad name")
    provider = Provider("ok")

    @provider.action("a")
    async def a(ctx: Any, action: Any) -> None: ...

    with pytest.raises(ValueError, match="declared twice"):
        provider.action("a")
    with pytest.raises(TypeError, match="list of param names"):
        Provider("ok", required="one/param")
    with pytest.raises(ValueError, match="relative"):
        provider.add_file("../escape", b"")
    with pytest.raises(ValueError, match="400-599"):
        ActionError(200, "not an error")


# ------------------------------------------------------------------ serve


async def test_serve_config_and_actions(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO) as p:
        assert await p.post("config", CONFIG) == (200, msgspec.to_builtins(Error(Code=200)))
        machine = {"Uuid": "3f8e0c1e-0000-4000-8000-000000000001", "Name": "m1"}
        status, result = await p.action("echo", {"echo/greeting": "hello"}, model=machine)
        assert status == 200
        assert result["Params"] == {"echo/greeting": "hello"}
        assert result["Model"] == machine
        assert result["Config"] == CONFIG
        assert result["Pid"] == p.process.pid

        status, error = await p.action("fail", model=machine)
        assert status == 418 and error["Code"] == 418
        assert error["Messages"] == ["I'm a teapot"] and error["Key"] == machine["Uuid"]

        status, error = await p.action("nope")
        assert status == 404 and "no action 'nope'" in error["Messages"][0]

        status, who = await p.action("whoami")
        assert (status, who) == (
            200,
            {"Name": "inst1", "Plugin": "inst1", "CommandSet": "sdk_echo"},
        )

        with trio.fail_after(10):
            status, raw = await p.client.request("GET", "/api-plugin/v4/config")
        assert status == 405


async def test_publish_log_leaving_objects_reach_drpd(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO) as p:
        config = dict(CONFIG, **{"echo/publish-on-config": True, "echo/leave-on-config": True})
        assert (await p.post("config", config))[0] == 200
        line = await p.drpd.wait_for("/api-server-plugin/v4/log")
        assert line["Level"] == "info" and line["Message"] == "configured inst1"
        assert line["Time"].endswith("Z")
        event = await p.drpd.wait_for("/api-server-plugin/v4/publish")
        assert (event["Type"], event["Action"], event["Key"]) == ("echo", "configured", "inst1")
        assert event["Object"] == {"Greeting": "hi"} and event["Time"]
        await p.drpd.wait_for("/api-server-plugin/v4/leaving")

        for n in range(3):  # drpd delivers events in order; the provider keeps them
            status, _ = await p.post(
                "publish", {"Time": "", "Type": "machines", "Action": "update", "Key": f"k{n}"}
            )
            assert status == 200
        status, result = await p.action("status")
        assert status == 200
        assert [e["Key"] for e in result["Events"]] == ["k0", "k1", "k2"]
        assert result["Objects"] == p.drpd.objects
        assert ("GET", "/api-server-plugin/v4/objects/machines", None) in p.drpd.calls


async def test_fifty_concurrent_sleeps_take_about_one_sleep(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO) as p:
        assert (await p.post("config", CONFIG))[0] == 200
        results: list[tuple[int, Any]] = []

        async def one() -> None:
            results.append(await p.action("sleep", {"echo/delay": 0.5}))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(one)
        elapsed = trio.current_time() - start
        assert results == [(200, {"Slept": 0.5})] * 50
        assert elapsed < 1.5, f"50 sleeps of 0.5 s took {elapsed:.2f} s"


async def test_config_refusal_and_crash_knobs(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO) as p:
        status, error = await p.post("config", dict(CONFIG, **{"echo/fail-config": 422}))
        assert status == 422 and error["Code"] == 422 and error["Key"] == "inst1"
    async with running(short_tmp, SDK_ECHO) as p:
        with pytest.raises(http11.ConnectionClosed):
            await p.post("config", dict(CONFIG, **{"echo/crash-on-config": True}))
        assert await p.wait_exit() == 3


async def test_crash_action_exits_with_status_3(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO) as p:
        assert (await p.post("config", CONFIG))[0] == 200
        with pytest.raises(http11.ConnectionClosed):
            await p.action("crash")
        assert await p.wait_exit() == 3


async def test_stop_answers_then_exits_cleanly(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO) as p:
        assert (await p.post("config", CONFIG))[0] == 200
        assert await p.post("stop", None) == (200, msgspec.to_builtins(Error(Code=200)))
        assert await p.wait_exit() == 0
        assert not await trio.Path(p.plugin_sock).exists()


async def test_sigterm_exits_cleanly_and_listen_is_serve(short_tmp: Path) -> None:
    async with running(short_tmp, SDK_ECHO, verb="listen") as p:
        assert (await p.post("config", CONFIG))[0] == 200
        p.process.send_signal(signal.SIGTERM)
        assert await p.wait_exit() == 0


async def test_serve_without_server_socket_fails_before_ready(short_tmp: Path) -> None:
    result = await run_verb(
        SDK_ECHO, "serve", str(short_tmp / "p.sock"), str(short_tmp / "missing.sock")
    )
    assert result.returncode == 1
    assert b"READY!" not in result.stdout
    assert b"cannot serve" in result.stderr and b"missing.sock" in result.stderr


async def test_api_client_uses_the_instance_token() -> None:
    from drpd.client import ClientError
    from drpd.sdk._api import ApiClient

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/missing"):
            return httpx.Response(404, json={"Code": 404, "Messages": ["no such machine"]})
        return httpx.Response(200, json={"Name": "m1"})

    api = ApiClient("https://127.0.0.1:8092", "tok", transport=httpx.MockTransport(answer))
    try:
        assert await api.get("machines", "Name:m1") == {"Name": "m1"}
        with pytest.raises(ClientError, match="404 no such machine"):
            await api.get("machines", "missing")
        await api.set_param("machines", "u1", "echo/greeting", None)
    finally:
        await api.aclose()
    assert seen[0].url.path == "/api/v3/machines/Name:m1"
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert seen[2].url.path == "/api/v3/machines/u1/params/echo/greeting"
    assert seen[2].content == b"null"


def test_ctx_api_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from drpd.sdk import Context, Provider

    monkeypatch.setenv("RS_ENDPOINT", "https://127.0.0.1:8092")
    monkeypatch.setenv("RS_TOKEN", "secret")
    monkeypatch.delenv("RS_CA_CERT", raising=False)
    ctx = Context(Provider("p"), server=None)  # type: ignore[arg-type]
    api = ctx.api
    assert api is ctx.api and api.endpoint == "https://127.0.0.1:8092"
    trio.run(ctx.aclose)


async def test_docstring_example_is_a_working_provider(short_tmp: Path) -> None:
    import drpd.sdk

    assert drpd.sdk.__doc__ is not None
    example = drpd.sdk.__doc__.split("one action::\n\n", 1)[1].split("\n\nHandlers", 1)[0]
    code = textwrap.dedent(example) + "\n"
    assert len(code.splitlines()) <= 30
    binary = short_tmp / "hello.py"
    binary.write_text(code)
    binary.chmod(0o755)
    defined = msgspec.json.decode((await run_verb(binary, "define")).stdout, type=PluginProvider)
    assert defined.Name == "hello" and defined.RequiredParams == ["hello/greeting"]
    async with running(short_tmp, binary) as p:
        status, error = await p.post("config", {"Name": "h1", "hello/greeting": ""})
        assert (status, error["Messages"]) == (422, ["hello/greeting is empty"])
        assert (await p.post("config", {"Name": "h1", "hello/greeting": "Hello"}))[0] == 200
        machine = {"Uuid": "u-1", "Name": "m1"}
        assert await p.action("greet", model=machine, provider="hello") == (200, "Hello, m1!")
        event = await p.drpd.wait_for("/api-server-plugin/v4/publish")
        assert (event["Type"], event["Action"], event["Key"]) == ("machines", "greeted", "u-1")


# ------------------------------------------------------------------ stdlib providers


async def test_plain_provider_speaks_the_protocol(short_tmp: Path) -> None:
    result = await run_verb(PLAIN, "define")
    assert result.returncode == 0
    defined = msgspec.json.decode(result.stdout, type=PluginProvider)
    assert defined.Name == "plain_provider" and defined.StoreObjects is None
    async with running(short_tmp, PLAIN) as p:
        assert (await p.post("config", {"Name": "plain1"}))[0] == 200
        line = await p.drpd.wait_for("/api-server-plugin/v4/log")
        assert "plain1" in line["Message"]
        status, pong = await p.action("ping", {"plain/delay": 0}, provider="plain_provider")
        assert status == 200 and pong["Pong"] is True and pong["Name"] == "plain1"
        status, error = await p.action("pong", provider="plain_provider")
        assert status == 404 and error["Code"] == 404
        assert (await p.post("stop", None))[0] == 200
        assert await p.wait_exit() == 0


async def test_listen_only_refuses_serve_and_works_with_listen(short_tmp: Path) -> None:
    result = await run_verb(LISTEN_ONLY, "serve", str(short_tmp / "p"), str(short_tmp / "s"))
    assert result.returncode == 2 and b"Usage" in result.stderr and not result.stdout
    defined = msgspec.json.decode(
        (await run_verb(LISTEN_ONLY, "define")).stdout, type=PluginProvider
    )
    assert defined.AvailableActions and defined.AvailableActions[0].RequiredParams is None
    async with running(short_tmp, LISTEN_ONLY, verb="listen") as p:
        assert (await p.post("config", {"Name": "lo1"}))[0] == 200
        status, hello = await p.action("hello", provider="listen_only")
        assert (status, hello) == (200, {"Hello": "lo1", "Verb": "listen"})
        assert (await p.post("stop", None))[0] == 200
        assert await p.wait_exit() == 0


@pytest.mark.parametrize(
    "mode, check",
    [
        ("define-exit-1", lambda r: r.returncode == 1),
        ("bad-define-json", lambda r: r.returncode == 0 and b"oops" in r.stdout),
        ("define-not-object", lambda r: msgspec.json.decode(r.stdout) == [1, 2, 3]),
    ],
)
async def test_plain_provider_define_knobs(mode: str, check: Any) -> None:
    assert check(await run_verb(PLAIN, "define", env=provider_env(DRPD_TEST_MODE=mode)))


async def test_plain_provider_serve_knobs(short_tmp: Path) -> None:
    env = provider_env(DRPD_TEST_MODE="exit-before-ready")
    result = await run_verb(PLAIN, "serve", str(short_tmp / "p"), str(short_tmp / "s"), env=env)
    assert result.returncode == 1 and b"READY!" not in result.stdout

    env = provider_env(DRPD_TEST_MODE="noise-before-ready,crash-after-ready")
    async with running(short_tmp, PLAIN, env=env) as p:
        assert p.stdout.seen == ["plain_provider: warming up", "READY? not yet", "READY!"]
        assert await p.wait_exit() == 3

    env = provider_env(DRPD_TEST_MODE="fork-child")
    async with running(short_tmp, PLAIN, env=env) as p:
        with trio.fail_after(10):
            line = await p.stdout.next()
        child = int(line.split()[1])
        try:
            assert os.getsid(child) == child  # escaped the provider's session
        finally:
            os.kill(child, signal.SIGKILL)
