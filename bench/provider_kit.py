"""Helpers shared by ``bench/supervise.py`` and ``bench/actions.py``.

- **bare providers**: :func:`bare_provider` runs a provider executable the
  way drpd does (``<binary> serve <plugin-sock> <server-sock>`` under
  ``trio.lowlevel.open_process``, drpd's ``PATH``), but with no drpd: a
  tiny ``drpd.http11.serve_unix`` listener (:class:`ServerStub`) answers the
  provider's server socket with 200. It times spawn -> ``READY!``, can send
  ``config`` and actions with ``drpd.http11.UnixHTTPClient``, and always
  stops the process (``/stop``, then SIGKILL of its group) on the way out;
- **drpd side**: :func:`start_drpd` installs test providers and starts a
  real drpd (``DrpdProcess``, plain HTTP); :func:`api_client` talks to it;
  :class:`LifecycleWatch` follows instances' lifecycle events on drpd's
  websocket (falling back to polling ``GET /plugins/<name>``);
- **load**: :func:`drive_unix` is ``bench.common.drive`` for a provider's
  UNIX socket;
- **/proc**: :func:`rss_kib`, :func:`alive`.

Everything is bounded: every wait has a deadline and every process started
here is ended in a ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import BENCH_DIR, Sample, basic_auth_header
from drpd.http11 import HTTPError, UnixHTTPClient, serve_unix
from drpd.testing import DrpdProcess

REPO = BENCH_DIR.parent
TEST_PROVIDERS = REPO / "tests" / "providers"
#: DRP's ``Error`` with Code 200: what drpd answers a provider's log/publish
OK_BODY = b'{"Model":"","Key":"","Type":"","Messages":[],"Code":200}'
ACTION_PATH = "/api-plugin/v4/action"
CONFIG_PATH = "/api-plugin/v4/config"
STOP_PATH = "/api-plugin/v4/stop"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}

#: a minimal drpd.sdk provider: no handlers, no actions
MINIMAL_SDK_PROVIDER = '''#!/usr/bin/env python3
from drpd.sdk import Provider

provider = Provider("bench_minimal", "0.0.1")

if __name__ == "__main__":
    provider.main()
'''


# -- /proc ---------------------------------------------------------------------------
def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2: data.rfind(b")") + 3] != b"Z"


def short_tmpdir(prefix: str) -> Path:
    """A directory under /tmp short enough for UNIX socket names (107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# -- bare providers --------------------------------------------------------------------
def provider_env(overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment drpd gives a provider, as far as a bare run needs it:
    this interpreter's directory first on PATH, so ``#!/usr/bin/env python3``
    runs the same Python (and finds ``drpd.sdk``). ``overrides`` set
    variables, or remove them (None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRPD_", "RS_"))}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                   env.get("PATH", "/usr/bin:/bin")])
    env.update(RS_ENDPOINT="http://127.0.0.1:1", RS_TOKEN="", RS_CA_CERT="",
               RS_FILESERVER="http://127.0.0.1:1", RS_WEBROOT="/nonexistent")
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def provider_path(source: str) -> Path:
    """A test provider's file (``sdk_echo``, ``plain_provider``)."""
    return TEST_PROVIDERS / f"{source}.py"


class ServerStub:
    """Stands in for drpd's server socket: every request (log, publish) answers 200."""

    def __init__(self) -> None:
        self.requests = 0

    async def handler(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        return 200, OK_BODY


@dataclass
class BareRun:
    """One bare provider process."""

    process: trio.Process
    plugin_sock: str
    #: seconds from just before the spawn to reading ``READY!``
    ready_s: float
    #: VmRSS (KiB) right after ``READY!`` (None if it had exited)
    rss_at_ready: int | None
    client: UnixHTTPClient | None
    stderr_path: Path
    stdout_tail: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def config(self, params: dict[str, Any], *, limit: float = 30.0) -> None:
        assert self.client is not None
        with trio.fail_after(limit):
            status, body = await self.client.request("POST", CONFIG_PATH,
                                                     json.dumps(params).encode())
        if status != 200:
            raise RuntimeError(f"config answered {status}: {body[:300]!r}")

    async def action(self, body: bytes) -> bytes:
        assert self.client is not None
        status, answer = await self.client.request("POST", ACTION_PATH, body)
        if status != 200:
            raise RuntimeError(f"action answered {status}: {answer[:300]!r}")
        return answer


async def _read_until_ready(process: trio.Process, limit: float, tail: list[str]) -> bool:
    """Read stdout lines until ``READY!``; False if stdout ends first."""
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(limit):
        while True:
            chunk = await process.stdout.receive_some(65536)
            if not chunk:
                return False
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                if text == "READY!":
                    return True
                tail.append(text)
                del tail[:-20]


async def _drain(stream: Any) -> None:
    while await stream.receive_some(65536):
        pass


def _open_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _tail(path: Path, size: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


async def spawn_until_ready(nursery: trio.Nursery, argv: Sequence[str], *, cwd: Path,
                            stderr_path: Path, plugin_sock: str = "",
                            env: dict[str, str | None] | None = None,
                            limit: float = 30.0) -> BareRun:
    """Spawn ``argv`` as drpd would and return once it printed ``READY!``.

    Its stdout is drained afterwards by a task in ``nursery``. The caller
    owns the process: end it with :func:`stop_bare` (or :func:`kill_bare`).
    """
    tail: list[str] = []
    err = _open_log(stderr_path)
    try:
        t0 = time.perf_counter()
        process = await trio.lowlevel.open_process(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            cwd=str(cwd), env=provider_env(env), start_new_session=True)
    finally:
        os.close(err)
    try:
        ok = await _read_until_ready(process, limit, tail)
        ready_s = time.perf_counter() - t0
        rss = rss_kib(process.pid)
        if not ok:
            with trio.move_on_after(2):
                await process.wait()
            raise RuntimeError(
                f"{argv[0]} exited ({process.returncode}) before READY!: "
                f"stdout {tail[-5:]}, stderr {_tail(stderr_path)!r}")
    except BaseException:
        with trio.CancelScope(shield=True):
            await kill_bare(process)
        raise
    assert process.stdout is not None
    nursery.start_soon(_drain, process.stdout)
    client = UnixHTTPClient(plugin_sock) if plugin_sock else None
    return BareRun(process, plugin_sock, ready_s, rss, client, stderr_path, tail)


async def kill_bare(process: trio.Process) -> None:
    """SIGKILL the process group and reap it (bounded)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    with trio.move_on_after(5):
        await process.wait()


async def stop_bare(run: BareRun, *, grace: float = 5.0) -> float:
    """docs/protocol.md's stop: ``/stop``, wait for the exit, then SIGKILL the group.

    Returns the seconds from the ``/stop`` request to the exit (shielded, bounded).
    """
    t0 = time.perf_counter()
    with trio.CancelScope(shield=True):
        if run.process.returncode is None and run.client is not None:
            with trio.move_on_after(grace):
                try:
                    await run.client.request("POST", STOP_PATH)
                except HTTPError:
                    pass
                await run.process.wait()
        elapsed = time.perf_counter() - t0
        await kill_bare(run.process)
        if run.client is not None:
            await run.client.aclose()
    return elapsed


class BareSite:
    """A place to run bare providers: a short socket directory, a server-socket
    stub, a scratch directory. One server socket serves every run started
    here, as drpd gives each start its own; that difference costs nothing.

        async with BareSite.open() as site:
            run = await site.spawn(provider_path("sdk_echo"))
            await run.config({...})
            await site.stop(run)
    """

    def __init__(self, nursery: trio.Nursery, root: Path) -> None:
        self.nursery = nursery
        self.root = root
        self.server_sock = str(root / "s.sock")
        self.stub = ServerStub()
        self.scratch = root / "scratch"
        self.scratch.mkdir()
        self._serial = 0
        self.runs: list[BareRun] = []

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[BareSite]:
        root = short_tmpdir("drpdb-")
        try:
            async with trio.open_nursery() as nursery:
                site = cls(nursery, root)
                await nursery.start(serve_unix, site.server_sock, site.stub.handler)
                try:
                    yield site
                finally:
                    with trio.CancelScope(shield=True):
                        for run in site.runs:
                            await stop_bare(run, grace=2.0)
                    nursery.cancel_scope.cancel()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    async def spawn(self, binary: Path | str, *, verb: str = "serve",
                    env: dict[str, str | None] | None = None, limit: float = 30.0) -> BareRun:
        """``<binary> serve <plugin-sock> <server-sock>`` until READY!
        (``env``: changes to the environment drpd would give it)."""
        self._serial += 1
        plugin_sock = str(self.root / f"p{self._serial}.sock")
        run = await spawn_until_ready(
            self.nursery, [str(binary), verb, plugin_sock, self.server_sock], cwd=self.scratch,
            stderr_path=self.root / f"stderr-{self._serial}.log", plugin_sock=plugin_sock,
            env=env, limit=limit)
        self.runs.append(run)
        return run

    async def spawn_argv(self, argv: Sequence[str], *, limit: float = 30.0) -> BareRun:
        """Any command (``python3 -c 'print("READY!")'``) until it prints READY!."""
        self._serial += 1
        run = await spawn_until_ready(self.nursery, argv, cwd=self.scratch,
                                      stderr_path=self.root / f"stderr-{self._serial}.log",
                                      limit=limit)
        with trio.CancelScope(shield=True):
            await kill_bare(run.process)
        return run

    async def stop(self, run: BareRun) -> float:
        if run in self.runs:
            self.runs.remove(run)
        return await stop_bare(run)

    async def kill(self, run: BareRun) -> None:
        if run in self.runs:
            self.runs.remove(run)
        await kill_bare(run.process)
        if run.client is not None:
            await run.client.aclose()


# -- drpd -----------------------------------------------------------------------------------
def install(plugin_dir: Path, source: str) -> Path:
    """Copy a test provider into drpd's plugin directory (before drpd starts)."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    target = plugin_dir / source
    shutil.copyfile(provider_path(source), target)
    target.chmod(0o755)
    return target


def start_drpd(state: Path, providers: Sequence[str], env: dict[str, str]) -> DrpdProcess:
    for source in providers:
        install(state / "plugins", source)
    return DrpdProcess(state, no_tls=True, env=env).start()


def stop_drpd(drpd: DrpdProcess) -> float:
    """Stop drpd (SIGTERM, wait; SIGKILL if that fails) and remove the socket
    directory it leaves under /tmp. Returns the seconds the stop took. Idempotent."""
    t0 = time.perf_counter()
    try:
        if drpd.proc is not None and drpd.proc.poll() is None:
            drpd.stop(60)
    finally:
        drpd.kill()
    elapsed = time.perf_counter() - t0
    if not os.environ.get("RUNTIME_DIRECTORY"):
        from drpd.plugins.runtime import runtime_dir

        with suppress(OSError, ValueError):
            path = runtime_dir(drpd.state_dir)
            if path.name.startswith(f"drpd-{os.getuid()}-"):
                path.rmdir()  # only if empty: drpd removed its sockets
    return elapsed


def api_client(drpd: DrpdProcess, *, timeout: float = 120.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=drpd.endpoint + "/api/v3", trust_env=False,
                             headers=basic_auth_header(*drpd.auth), timeout=timeout)


def check(response: httpx.Response, *codes: int) -> Any:
    if response.status_code not in codes:
        raise RuntimeError(f"{response.request.method} {response.request.url}: "
                           f"{response.status_code} {response.text[:400]}")
    return response.json()


async def create_plugin(api: httpx.AsyncClient, name: str, provider: str,
                        params: dict[str, Any]) -> dict[str, Any]:
    """POST /plugins; the answer comes once the instance settled: it must be Available."""
    p = check(await api.post("/plugins", json={"Name": name, "Provider": provider,
                                               "Params": params}), 201)
    if not p.get("Available"):
        raise RuntimeError(f"plugin {name} is not available: {p.get('Errors')}")
    return p


@dataclass
class Lifecycle:
    """One lifecycle event of an instance, as this process received it."""

    action: str
    key: str
    obj: dict[str, Any]
    at: float  # time.perf_counter() on receipt


class LifecycleWatch:
    """Follows drpd's ``plugins`` lifecycle events (``started``, ``available``,
    ``crashed``...) on its websocket ``/api/v3/ws``; received events queue up
    with their receipt time. If the websocket cannot be opened, ``mode``
    says ``polling`` and :meth:`wait_available` polls ``GET /plugins/<name>``.
    """

    def __init__(self, drpd: DrpdProcess, api: httpx.AsyncClient) -> None:
        self.drpd = drpd
        self.api = api
        self.mode = "websocket"
        self.events: list[Lifecycle] = []
        self._arrived = trio.Event()
        self.error = ""

    @asynccontextmanager
    async def open(self, keys: Sequence[str]) -> AsyncIterator[LifecycleWatch]:
        from trio_websocket import open_websocket_url

        url = self.drpd.endpoint.replace("http://", "ws://", 1) + "/api/v3/ws"
        header = basic_auth_header(*self.drpd.auth)["Authorization"].encode()
        async with AsyncExitStack() as stack:
            ws = None
            try:  # only the connection and the registration fall back to polling
                ws = await stack.enter_async_context(open_websocket_url(
                    url, extra_headers=[(b"Authorization", header)], connect_timeout=10,
                    disconnect_timeout=2))
                pattern = f"register plugins.*.{','.join(keys)}"
                await ws.send_message(pattern)
                with trio.fail_after(10):
                    while True:  # the register acknowledgement
                        frame = json.loads(await ws.get_message())
                        if frame.get("Type") == "websocket":
                            if frame.get("Action") != "register":
                                raise RuntimeError(f"websocket refused {pattern!r}: {frame}")
                            break
            except Exception as exc:  # noqa: BLE001 -- any failure here means: poll instead
                self.error = f"{type(exc).__name__}: {exc}"
                self.mode = "polling"
                ws = None
            if ws is None:
                yield self
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, ws)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()

    async def _receive(self, ws: Any) -> None:
        while True:
            text = await ws.get_message()
            at = time.perf_counter()
            frame = json.loads(text)
            if frame.get("Type") != "plugins":
                continue
            self.events.append(Lifecycle(frame.get("Action", ""), frame.get("Key", ""),
                                         frame.get("Object") or {}, at))
            self._arrived.set()
            self._arrived = trio.Event()

    def clear(self) -> None:
        self.events.clear()

    async def wait_event(self, key: str, action: str,
                         predicate: Callable[[Lifecycle], bool] = lambda e: True,
                         *, limit: float = 30.0) -> Lifecycle:
        """The first queued (or next) event of ``key`` with ``action`` matching ``predicate``."""
        with trio.fail_after(limit):
            while True:
                for event in self.events:
                    if event.key == key and event.action == action and predicate(event):
                        return event
                await self._arrived.wait()

    async def wait_available(self, key: str, old_pid: int, *, limit: float = 30.0,
                             interval: float = 0.005) -> tuple[float, int]:
        """(receipt time, pid) once ``key`` is available with a pid other than ``old_pid``."""
        if self.mode == "websocket":
            event = await self.wait_event(
                key, "available", lambda e: e.obj.get("Pid") not in (None, old_pid),
                limit=limit)
            return event.at, int(event.obj["Pid"])
        with trio.fail_after(limit):
            while True:
                p = check(await self.api.get(f"/plugins/{key}"), 200)
                pid = p["Runtime"]["Pid"]
                if p["Available"] and pid and pid != old_pid:
                    return time.perf_counter(), pid
                await trio.sleep(interval)


# -- load on a provider's socket ------------------------------------------------------------
async def drive_unix(make_client: Callable[[], UnixHTTPClient], body: bytes, *,
                     concurrency: int, requests: int, warmup: int = 0, shared: bool = False,
                     deadline: float = 300.0) -> Sample:
    """``bench.common.drive`` for ``POST /api-plugin/v4/action`` on a UNIX socket.

    Each worker gets its own client (``max_connections=1``: one kept-alive
    connection, as ``drive`` gives each worker), or with ``shared`` all
    workers share one client (the pool settings are ``make_client``'s).
    """
    per_worker = [requests // concurrency + (1 if w < requests % concurrency else 0)
                  for w in range(concurrency)]
    clients = [make_client()] if shared else [make_client() for _ in range(concurrency)]
    latencies: list[float] = []
    clock = time.perf_counter

    async def op(client: UnixHTTPClient) -> None:
        status, answer = await client.request("POST", ACTION_PATH, body)
        if status != 200:
            raise RuntimeError(f"direct action answered {status}: {answer[:300]!r}")

    try:
        with trio.fail_after(deadline):
            async def warm(w: int) -> None:
                for _ in range(warmup):
                    await op(clients[0 if shared else w])

            async with trio.open_nursery() as nursery:
                for w in range(concurrency):
                    nursery.start_soon(warm, w)

            async def work(w: int) -> None:
                client = clients[0 if shared else w]
                for _ in range(per_worker[w]):
                    t0 = clock()
                    await op(client)
                    latencies.append(clock() - t0)

            start = clock()
            async with trio.open_nursery() as nursery:
                for w in range(concurrency):
                    nursery.start_soon(work, w)
            elapsed = clock() - start
    finally:
        with trio.CancelScope(shield=True):
            for client in clients:
                await client.aclose()
    return Sample(sum(per_worker), elapsed, latencies, concurrency)


def git_state() -> dict[str, Any]:
    """Which drpd was measured: HEAD and whether the working tree differs from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    status = git("status", "--porcelain", "--", "drpd")
    return {"head": git("rev-parse", "--short", "HEAD"),
            "drpd_dirty": bool(status), "drpd_changed_files": len(status.splitlines())}
