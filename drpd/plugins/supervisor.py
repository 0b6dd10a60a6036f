"""One supervisor per plugin instance: one provider process and its sockets.

A supervisor is told what to run (a frozen :class:`~.spec.RunSpec`) or to
stay down (:class:`~.spec.Hold`) through :meth:`Supervisor.want`, and
reports lifecycle events through a :class:`~.spec.Reporter`. It knows
nothing of its owner, the store or the API, so a test can drive one alone.

States (``Runtime.State``)::

    waiting   told to stay down: unknown provider, missing or bad params
              (``Errors`` says which); it starts once told to run
    starting  process spawned, waiting for READY! and then config
    running   configured: ``Available: true``
    backoff   it crashed or failed to start; the next start is scheduled
    stopping  being stopped (restart, destroy, drpd shutdown)
    left      the provider said ``leaving``; stays stopped until updated
              or restarted through the API
    stopped   not started yet, or gone

Back-off: the first failure restarts at once, then after
``backoff_initial * 2**(n-2)`` seconds, at most ``backoff_max``; a run that
lasted ``healthy_after`` seconds starts the count again.

Resource handling: each start runs in a nursery of its own, which owns the
process, its output pumps and the server-socket listener. The process is
owned (``self._run``) the moment it is spawned, before anything that can
fail is awaited; leaving that nursery (any way, cancellation included)
stops it as docs/protocol.md §5 says (``/stop``, grace, SIGTERM, SIGKILL of the
whole group, then any escaped child), shielded and bounded, and logs each
escalation.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import signal
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

from .. import wire
from ..bus import EventBus
from ..http11 import HTTPError, UnixHTTPClient, serve_unix
from ..models import Error, PluginRuntime, Unavailable
from .host import Host, OsHost, ProviderProcess
from .loglimit import THROTTLE, LineSplitter, LogLimiter
from .processes import INSTANCE_VAR
from .publisher import Publisher
from .spec import LOG_BURST, LOG_RATE, Desired, Hold, Reporter, RunSpec, ServerHandler

log = logging.getLogger("drpd.plugins")
MAX_LINE = 16 * 1024
LOG_LINES = 500
PLUGIN_ERRORS = 50
#: what a provider that does not know a verb says (Go's cobra, argparse, usage texts)
_UNKNOWN_WORDS = re.compile(r"unknown|unrecognized|invalid|no such|not found|usage", re.I)


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


def verb_looks_unknown(verb: str, output: list[str]) -> bool:
    """Did the provider's output say it does not know ``verb``?

    DRP's Go providers (cobra) print ``Error: unknown command "serve" for
    ...``; others print a usage text. A provider that knows the verb and
    fails for another reason says something else, and is not run again
    with the next verb (its failure would be doubled in ``Errors``).
    """
    word = re.compile(rf"\b{re.escape(verb)}\b", re.I)
    return any(word.search(line) and _UNKNOWN_WORDS.search(line) for line in output) or any(
        "unknown command" in line.lower() for line in output)


class StartFailed(Exception):
    pass


@dataclass
class _Run:
    """One start of the provider: what the stop sequence needs."""

    process: ProviderProcess
    client: UnixHTTPClient
    marker: str
    exited: trio.Event = field(default_factory=trio.Event)
    ready: trio.Event = field(default_factory=trio.Event)
    ready_seen: bool = False
    #: both output pipes reached end of file
    pumps_done: int = 0
    eof: trio.Event = field(default_factory=trio.Event)
    #: the last lines of output before READY! (stderr and stdout)
    early: deque[str] = field(default_factory=lambda: deque(maxlen=20))


class Supervisor:
    def __init__(self, name: str, reporter: Reporter, server: ServerHandler, *,
                 bus: EventBus | None = None, host: Host | None = None) -> None:
        self.name = name
        self.reporter = reporter
        self.server = server
        self.host: Host = host or OsHost()
        self.state = "stopped"
        self.available = False
        self.errors: list[str] = []
        self.plugin_errors: deque[str] = deque(maxlen=PLUGIN_ERRORS)
        #: actions in a row that got no answer in time (reset by any answer, any start)
        self._timeouts = 0
        self.log_lines: deque[str] = deque(maxlen=LOG_LINES)
        self.pid = 0
        self.started_at = ""
        self.restarts = 0
        self.crashes = 0  # metrics (issue 7): exits unasked after a configured start
        self.client: UnixHTTPClient | None = None
        self.inflight = 0
        #: sweep /proc for escaped children on each stop (the owner sweeps
        #: once for everyone when drpd stops)
        self.sweep = True
        self._desired: Desired = Hold("stopped")
        #: the verb the provider last answered READY! to: tried first next time
        self._verb: str | None = None
        self._idle = trio.Event()
        self._run: _Run | None = None
        self._serial = 0
        self._generation = 0
        self._changed = trio.Event()
        self._settled = trio.Event()
        self._stderr_tail: deque[str] = deque(maxlen=20)
        #: provider output into drpd's log, bounded (rate and burst: the spec's)
        self.log_limit = LogLimiter(LOG_RATE, LOG_BURST)
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.publisher = Publisher(bus, name, self._wants_events,
                                   available=lambda: self.available,
                                   note_error=self.note_error, log_line=self.log_line)

    # -- what the owner and the API use -----------------------------------------
    @property
    def runtime(self) -> PluginRuntime:
        return PluginRuntime(State=self.state, Pid=self.pid, StartedAt=self.started_at,
                             Restarts=self.restarts, InFlight=self.inflight)

    @property
    def desired(self) -> Desired:
        return self._desired

    def want(self, desired: Desired, *, restart: bool = False) -> None:
        """Be told what to run now (or to stay down).

        A running process is stopped and started again only on ``restart``
        or when told to stay down; a new spec without ``restart`` applies at
        the next start. A supervisor that is not running tries again now.
        """
        changed = desired != self._desired
        self._desired = desired
        if restart:
            self._generation += 1
        if restart or (changed and (isinstance(desired, Hold) or not self.available)):
            self._unsettle()
            self._changed.set()

    def restart(self) -> None:
        """Stop and start again with the current spec; settles anew."""
        self.want(self._desired, restart=True)

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

    async def wait_settled(self) -> None:
        """Until the current start has succeeded or failed (callers bound it)."""
        await self._settled.wait()

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    def _unsettle(self) -> None:
        if self._settled.is_set():
            self._settled = trio.Event()

    def _settle(self) -> None:
        self._settled.set()

    def _wants_events(self) -> bool:
        desired = self._desired
        return isinstance(desired, RunSpec) and desired.has_publish

    async def _report(self, action: str, obj: dict[str, Any]) -> None:
        """A lifecycle event; one that cannot be emitted is logged, not fatal."""
        try:
            await self.reporter.lifecycle(action, obj)
        except Exception as exc:
            log.warning("plugin %s: cannot emit the %s event: %s", self.name, action, exc)

    # -- the loop ------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: keep the provider running as the owner wants."""
        quick_failures = 0
        self.publisher.open()
        try:
            with self.scope:
                while True:
                    if self._changed.is_set():
                        self._changed = trio.Event()
                    generation = self._generation
                    desired = self._desired
                    if isinstance(desired, Hold):
                        self._set_down(desired.state, list(desired.errors))
                        self._settle()
                        await self._changed.wait()
                        quick_failures = 0
                        continue
                    started = trio.current_time()
                    try:
                        outcome = await self._run_once(desired, generation)
                    except Exception as exc:
                        # one instance's bug must not take down the owner's
                        # nursery and every other instance with it
                        log.exception("plugin %s: supervisor error", self.name)
                        self.errors = [f"internal error: {exc!r}"]
                        self._record(self.errors[0])
                        outcome = "failed"
                    if outcome == "restart":
                        self.restarts += 1
                        quick_failures = 0
                        await self._report("restarted", {"Reason": "requested"})
                        continue
                    if outcome == "idle":
                        continue
                    # crashed or failed to start
                    deadlines = desired.deadlines
                    if trio.current_time() - started >= deadlines.healthy_after:
                        quick_failures = 0
                    quick_failures += 1
                    delay = 0.0 if quick_failures == 1 else min(
                        deadlines.backoff_initial * 2 ** (quick_failures - 2),
                        deadlines.backoff_max)
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

    def action_answered(self) -> None:
        """The provider answered an action (whatever it said): it is not hung."""
        self._timeouts = 0

    def action_timed_out(self, message: str) -> None:
        """An action got no answer in time (504): recorded in PluginErrors; after
        ``timeouts_before_restart`` in a row the process is restarted, so a hung
        provider does not cost every later caller the whole timeout."""
        self._record(message)
        self._timeouts += 1
        spec = self._desired
        limit = spec.timeouts_before_restart if isinstance(spec, RunSpec) else 0
        if limit and self._timeouts >= limit and self.available:
            self._timeouts = 0
            self._record(f"{limit} action(s) in a row got no answer in time: restarting "
                         "the provider (action_timeouts_before_restart)")
            self.restart()

    def _record(self, message: str) -> None:
        entry = f"{now_rfc3339()} {message}"
        self.plugin_errors.append(entry)
        log.warning("plugin %s: %s", self.name, message)

    def log_line(self, source: str, line: str, level: int = logging.INFO) -> None:
        """One line the provider wrote (stdout, stderr, ``/log``), kept and logged,
        unless the instance is over its rate (``log_allowed``)."""
        if not self.log_allowed():
            return
        self.log_lines.append(f"{now_rfc3339()} {source}: {line}")
        logging.getLogger(f"drpd.plugin.{self.name}").log(level, "%s", line)

    def log_allowed(self) -> bool:
        """Whether one more line of this instance's output may be logged
        (plugins/loglimit.py); says how many were dropped, periodically."""
        limiter, desired = self.log_limit, self._desired
        if isinstance(desired, RunSpec):
            limiter.bucket.rate = desired.log_rate
            limiter.bucket.burst = desired.log_burst
        dropped = limiter.report()
        if dropped:
            message = (f"{dropped} output line(s) of this instance dropped: over "
                       f"provider_log_rate ({limiter.bucket.rate:g} lines/s)")
            self.log_lines.append(f"{now_rfc3339()} drpd: {message}")
            logging.getLogger(f"drpd.plugin.{self.name}").warning("%s", message)
        return limiter.allow()

    def _started(self) -> _Run | None:
        return self._run

    async def _run_once(self, spec: RunSpec, generation: int) -> str:
        """Start, run until something happens, stop. Returns what happened:
        ``restart``, ``crashed``, ``failed`` (did not start) or ``idle``
        (stopped because it was told to stay down)."""
        self._stderr_tail.clear()
        self.state = "starting"
        # Errors keeps the last failure until this start succeeds
        self._run = None
        sockdir: Path | None = None
        try:
            try:
                sockdir = await self.host.workspace(spec.runtime_dir, spec.cwd)
            except OSError as exc:
                return self._failed(f"cannot prepare the directories of a start in "
                                    f"{spec.runtime_dir}: {exc.strerror or exc}")
            async with trio.open_nursery() as nursery:
                # the start's directory (0700: drpd's, or the provider user's)
                # is what keeps others out of the socket drpd serves in it
                await nursery.start(partial(serve_unix, str(sockdir / "s.sock"), self.server,
                                            mode=0o666))
                try:
                    outcome = await self._attempt(nursery, spec, generation, sockdir)
                except StartFailed as exc:
                    # caught inside the nursery: outside it would arrive in a group
                    outcome = self._failed(str(exc))
                nursery.cancel_scope.cancel()
            return outcome
        finally:
            self.available = False
            run = self._started()  # set by _attempt, which mypy cannot see here
            if run is not None:
                with trio.CancelScope(shield=True):
                    await self._stop(run, spec)
                self._run = None
            self.client = None
            self.pid = 0
            if sockdir is not None:
                with trio.CancelScope(shield=True):
                    await self.host.remove(sockdir)

    async def _attempt(self, nursery: trio.Nursery, spec: RunSpec, generation: int,
                       sockdir: Path) -> str:
        plugin_sock, server_sock = str(sockdir / "p.sock"), str(sockdir / "s.sock")
        marker = f"{spec.run_id}/{sockdir.name}"
        verbs = list(spec.verbs)
        if self._verb in verbs:
            verbs.remove(self._verb)
            verbs.insert(0, self._verb)
        run: _Run | None = None
        for index, verb in enumerate(verbs):
            run = await self._spawn(nursery, spec, verb, plugin_sock, server_sock, marker)
            try:
                await self._wait_ready(run, spec)
                break
            except StartFailed as exc:
                fall_back = (index + 1 < len(verbs) and not run.ready_seen
                             and run.process.returncode not in (None, 0)
                             and verb_looks_unknown(verb, list(run.early)))
                await self._stop(run, spec)
                self._run = None
                if not fall_back:
                    raise
                log.info("plugin %s: %s; trying `%s`", self.name, exc, verbs[index + 1])
        assert run is not None
        if verb != self._verb:
            self._verb = verb
            self.reporter.verb_worked(verb)
        await self._configure(run, spec)
        self.available = True
        self._timeouts = 0
        self.state = "running"
        self.errors = []
        nursery.start_soon(self.publisher.forward, run.client, spec.deadlines.publish)
        self._settle()
        await self._report("available", {"Pid": self.pid})
        while True:
            if await wait_any(run.exited.wait, self._changed.wait) == 0:
                status = describe_exit(run.process.returncode)
                message = f"crashed: {status}{self._stderr_suffix()}"
                self.crashes += 1  # metrics (issue 7)
                self.available = False
                self.errors = [message]
                self._record(message)
                await self._report("crashed", {"ExitStatus": status})
                return "crashed"
            self._changed = trio.Event()
            if self._generation != generation or isinstance(self._desired, Hold):
                break
        self.state = "stopping"
        self.available = False
        await self._stop(run, spec)
        self._run = None
        desired = self._desired
        if isinstance(desired, Hold) and self._generation == generation:
            if desired.reason:
                await self._report("stopped", {"Reason": desired.reason})
            return "idle"
        return "restart"

    def _failed(self, message: str) -> str:
        self.errors = [message]
        self._record(message)
        return "failed"

    def _stderr_suffix(self) -> str:
        lines = list(self._stderr_tail)[-5:]
        return ("; stderr: " + " | ".join(lines)) if lines else ""

    async def _spawn(self, nursery: trio.Nursery, spec: RunSpec, verb: str,
                     plugin_sock: str, server_sock: str, marker: str) -> _Run:
        env = dict(spec.env)
        env[INSTANCE_VAR] = marker
        env["DRPD_PLUGIN"] = self.name  # which instance a process serves (ps e, tests)
        try:
            process = await self.host.spawn(spec.argv(verb, plugin_sock, server_sock), env=env,
                                            cwd=spec.cwd)
        except OSError as exc:
            raise StartFailed(f"cannot run {spec.binary}: {exc.strerror or exc}") from None
        # keep enough connections alive for the usual concurrency: a new
        # connection per action costs more than the action (bench/actions.py)
        limit = spec.max_connections
        client = UnixHTTPClient(plugin_sock, max_connections=limit, max_idle=min(limit, 32))
        run = _Run(process, client, marker)
        # owned before anything that can fail is awaited: whatever happens
        # next, _run_once's stop sequence ends this process (issue 11.21)
        self._run = run
        self.client = client
        self.pid = process.pid
        self.started_at = now_rfc3339()
        nursery.start_soon(self._pump_stdout, run)
        nursery.start_soon(self._pump_stderr, run)
        nursery.start_soon(self._watch_exit, run)
        await self._report("started", {"Pid": process.pid, "Verb": verb})
        return run

    async def _watch_exit(self, run: _Run) -> None:
        await run.process.wait()
        run.exited.set()

    async def _lines(self, stream: Any) -> AsyncIterator[str]:
        splitter = LineSplitter(MAX_LINE)
        while chunk := await stream.receive_some(65536):
            for line in splitter.feed(chunk):
                yield line
            if self.log_limit.flooding:
                await trio.sleep(THROTTLE)
        for line in splitter.close():
            yield line

    def _pump_done(self, run: _Run) -> None:
        run.pumps_done += 1
        if run.pumps_done == 2:
            run.eof.set()

    async def _pump_stdout(self, run: _Run) -> None:
        try:
            async for line in self._lines(run.process.stdout):
                if line.strip() == wire.READY and not run.ready_seen:
                    run.ready_seen = True
                    run.ready.set()
                    continue
                if not run.ready_seen:
                    run.early.append(line)
                self.log_line("stdout", line)
        finally:
            self._pump_done(run)

    async def _pump_stderr(self, run: _Run) -> None:
        try:
            async for line in self._lines(run.process.stderr):
                self._stderr_tail.append(line)
                if not run.ready_seen:
                    run.early.append(line)
                self.log_line("stderr", line)
        finally:
            self._pump_done(run)

    async def _wait_ready(self, run: _Run, spec: RunSpec) -> None:
        timeout = spec.deadlines.ready
        with trio.move_on_after(timeout) as scope:
            which = await wait_any(run.ready.wait, run.exited.wait)
        if scope.cancelled_caught:
            raise StartFailed(f"no {wire.READY} within {timeout:g} s")
        if which == 1 and not run.ready_seen:
            # what it wrote before exiting tells why (and whether it knew the verb)
            with trio.move_on_after(1.0):
                await run.eof.wait()
            raise StartFailed(
                f"exited ({describe_exit(run.process.returncode)}) before {wire.READY}"
                + self._stderr_suffix()
            )

    async def _configure(self, run: _Run, spec: RunSpec) -> None:
        timeout = spec.deadlines.config
        result: list[tuple[int, bytes]] = []
        failure: list[str] = []

        async def call() -> None:
            # caught here: raised inside wait_any's nursery it would arrive
            # wrapped in an ExceptionGroup and take the whole owner down
            try:
                result.append(await run.client.request("POST", wire.CONFIG_PATH, spec.config))
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

    async def _stop(self, run: _Run, spec: RunSpec) -> None:
        """docs/protocol.md §5 stop, shielded and bounded: /stop, grace, TERM, KILL."""
        grace = spec.deadlines.stop_grace
        process = run.process
        with trio.CancelScope(shield=True):
            await self.host.remember()
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
                log.warning("plugin %s: pid %d did not stop within %g s of /stop: SIGTERM",
                            self.name, process.pid, grace)
                self.host.signal(process, signal.SIGTERM)
                with trio.move_on_after(grace):
                    await process.wait()
                if process.returncode is None:
                    log.warning("plugin %s: pid %d did not stop within %g s of SIGTERM: "
                                "SIGKILL", self.name, process.pid, grace)
            self.host.signal(process, signal.SIGKILL)
            with trio.move_on_after(5):
                await process.wait()
            await run.client.aclose()
            escaped = await self.host.sweep(run.marker) if self.sweep else 0
            if escaped:
                log.info("plugin %s: ended %d escaped child process(es)", self.name, escaped)


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



