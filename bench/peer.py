"""Benchmark: crash recovery of drpd against its peer, supervisord.

    .venv/bin/python bench/peer.py            # full run, about 100 s
    .venv/bin/python bench/peer.py --quick    # CI smoke run, under 30 s

Needs supervisord (``pip install supervisor``; found next to this Python
or on ``PATH``); without it the run says so and exits 0, writing nothing.

The same trivial provider, ``tests/providers/plain_provider.py`` (standard
library only), runs ``serve <plugin-sock> <server-sock>`` under both:

- **drpd**: one instance of it (a real ``drpd serve --no-tls``), with
  ``DRPD_HEALTHY_AFTER`` = ``healthy`` seconds;
- **supervisord** 4.x: ``[program:plain]`` with ``autorestart=true`` and
  ``startsecs`` = ``healthy`` seconds, the provider's stdout in a logfile;
  its server socket is a ``drpd.http11.serve_unix`` stub run here
  (``bench.provider_kit.BareSite``), which is what a bare run gets.

Each round SIGKILLs the provider's process and times until a new process is
up and READY: for drpd the instance's ``available`` lifecycle event on the
websocket ``/api/v3/ws`` carrying a new pid (drpd has then also sent it
``config``: a step supervisord does not have); for supervisord the next
``READY!`` line appended to the program's stdout logfile (polled every
millisecond). Before each kill the run has been up ``healthy`` + 0.2 s and
supervisord reports it RUNNING, so both measure a first restart, never a
back-off. Rounds alternate drpd / supervisord so drift hits both alike.
Beside them, the floor of both: a bare spawn of the same provider until it
prints ``READY!``, once per round. Where the time goes comes from drpd's
``crashed`` / ``started`` events and supervisord's own log lines
(``exited:`` / ``spawned:``, millisecond timestamps).

supervisord's main loop polls with a 1 s timeout: the dead child's closed
pipe wakes it to reap, but the respawn waits for the next pass of the loop,
so expect about 1 s there (STACK-NOTES.md).

127.0.0.1 and UNIX sockets only; every wait has a deadline and every process
started here is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    Figure,
    Series,  # noqa: E402
    machine_info,
    print_table,
    run_main,  # noqa: E402
    write_results,
)
from bench.provider_kit import (  # noqa: E402
    BareSite,
    LifecycleWatch,
    alive,
    api_client,
    check,
    create_plugin,
    git_state,
    provider_env,
    provider_path,
    start_drpd,
    stop_drpd,
)
from drpd.testing import DrpdProcess  # noqa: E402

PROVIDER = "plain_provider"
PROGRAM = "plain"
INSTANCE = "peer-plain"


@dataclass(frozen=True)
class Sizes:
    rounds: int
    #: DRPD_HEALTHY_AFTER and supervisord's startsecs (seconds; startsecs is an integer)
    healthy: float
    #: extra wait after ``healthy`` before each kill
    margin: float = 0.2


FULL = Sizes(rounds=20, healthy=1.0)
QUICK = Sizes(rounds=3, healthy=1.0)


def find_supervisord() -> str | None:
    here = Path(sys.executable).parent / "supervisord"
    if here.exists():
        return str(here)
    return shutil.which("supervisord")





class Results:
    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.info: dict[str, Any] = {}

    def add(self, name: str, value: float, unit: str = "ms") -> None:
        self.series.setdefault(name, Series(unit)).values.append(value)

    def figure(self, name: str, value: str, baseline: str, baseline_name: str,
               note: str = "") -> Figure:
        v, b = self.series[value], self.series[baseline]
        paired = len(v.values) == len(b.values)
        return Figure(name, v.median, v.unit, b.median, baseline_name, note,
                      value_rounds=v.values if paired else (),
                      baseline_rounds=b.values if paired else ())


# -- supervisord ----------------------------------------------------------------------------
SUPERVISORD_CONF = """\
[supervisord]
nodaemon=true
logfile={root}/supervisord.log
logfile_maxbytes=0
loglevel=info
pidfile={root}/supervisord.pid
childlogdir={root}
identifier=drpd-bench-peer

