"""A Supervisor driven alone: a spec, a reporter and a host of the test's own.

Virtual time (trio's ``MockClock(autojump_threshold=0)``): crashes,
back-off, the healthy reset and stop escalation play out in milliseconds.
The provider is an in-process fake behind a fake ``Host`` (no real process,
no worker thread, which virtual time cannot see), talking to the
supervisor over real UNIX sockets with drpd's own HTTP code.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from drpd import wire
from drpd.http11 import serve_unix
from drpd.plugins.spec import Deadlines, Hold, RunSpec
from drpd.plugins.supervisor import Supervisor, verb_looks_unknown

DEADLINES = Deadlines(ready=2.0, config=2.0, stop_grace=3.0, healthy_after=60.0,
                      backoff_initial=1.0, backoff_max=8.0, publish=5.0)


@dataclass
class Script:
    """How the fake provider behaves on each start."""

    knows: tuple[str, ...] = (wire.SERVE, wire.LISTEN)
    #: exit 1 before READY! with this on stderr
    fail_before_ready: str | None = None
    #: exit 3 this many (virtual) seconds after READY!
    crash_after: float | None = None
    ignore_stop: bool = False
    ignore_term: bool = False


class FakeProcess:
    def __init__(self, pid: int, argv: list[str], script: Script) -> None:
        self.pid = pid
        self.argv = argv
        self.script = script
        self.returncode: int | None = None
        self._out, self.stdout = trio.testing.memory_stream_one_way_pair()
        self._err, self.stderr = trio.testing.memory_stream_one_way_pair()
        self._exited = trio.Event()
        self._scope = trio.CancelScope()
        self.signals: list[int] = []

    @property
    def verb(self) -> str:
        return self.argv[1]

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._out.close()
            self._err.close()
            self._scope.cancel()
            self._exited.set()

    def on_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGKILL or (signum == signal.SIGTERM and not self.script.ignore_term):
            self.exit(-signum)

    async def behave(self) -> None:
        script = self.script
        with self._scope:
            if self.verb not in script.knows:
                await self._err.send_all(f'Error: unknown command "{self.verb}" for "fake"\n'
                                         .encode())
                self.exit(1)
                return
            if script.fail_before_ready is not None:
                await self._err.send_all(script.fail_before_ready.encode() + b"\n")
                self.exit(1)
                return
            async with trio.open_nursery() as nursery:
                await nursery.start(lambda task_status: serve_unix(
                    self.argv[2], self._handle, on_sent=self._sent, task_status=task_status))
                await self._out.send_all(b"noise\n" + wire.READY.encode() + b"\n")
                if script.crash_after is not None:
                    await trio.sleep(script.crash_after)
                    await self._err.send_all(b"boom\n")
                    self.exit(3)

    async def _handle(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return wire.ok()

    def _sent(self, method: str, target: str, status: int) -> None:
        if target == wire.STOP_PATH and not self.script.ignore_stop:
            self.exit(0)


class FakeHost:
    """Spawns FakeProcesses in the test's nursery; records what was asked."""

    def __init__(self, nursery: trio.Nursery, root: Path, scripts: list[Script]) -> None:
        self.nursery = nursery
        self.root = root
        self.scripts = scripts
        self.spawned: list[FakeProcess] = []

    async def workspace(self, runtime_dir: Path, cwd: Path) -> Path:
        return Path(tempfile.mkdtemp(prefix="", dir=self.root))

    async def spawn(self, argv: list[str], *, env: Mapping[str, str], cwd: Path) -> FakeProcess:
        script = self.scripts[min(len(self.spawned), len(self.scripts) - 1)]
        process = FakeProcess(1000 + len(self.spawned), argv, script)
        self.spawned.append(process)
        self.nursery.start_soon(process.behave)
        return process

    def signal(self, process: Any, signum: int) -> None:
        process.on_signal(signum)

    async def remember(self) -> None:
        pass

    async def release(self) -> None:
        pass

    async def sweep(self, marker: str) -> int:
        return 0

    async def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Recorder:
    """The supervisor's Reporter: keeps (virtual time, action) of each event."""

    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)
    fail_on: str | None = None

    async def lifecycle(self, action: str, obj: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        if action == self.fail_on:
            raise OSError(28, "No space left on device")
        self.events.append((trio.current_time(), action, obj))

    def verb_worked(self, verb: str) -> None:
        self.verbs.append(verb)

    def times(self, action: str) -> list[float]:
        return [t for t, a, _ in self.events if a == action]


async def _no_server(method: str, target: str, body: bytes) -> tuple[int, bytes]:
    return wire.ok()


def spec(root: Path, **changes: Any) -> RunSpec:
    values: dict[str, Any] = dict(binary=root / "fake", verbs=(wire.SERVE, wire.LISTEN), env={},
                                  cwd=root, config=b'{"Name":"one"}', runtime_dir=root,
                                  run_id="test", deadlines=DEADLINES, max_connections=4)
    values.update(changes)
    return RunSpec(**values)


@pytest.fixture
async def world(short_tmp: Path) -> AsyncIterator[tuple[trio.Nursery, Path]]:
    async with trio.open_nursery() as nursery:
        yield nursery, short_tmp
        nursery.cancel_scope.cancel()


def supervisor(world: tuple[trio.Nursery, Path], scripts: list[Script],
               recorder: Recorder | None = None) -> tuple[Supervisor, FakeHost, Recorder]:
    nursery, root = world
    host = FakeHost(nursery, root, scripts)
    recorder = recorder or Recorder()
    sup = Supervisor("one", recorder, _no_server, host=host)
    nursery.start_soon(sup.run)
    return sup, host, recorder


async def until(predicate: Any, limit: float = 600.0) -> None:
    """Wait until ``predicate()``, checking every 10 ms of virtual time.

    Deterministic: the mock clock moves only when every task is blocked, so
    each check runs after everything the last step set off has happened.
    """
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - virtual time, see above
            await trio.sleep(0.01)


async def test_start_settles_running(world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    sup, host, rec = supervisor(world, [Script()])
    sup.want(spec(world[1]))
    with trio.fail_after(10):
        await sup.wait_settled()
    assert sup.available and sup.state == "running" and sup.errors == []
    await until(lambda: len(rec.events) == 2)
    assert [a for _, a, _ in rec.events] == ["started", "available"]
    assert host.spawned[0].verb == "serve" and rec.verbs == ["serve"]
    # what it wrote before READY! is logged, READY! itself is not
    assert any(line.endswith("stdout: noise") for line in sup.log_lines)


async def test_crash_backoff_and_healthy_reset(world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    # four quick crashes, then one run that lasts past healthy_after, then quick again
    quick = Script(crash_after=0.5)
    scripts = [quick, quick, quick, quick, Script(crash_after=100.0), quick]
    sup, host, rec = supervisor(world, scripts)
    sup.want(spec(world[1]))
    await until(lambda: len(rec.times("started")) >= 6)
    starts = rec.times("started")
    crashes = rec.times("crashed")
    gaps = [start - crash for crash, start in zip(crashes, starts[1:], strict=False)]
    # the first failure restarts at once, then 1 s, 2 s, 4 s (backoff_initial doubling);
    # a run of 100 s (> healthy_after) starts the count again: at once
    assert gaps[:5] == pytest.approx([0.0, 1.0, 2.0, 4.0, 0.0], abs=0.1)
    assert sup.crashes == 5 and sup.restarts >= 5
    assert "crashed: exit status 3; stderr: boom" in sup.plugin_errors[-1]


async def test_backoff_is_capped(world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    sup, host, rec = supervisor(world, [Script(fail_before_ready="bad config file")])
    sup.want(spec(world[1]))
    await until(lambda: len(rec.times("started")) >= 7)
    starts = rec.times("started")
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == pytest.approx([0.0, 1.0, 2.0, 4.0, 8.0, 8.0], abs=0.1)
    assert sup.errors[0].startswith("exited (exit status 1) before READY!")


async def test_stop_escalates_and_says_so(world: tuple[trio.Nursery, Path],
                                          caplog: pytest.LogCaptureFixture,
                                          autojump_clock: trio.abc.Clock) -> None:
    sup, host, rec = supervisor(world, [Script(ignore_stop=True, ignore_term=True), Script()])
    sup.want(spec(world[1]))
    with trio.fail_after(10):
        await sup.wait_settled()
    stubborn = host.spawned[0]
    with caplog.at_level(logging.WARNING, logger="drpd.plugins"):
        t0 = trio.current_time()
        sup.restart()
        await until(lambda: sup.available and len(host.spawned) == 2)
    # /stop ignored for the grace, SIGTERM ignored for the grace, then SIGKILL
    assert stubborn.signals == [signal.SIGTERM, signal.SIGKILL]
    assert stubborn.returncode == -signal.SIGKILL
    assert trio.current_time() - t0 >= 2 * DEADLINES.stop_grace
    assert "did not stop within 3 s of /stop: SIGTERM" in caplog.text
    assert "did not stop within 3 s of SIGTERM: SIGKILL" in caplog.text
    assert rec.times("restarted")


async def test_a_failing_started_event_leaks_no_process(
        world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    # issue 11.21: the disk is full, the `started` event cannot get a Seq
    sup, host, rec = supervisor(world, [Script()], Recorder(fail_on="started"))
    sup.want(spec(world[1]))
    with trio.fail_after(10):
        await sup.wait_settled()
    assert sup.available and len(host.spawned) == 1
    sup.want(Hold("waiting", ("told to stop",)))
    await until(lambda: sup.state == "waiting")
    assert host.spawned[0].returncode == 0 and sup.errors == ["told to stop"]


async def test_unknown_serve_falls_back_once_and_is_remembered(
        world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    go_style = Script(knows=(wire.LISTEN,), crash_after=1.0)
    sup, host, rec = supervisor(world, [go_style])
    sup.want(spec(world[1]))
    await until(lambda: len(host.spawned) >= 4)
    # serve (unknown) then listen; after the crash straight to listen
    assert [p.verb for p in host.spawned[:4]] == ["serve", "listen", "listen", "listen"]
    assert rec.verbs == ["listen"]


async def test_failure_before_ready_is_not_run_twice(world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    # issue 11.26: a provider that knows `serve` and fails is not retried with `listen`
    sup, host, rec = supervisor(world, [Script(fail_before_ready="cannot open /etc/x.conf")])
    sup.want(spec(world[1]))
    with trio.fail_after(10):
        await sup.wait_settled()
    assert [p.verb for p in host.spawned] == ["serve"]
    assert sup.errors[0].count("cannot open /etc/x.conf") == 1


def test_verb_looks_unknown() -> None:
    assert verb_looks_unknown("serve", ['Error: unknown command "serve" for "ipmi"'])
    assert verb_looks_unknown("serve", ["usage: x [define|listen] -- no verb 'serve'"])
    assert not verb_looks_unknown("serve", ["cannot open config", "Usage: see the docs"])
    assert not verb_looks_unknown("serve", [])


async def test_hold_and_new_spec_without_restart(world: tuple[trio.Nursery, Path],
                  autojump_clock: trio.abc.Clock) -> None:
    sup, host, rec = supervisor(world, [Script()])
    sup.want(Hold("waiting", ("missing required param: x",)))
    with trio.fail_after(10):
        await sup.wait_settled()
    assert sup.state == "waiting" and not host.spawned
    assert sup.errors == ["missing required param: x"]
    sup.want(spec(world[1]))
    await until(lambda: sup.available)
    pid = sup.pid
    # a new spec without restart applies at the next start: the process stays
    sup.want(spec(world[1], config=b'{"Name":"one","x":1}'))
    await trio.sleep(1)
    assert sup.pid == pid and len(host.spawned) == 1
    sup.want(Hold("left", ("the provider left",), reason="left"))
    await until(lambda: sup.state == "left")
    assert rec.events[-1][1:] == ("stopped", {"Reason": "left"})
