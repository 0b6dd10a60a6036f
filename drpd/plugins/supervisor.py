"""One supervisor per plugin instance: the provider process and its sockets.

States (``Runtime.State``)::

    waiting   the instance cannot start: unknown provider, missing or bad
              params (``Errors`` says which); it starts by itself once fixed
    starting  process spawned, waiting for READY! and then config
    running   configured: ``Available: true``
    backoff   it crashed or failed to start; the next start is scheduled
    stopping  being stopped (restart, destroy, drpd shutdown)
    left      the provider said ``leaving``; stays stopped until updated
              or restarted through the API
    stopped   not started yet, or gone

Resource handling: each start runs in a nursery of its own, which owns the
process, its output pumps and the server-socket listener; leaving that
nursery (any way, cancellation included) stops the process as docs/protocol.md
§5 says (``/stop``, grace, SIGTERM, SIGKILL of the whole group, then any
escaped child), shielded and bounded, before it returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from .. import wire
from ..http11 import HTTPError, UnixHTTPClient, serve_unix
from ..models import Error, Plugin, PluginProvider, PluginRuntime, Unavailable
from .loglimit import THROTTLE, LineSplitter, LogLimiter
from .processes import INSTANCE_VAR, kill_marked, signal_group
from .publisher import Publisher

if TYPE_CHECKING:
    from .manager import PluginManager

log = logging.getLogger("drpd.plugins")
_encode = msgspec.json.Encoder().encode
MAX_LINE = 16 * 1024
LOG_LINES = 500
PLUGIN_ERRORS = 50


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def wait_any(*waiters: Callable[[], Awaitable[Any]]) -> int:
    """Run the waiters concurrently; return the index of the first to finish."""
    winner = -1

    async def run(i: int, fn: Callable[[], Awaitable[Any]], scope: trio.CancelScope) -> None:
        nonlocal winner
        await fn()
        if winner < 0:
            winner = i
        scope.cancel()

    async with trio.open_nursery() as nursery:
        for i, fn in enumerate(waiters):
            nursery.start_soon(run, i, fn, nursery.cancel_scope)
    return winner


class StartFailed(Exception):
    pass


@dataclass
class _Run:
    """One start of the provider: what the stop sequence needs."""

    process: trio.Process
    client: UnixHTTPClient
    marker: str
    exited: trio.Event = field(default_factory=trio.Event)
    ready: trio.Event = field(default_factory=trio.Event)
    ready_seen: bool = False


class Supervisor:
    def __init__(self, manager: PluginManager, plugin: Plugin) -> None:
        self.manager = manager
        self.plugin = plugin
        self.name = plugin.Name
        self.state = "stopped"
        self.available = False
        self.errors: list[str] = []
        self.plugin_errors: deque[str] = deque(maxlen=PLUGIN_ERRORS)
        self.log_lines: deque[str] = deque(maxlen=LOG_LINES)
        self.pid = 0
        self.started_at = ""
        self.restarts = 0
        self.crashes = 0  # metrics (issue 7): exits unasked after a configured start
        self.left = manager.is_left(self.name)
        self.client: UnixHTTPClient | None = None
        self.inflight = 0
        self._idle = trio.Event()
        self._run: _Run | None = None
        self._generation = 0
        self._changed = trio.Event()
        self._settled = trio.Event()
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self.log_limit = LogLimiter(manager.settings.provider_log_rate,
                                    manager.settings.provider_log_burst)
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.publisher = Publisher(self)

    # -- what the manager and the API use -------------------------------------
    @property
    def runtime(self) -> PluginRuntime:
        return PluginRuntime(State=self.state, Pid=self.pid, StartedAt=self.started_at,
                             Restarts=self.restarts, InFlight=self.inflight)

    def update(self, plugin: Plugin, *, restart: bool) -> None:
        self.plugin = plugin
        if restart:
            self.restart()

    def restart(self) -> None:
        """Stop and start again (clears ``leaving``); settles anew."""
        if self.left:
            self.left = False
            self.manager.set_left(self.name, False)
        self._generation += 1
        self._unsettle()
        self._changed.set()

    @contextmanager
    def action_slot(self) -> Iterator[UnixHTTPClient]:
        """Count an action in flight (a stop waits for them, up to its grace)."""
        client = self.client
        if not self.available or client is None:
            raise Unavailable(f"plugin {self.name} is not available"
                              + (f": {self.errors[0]}" if self.errors else ""),
                              model="plugins", key=self.name)
        self.inflight += 1
        try:
            yield client
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()

    async def _drain_actions(self) -> None:
        while self.inflight:
            self._idle = trio.Event()
            await self._idle.wait()

    def leave(self) -> None:
        """The provider said ``leaving``: stop, and stay stopped until updated."""
        self.left = True
        self._changed.set()

    def poke(self) -> None:
        """Something it depends on changed (provider installed, param added)."""
        self._unsettle()
        self._changed.set()

    async def wait_settled(self) -> None:
        """Until the current start has succeeded or failed (callers bound it)."""
        await self._settled.wait()

    def _unsettle(self) -> None:
        if self._settled.is_set():
            self._settled = trio.Event()

    def _settle(self) -> None:
        self._settled.set()

    # -- the loop ------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: keep the provider running as the instance asks."""
        settings = self.manager.settings
        quick_failures = 0
        self.publisher.open()
        try:
            with self.scope:
                while True:
                    if self._changed.is_set():
                        self._changed = trio.Event()
                    generation = self._generation
                    problem = None if self.left else self.manager.problem(self.plugin)
                    if self.left or problem:
                        self._set_down("left" if self.left else "waiting",
                                       ["the provider left; update or restart the instance"]
                                       if self.left else [problem or ""])
                        self._settle()
                        await self._changed.wait()
                        continue
                    started = trio.current_time()
                    try:
                        outcome = await self._run_once(generation)
                    except Exception as exc:
                        # one instance's bug must not take down the manager
                        # nursery and every other instance with it
                        log.exception("plugin %s: supervisor error", self.name)
                        self.errors = [f"internal error: {exc!r}"]
                        self._record(self.errors[0])
                        outcome = "failed"
                    if outcome == "restart":
                        self.restarts += 1
                        quick_failures = 0
                        await self.manager.lifecycle(self.name, "restarted", {"Reason": "requested"})
                        continue
                    if outcome in ("left", "idle"):
                        continue
                    # crashed or failed to start
                    if trio.current_time() - started >= settings.healthy_after:
                        quick_failures = 0
                    quick_failures += 1
                    delay = 0.0 if quick_failures == 1 else min(
                        settings.backoff_initial * 2 ** (quick_failures - 2), settings.backoff_max)
                    self.state = "backoff"
                    self._settle()
                    with trio.move_on_after(delay):
                        await self._changed.wait()
                    if self._generation != generation:
                        quick_failures = 0
                    self.restarts += 1
        finally:
            self.publisher.close()
            self._set_down("stopped", [])
            self.state = "stopped"
            self._settle()
            self.done.set()

    def _set_down(self, state: str, errors: list[str]) -> None:
        self.state = state
        self.available = False
        self.pid = 0
        if errors and errors != self.errors and state == "waiting":
            self._record(errors[0])
        self.errors = errors

    async def exited_soon(self, seconds: float = 1.0) -> bool:
        """True if the provider process is gone, or goes within ``seconds``.

        A connection cut in the middle of an action is either a provider
        that died (the instance is unavailable: 503) or one that misbehaved
        and lives on (502); this tells them apart.
        """
        run = self._run
        if run is None or not self.available:
            return True
        with trio.move_on_after(seconds):
            await run.exited.wait()
        return run.exited.is_set()

    def note_error(self, message: str) -> None:
        """A misbehaviour that did not stop the provider (a bad action answer)."""
        self._record(message)

    def _record(self, message: str) -> None:
        entry = f"{now_rfc3339()} {message}"
        self.plugin_errors.append(entry)
        log.warning("plugin %s: %s", self.name, message)

    async def _run_once(self, generation: int) -> str:
        """Start, run until something happens, stop. Returns what happened:
        ``restart``, ``crashed``, ``failed`` (did not start), ``left`` or
        ``idle`` (stopped because it cannot run now; the loop says why)."""
        manager = self.manager
        serial = manager.next_serial()
        sockdir = manager.runtime_dir / str(serial)
        self._stderr_tail.clear()
        self.state = "starting"
        # Errors keeps the last failure until this start succeeds
        self._run = None
        try:
            await trio.to_thread.run_sync(sockdir.mkdir, 0o700)
            async with trio.open_nursery() as nursery:
                server_sock = str(sockdir / "s.sock")
                await nursery.start(serve_unix, server_sock, self._server_handler)
                try:
                    outcome = await self._attempt(nursery, generation, sockdir, serial)
                except StartFailed as exc:
                    self.errors = [str(exc)]
                    self._record(str(exc))
                    outcome = "failed"
                nursery.cancel_scope.cancel()
            return outcome
        finally:
            self.available = False
            if self._run is not None:
                with trio.CancelScope(shield=True):
                    await self._stop(self._run)
                self._run = None
            self.client = None
            self.pid = 0
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove_tree, sockdir)

    async def _attempt(self, nursery: trio.Nursery, generation: int, sockdir: Path,
                       serial: int) -> str:
        manager = self.manager
        provider = manager.providers.get(self.plugin.Provider)
        if provider is None:
            return "idle"
        plugin_sock, server_sock = str(sockdir / "p.sock"), str(sockdir / "s.sock")
        scratch = await trio.to_thread.run_sync(manager.scratch_dir, self.name)
        marker = f"{manager.run_id}/{serial}"
        verbs = [manager.verb_for(provider.Name)]
        if verbs[0] == "serve":
            verbs.append("listen")
        for verb in verbs:
            run = await self._spawn(nursery, provider, verb, plugin_sock, server_sock,
                                    scratch, marker)
            self._run = run
            try:
                await self._wait_ready(run)
                break
            except StartFailed as exc:
                fall_back = (verb == "serve" and run.process.returncode not in (None, 0)
                             and provider.PluginVersion == 4 and not run.ready_seen)
                await self._stop(run)
                self._run = None
                if not fall_back:
                    raise
                log.info("plugin %s: %s; trying `listen`", self.name, exc)
        manager.remember_verb(provider.Name, verb)
        await self._configure(run)
        self.available = True
        self.state = "running"
        self.errors = []
        nursery.start_soon(self.publisher.forward, run.client)
        self._settle()
        await manager.lifecycle(self.name, "available", {"Pid": self.pid})
        while True:
            if await wait_any(run.exited.wait, self._changed.wait) == 0:
                status = describe_exit(run.process.returncode)
                message = f"crashed: {status}{self._stderr_suffix()}"
                self.crashes += 1  # metrics (issue 7)
                self.available = False
                self.errors = [message]
                self._record(message)
                await manager.lifecycle(self.name, "crashed", {"ExitStatus": status})
                return "crashed"
            self._changed = trio.Event()
            if self._generation != generation or self.left or manager.problem(self.plugin):
                break
        self.state = "stopping"
        self.available = False
        await self._stop(run)
        self._run = None
        if self.left:
            await manager.lifecycle(self.name, "stopped", {"Reason": "left"})
            return "left"
        return "restart" if self._generation != generation else "idle"

    def _stderr_suffix(self) -> str:
        lines = list(self._stderr_tail)[-5:]
        return ("; stderr: " + " | ".join(lines)) if lines else ""

    async def _spawn(self, nursery: trio.Nursery, provider: PluginProvider, verb: str,
                     plugin_sock: str, server_sock: str, scratch: Path, marker: str) -> _Run:
        manager = self.manager
        env = manager.provider_env(self.name)
        env[INSTANCE_VAR] = marker
        binary = manager.binary_path(provider.Name)
        try:
            process = await trio.lowlevel.open_process(
                [str(binary), verb, plugin_sock, server_sock],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=str(scratch), env=env, start_new_session=True,
            )
        except OSError as exc:
            raise StartFailed(f"cannot run {binary}: {exc.strerror or exc}") from None
        limit = manager.settings.action_concurrency
        # keep enough connections alive for the usual concurrency: a new
        # connection per action costs more than the action (bench/actions.py)
        client = UnixHTTPClient(plugin_sock, max_connections=limit, max_idle=min(limit, 32))
        run = _Run(process, client, marker)
        self.client = client
        self.pid = process.pid
        self.started_at = now_rfc3339()
        nursery.start_soon(self._pump_stdout, run)
        nursery.start_soon(self._pump_stderr, run)
        nursery.start_soon(self._watch_exit, run)
        await manager.lifecycle(self.name, "started", {"Pid": process.pid, "Verb": verb})
        return run

    async def _watch_exit(self, run: _Run) -> None:
        await run.process.wait()
        run.exited.set()

    async def _lines(self, stream: Any) -> Any:
        splitter = LineSplitter(MAX_LINE)
        while chunk := await stream.receive_some(65536):
            for line in splitter.feed(chunk):
                yield line
            if self.log_limit.flooding:
                await trio.sleep(THROTTLE)
        for line in splitter.close():
            yield line

    async def _pump_stdout(self, run: _Run) -> None:
        async for line in self._lines(run.process.stdout):
            if line.strip() == wire.READY and not run.ready_seen:
                run.ready_seen = True
                run.ready.set()
                continue
            self._log_line("stdout", line)

    async def _pump_stderr(self, run: _Run) -> None:
        async for line in self._lines(run.process.stderr):
            self._stderr_tail.append(line)
            self._log_line("stderr", line)

    def _log_line(self, source: str, line: str) -> None:
        if not self.log_allowed():
            return
        self.log_lines.append(f"{now_rfc3339()} {source}: {line}")
        logging.getLogger(f"drpd.plugin.{self.name}").info("%s", line)

    def log_allowed(self) -> bool:
        """Whether one more line of this instance's output may be logged
        (plugins/loglimit.py); says how many were dropped, periodically."""
        limiter, settings = self.log_limit, self.manager.settings
        limiter.bucket.rate = settings.provider_log_rate
        limiter.bucket.burst = settings.provider_log_burst
        dropped = limiter.report()
        if dropped:
            message = (f"{dropped} output line(s) of this instance dropped: over "
                       f"provider_log_rate ({settings.provider_log_rate:g} lines/s)")
            self.log_lines.append(f"{now_rfc3339()} drpd: {message}")
            logging.getLogger(f"drpd.plugin.{self.name}").warning("%s", message)
        return limiter.allow()

    async def _wait_ready(self, run: _Run) -> None:
        timeout = self.manager.settings.ready_timeout
        with trio.move_on_after(timeout) as scope:
            which = await wait_any(run.ready.wait, run.exited.wait)
        if scope.cancelled_caught:
            raise StartFailed(f"no READY! within {timeout:g} s")
        if which == 1 and not run.ready_seen:
            raise StartFailed(
                f"exited ({describe_exit(run.process.returncode)}) before READY!"
                + self._stderr_suffix()
            )

    async def _configure(self, run: _Run) -> None:
        timeout = self.manager.settings.config_timeout
        body = dict(self.manager.expanded_params(self.plugin))
        body["Name"] = self.name
        result: list[tuple[int, bytes]] = []

        failure: list[str] = []

        async def call() -> None:
            # caught here: raised inside wait_any's nursery it would arrive
            # wrapped in an ExceptionGroup and take the whole manager down
            try:
                result.append(
                    await run.client.request("POST", wire.CONFIG_PATH, _encode(body)))
            except HTTPError as exc:
                failure.append(f"config failed: {exc}")

        with trio.move_on_after(timeout) as scope:
            which = await wait_any(call, run.exited.wait)
        if failure and not run.exited.is_set():
            raise StartFailed(failure[0])
        if scope.cancelled_caught:
            raise StartFailed(f"config not answered within {timeout:g} s")
        if which == 1 or not result:
            raise StartFailed(
                f"exited ({describe_exit(run.process.returncode)}) during config"
                + self._stderr_suffix()
            )
        status, answer = result[0]
        if not 200 <= status < 300:
            raise StartFailed(f"config refused ({status}): {_messages(answer)}")

    async def _stop(self, run: _Run) -> None:
        """docs/protocol.md §5 stop, shielded and bounded: /stop, grace, TERM, KILL."""
        grace = self.manager.settings.stop_grace
        process = run.process
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with trio.move_on_after(grace):
                    # actions in flight get the grace period to finish
                    await self._drain_actions()
                    try:
                        with trio.move_on_after(min(grace, 5.0)):
                            await run.client.request("POST", wire.STOP_PATH)
                    except HTTPError:
                        pass
                    await process.wait()
            if process.returncode is None:
                signal_group(process.pid, signal.SIGTERM)
                with trio.move_on_after(grace):
                    await process.wait()
            signal_group(process.pid, signal.SIGKILL)
            with trio.move_on_after(5):
                await process.wait()
            await run.client.aclose()
            # at shutdown the manager sweeps once for every instance instead
            escaped = 0 if self.manager.shutting_down else await trio.to_thread.run_sync(
                kill_marked, INSTANCE_VAR, run.marker)
            if escaped:
                log.info("plugin %s: ended %d escaped child process(es)", self.name, escaped)

    # -- the server socket: what the provider calls ------------------------------
    async def _server_handler(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return await self.manager.server_api.handle(self, method, target, body)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _messages(body: bytes) -> str:
    try:
        error = msgspec.json.decode(body, type=Error)
        return "; ".join(error.Messages) or body.decode(errors="replace")[:300]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body.decode(errors="replace")[:300]


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