[unix_http_server]
file={root}/sv.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:{program}]
command={provider} serve {root}/sv-p.sock {server_sock}
directory={root}/scratch
autostart=true
autorestart=true
startsecs={startsecs}
startretries=100
stopsignal=TERM
stopwaitsecs=5
stdout_logfile={root}/{program}.out
stdout_logfile_maxbytes=0
stderr_logfile={root}/{program}.err
stderr_logfile_maxbytes=0
"""

#: supervisord's log line: "2025-01-01 12:00:00,123 INFO spawned: 'plain' with pid 42"
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$")


class Supervisord:
    """A supervisord child process running ``[program:plain]``; ``stop`` ends it and its child."""

    def __init__(self, binary: str, root: Path, server_sock: str, startsecs: float) -> None:
        self.binary = binary
        self.root = root
        self.conf = root / "supervisord.conf"
        self.out = root / f"{PROGRAM}.out"
        self.log = root / "supervisord.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: set[int] = set()  # every provider pid seen, for the clean-up
        (root / "scratch").mkdir(exist_ok=True)
        self.conf.write_text(SUPERVISORD_CONF.format(
            root=root, program=PROGRAM, provider=provider_path(PROVIDER),
            server_sock=server_sock, startsecs=_startsecs(startsecs)))
        self.rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=_transport(root))

    def start(self) -> Supervisord:
        # the program inherits supervisord's environment: the one a bare run gets
        with open(self.root / "supervisord.stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-n", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, env=provider_env(),
                start_new_session=True)
        return self

    def info(self) -> dict[str, Any]:
        return self.rpc.supervisor.getProcessInfo(PROGRAM)  # type: ignore[no-any-return]

    async def wait_running(self, limit: float = 30.0) -> int:
        """Wait until the program is RUNNING (it stayed up ``startsecs``); its pid."""
        with trio.fail_after(limit):
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"supervisord exited: {self._tail()}")
                try:
                    info = await trio.to_thread.run_sync(self.info)
                except (OSError, xmlrpc.client.Error):
                    info = {}
                if info.get("statename") == "RUNNING" and info.get("pid"):
                    self.pids.add(int(info["pid"]))
                    return int(info["pid"])
                if info.get("statename") in ("BACKOFF", "FATAL"):
                    raise RuntimeError(f"supervisord could not start {PROGRAM}: {info} "
                                       f"{self._tail()}")
                await trio.sleep(0.05)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # supervisord stops its program (TERM), then exits
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in self.pids:  # each program runs in its own process group
            if alive(pid):
                with suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)

    def log_events(self, since: float) -> list[tuple[float, str]]:
        """supervisord's log lines (wall time, message) at or after ``since`` (time.time())."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _LOG_LINE.match(line)
            if not m:
                continue
            at = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= since - 0.002:  # the log's millisecond truncation
                out.append((at, m.group(2)))
        return out


def _startsecs(seconds: float) -> int:
    """supervisord's startsecs is an integer; at least 1."""
    return max(1, math.ceil(seconds))


def _transport(root: Path) -> xmlrpc.client.Transport:
    from supervisor.xmlrpc import SupervisorTransport

    return SupervisorTransport(None, None, serverurl=f"unix://{root}/sv.sock")


class StdoutTail:
    """Follows the program's stdout logfile for ``READY!`` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.buffer = b""

    def skip_to_end(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except FileNotFoundError:
            self.offset = 0
        self.buffer = b""

    async def wait_ready(self, limit: float = 30.0, interval: float = 0.001) -> float:
        """perf_counter when a ``READY!`` line written after the last mark is seen."""
        with trio.fail_after(limit):
            while True:
                try:
                    size = os.stat(self.path).st_size
                except FileNotFoundError:
                    size = 0
                if size > self.offset:
                    at = time.perf_counter()
                    data = _read_range(self.path, self.offset, size)
                    self.offset += len(data)
                    self.buffer += data
                    lines = self.buffer.split(b"\n")
                    self.buffer = lines.pop()
                    if any(line.strip() == b"READY!" for line in lines):
                        return at
                await trio.sleep(interval)


def _read_range(path: Path, start: int, end: int) -> bytes:
    """Bytes ``start..end`` of a small local file (sync: cheaper than a thread hop)."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


# -- the rounds ---------------------------------------------------------------------------------
async def drpd_round(watch: LifecycleWatch, pid: int, ready_at: float, sizes: Sizes,
                     results: Results) -> tuple[int, float]:
    await trio.sleep(max(0.0, ready_at + sizes.healthy + sizes.margin - time.perf_counter()))
    watch.clear()
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    at, new_pid = await watch.wait_available(INSTANCE, pid)
    results.add("drpd kill -> available", (at - t0) * 1e3)
    if watch.mode == "websocket":
        crashed = await watch.wait_event(INSTANCE, "crashed")
        started = await watch.wait_event(INSTANCE, "started")
        results.add("drpd kill -> crashed event", (crashed.at - t0) * 1e3)
        results.add("drpd kill -> started event", (started.at - t0) * 1e3)
        results.add("drpd started -> available", (at - started.at) * 1e3)
    return new_pid, at


async def supervisord_round(sv: Supervisord, tail: StdoutTail, ready_at: float, sizes: Sizes,
                            results: Results) -> float:
    await trio.sleep(max(0.0, ready_at + sizes.healthy + sizes.margin - time.perf_counter()))
    pid = await sv.wait_running()  # RUNNING: a kill now is not a failed start
    tail.skip_to_end()
    wall0, t0 = time.time(), time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    at = await tail.wait_ready()
    results.add("supervisord kill -> READY!", (at - t0) * 1e3)
    new_pid = await sv.wait_running(limit=sizes.healthy + 30)
    if new_pid == pid or alive(pid):
        raise RuntimeError(f"supervisord did not replace pid {pid}")
    exited = spawned = None
    for when, message in sv.log_events(wall0):
        if exited is None and message.startswith(f"exited: {PROGRAM} "):
            exited = when
            if "not expected" not in message:
                raise RuntimeError(f"supervisord took the kill as expected: {message}")
        if spawned is None and message.startswith(f"spawned: '{PROGRAM}'"):
            spawned = when
        if "backoff" in message.lower():
            results.info["supervisord_backoffs"] = results.info.get("supervisord_backoffs", 0) + 1
    if exited is not None and spawned is not None:
        results.add("supervisord kill -> exited (log)", max(0.0, exited - wall0) * 1e3)
        results.add("supervisord kill -> spawned (log)", max(0.0, spawned - wall0) * 1e3)
        results.add("supervisord spawned -> READY! (log)",
                    ((at - t0) - (spawned - wall0)) * 1e3)
    return at


async def bare_round(site: BareSite, results: Results) -> None:
    run = await site.spawn(provider_path(PROVIDER))
    await site.kill(run)
    results.add("bare spawn -> READY!", run.ready_s * 1e3)


async def run_all(work: Path, binary: str, sizes: Sizes, results: Results) -> None:
    env = {"DRPD_HEALTHY_AFTER": str(sizes.healthy)}
    async with BareSite.open() as site:
        sv = Supervisord(binary, site.root, site.server_sock, sizes.healthy)
        drpd: DrpdProcess | None = None
        try:
            sv.start()
            drpd = await trio.to_thread.run_sync(start_drpd, work / "drpd", [PROVIDER], env)
            print(f"drpd {drpd.endpoint}; supervisord {sv.conf}", flush=True)
            async with api_client(drpd) as api:
                watch = LifecycleWatch(drpd, api)
                async with watch.open([INSTANCE]):
                    results.info["drpd_watch"] = watch.mode
                    created = await create_plugin(api, INSTANCE, PROVIDER, {})
                    pid, drpd_ready = int(created["Runtime"]["Pid"]), time.perf_counter()
                    await sv.wait_running()
                    sv_ready = time.perf_counter()
                    tail = StdoutTail(sv.out)
                    for r in range(sizes.rounds):
                        pid, drpd_ready = await drpd_round(watch, pid, drpd_ready, sizes, results)
                        sv_ready = await supervisord_round(sv, tail, sv_ready, sizes, results)
                        await bare_round(site, results)
                        print(f"  round {r + 1}/{sizes.rounds}: drpd "
                              f"{results.series['drpd kill -> available'].values[-1]:.0f} ms, "
                              f"supervisord "
                              f"{results.series['supervisord kill -> READY!'].values[-1]:.0f} ms, "
                              f"bare {results.series['bare spawn -> READY!'].values[-1]:.0f} ms",
                              flush=True)
                        if drpd.proc is None or drpd.proc.poll() is not None:
                            raise RuntimeError(f"drpd exited:\n{drpd.log_text()[-2000:]}")
                    final = check(await api.get(f"/plugins/{INSTANCE}"), 200)
                    results.info["drpd_restarts"] = final["Runtime"]["Restarts"]
                    results.info["drpd_plugin_errors"] = len(final["PluginErrors"])
                    info = await trio.to_thread.run_sync(sv.info)
                    results.info["supervisord_final_state"] = info.get("statename")
            results.info["supervisord_version"] = await trio.to_thread.run_sync(
                lambda: sv.rpc.supervisor.getSupervisorVersion())
        finally:
            with trio.CancelScope(shield=True):
                if drpd is not None:
                    await trio.to_thread.run_sync(stop_drpd, drpd)
                await trio.to_thread.run_sync(sv.stop)


def figures_from(results: Results, sizes: Sizes) -> list[Figure]:
    f = results.figure
    figs = [
        f("crash -> back and READY, drpd vs supervisord", "drpd kill -> available",
          "supervisord kill -> READY!", "supervisord (autorestart): kill -> READY! in its log",
          note="SIGKILL of plain_provider; drpd: 'available' event with the new pid (after "
               "config); supervisord: next READY! line in the program's stdout logfile"),
        f("crash -> respawned, drpd vs supervisord", "drpd kill -> started event",
          "supervisord kill -> spawned (log)", "supervisord: kill -> 'spawned:' log line",
          note="how soon each notices the death and starts the new process"),
        f("crash -> back and READY, drpd vs bare spawn", "drpd kill -> available",
          "bare spawn -> READY!", "bare spawn until READY! (the floor of both)"),
        f("crash -> back and READY, supervisord vs bare spawn", "supervisord kill -> READY!",
          "bare spawn -> READY!", "bare spawn until READY! (the floor of both)"),
    ]
    return figs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/peer.json, "
                             "or peer-quick.json with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("peer-quick.json" if args.quick else "peer.json")
    binary = find_supervisord()
    if binary is None:
        print("peer: supervisord not found (pip install supervisor): skipped", file=sys.stderr)
        return 0
    work = Path(tempfile.mkdtemp(prefix="drpd-bench-peer-"))
    started = time.monotonic()
    meta = machine_info() | {"drpd_source": git_state()}
    results = Results()
    try:
        trio.run(run_all, work, binary, sizes, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = figures_from(results, sizes)
    print()
    print_table(figures, title=(
        f"drpd vs supervisord: SIGKILL of plain_provider until a new process is READY, "
        f"medians of {sizes.rounds} kills each\n(healthy_after = startsecs = "
        f"{sizes.healthy:g} s; every kill a first restart). ratio = drpd / baseline; "
        "paired = median of per-round ratios."))
    print("\nwhere the time goes (medians, ms):")
    for name, s in results.series.items():
        print(f"  {name}: {s.median:.1f} (min {min(s.values):.1f}, max {max(s.values):.1f})")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in results.info.items()))
    duration = time.monotonic() - started
    meta.update(duration_s=round(duration, 1), quick=args.quick)
    settings = asdict(sizes) | {
        "provider": PROVIDER, "supervisord": binary,
        "supervisord_startsecs": _startsecs(sizes.healthy),
        "drpd_env": {"DRPD_HEALTHY_AFTER": str(sizes.healthy)},
        "supervisord_ready": "READY! line in stdout_logfile, polled every 1 ms",
        "drpd_ready": f"'available' lifecycle event ({results.info.get('drpd_watch')})",
    }
    path = write_results(output, benchmark="peer", meta=meta, figures=figures,
                         settings=settings,
                         measurements={"series": {k: s.to_json()
                                                  for k, s in results.series.items()},
                                       "info": results.info})
    print(f"\nwrote {path} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
