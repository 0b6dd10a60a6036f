"""Benchmark: drpd at scale, 200 instances of plain_provider, against baselines.

    .venv/bin/python bench/scale.py            # full run, about 3 minutes
    .venv/bin/python bench/scale.py --quick    # CI smoke run (20 instances), under 30 s

What is measured, in one run (a real ``drpd serve --no-tls``; the
provider is ``tests/providers/plain_provider.py``, standard library only):

1. **boot**: 200 instances are created through the API, then drpd is
   stopped (SIGTERM) and started again on the same store; the figure is the
   time from starting the process to every instance ``Available`` (the
   ``available`` lifecycle events on ``/api/v3/ws`` joined with one
   ``GET /plugins``, connected as soon as drpd prints its serving line).
   Baseline, in the same rounds: 200 bare ``plain_provider serve``
   processes spawned here concurrently until each printed ``READY!`` (a
   ``drpd.http11.serve_unix`` stub on their server socket); beside it the
   same with ``config`` sent to each after its ``READY!`` (what drpd does
   before ``Available``);
2. **idle cost**: drpd's RSS (``VmRSS``) and CPU (``utime + stime`` from
   ``/proc/<pid>/stat``) over a 10 s idle window with the 200 instances,
   against the same drpd before any instance existed (0 instances);
3. **actions under event load**: p99 (and p50) of ``POST
   /api/v3/system/actions/ping?plugin=<one>`` at concurrency 1 while 100
   websocket subscribers (trio-websocket, ``register *.*.*``) are connected
   and a publisher POSTs ``/api/v3/events`` at a steady rate, 20 and then
   50 events/s (2,000 and 5,000 deliveries/s; both in a child process,
   ``bench/ws_load.py``); baseline: the same calls with no subscribers and
   no events, in the same rounds. Two controls: the same load on a second
   drpd (what sharing two cores costs), and the same load here with the
   subscribers' process at ``SCHED_IDLE`` (clients on other machines: drpd
   still sends every frame, but the load's own CPU never takes a core
   anything else wants).

The measuring client is this process (trio; httpx). 127.0.0.1 and UNIX
sockets only; every loop is bounded and every process started here is
stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BENCH_DIR,
    RESULTS_DIR,
    Figure,
    Rounds,
    Sample,
    Series,  # noqa: E402
    basic_auth_header,
    client_factory,
    drive,
    expect,
    machine_info,
    print_table,
    run_main,  # noqa: E402
    write_results,
)
from bench.provider_kit import (  # noqa: E402
    BareRun,
    BareSite,
    api_client,
    check,
    create_plugin,
    git_state,
    provider_path,
    rss_kib,
    start_drpd,
    stop_drpd,
)
from drpd.testing import DrpdProcess  # noqa: E402

PROVIDER = "plain_provider"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    instances: int
    #: concurrent POST /plugins while filling up
    fill_workers: int
    #: drpd restarts timed (each with a bare-spawn baseline)
    restarts: int
    #: idle window for CPU, and the settle before it
    window: float
    settle: float
    #: rounds of (quiet, loaded) action runs, requests per run
    action_rounds: int
    action_requests: int
    subscribers: int
    #: events per second posted while the subscribers listen (one loaded run each)
    event_rates: tuple[float, ...]
    #: also spawn as many bare providers at once (the boot baseline); a
    #: growth run (--instances) compares with the usual run instead
    bare: bool = True


FULL = Sizes(instances=200, fill_workers=8, restarts=3, window=10.0, settle=3.0,
             action_rounds=3, action_requests=1000, subscribers=100, event_rates=(20.0, 50.0))
QUICK = Sizes(instances=20, fill_workers=4, restarts=1, window=2.0, settle=1.0,
              action_rounds=1, action_requests=100, subscribers=10, event_rates=(20.0,))





class Results:
    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.rounds: dict[str, Rounds] = {}
        self.info: dict[str, Any] = {}

    def add(self, name: str, value: float, unit: str) -> None:
        self.series.setdefault(name, Series(unit)).values.append(value)
        print(f"  {name}: {value:,.1f} {unit}", flush=True)

    def figure(self, name: str, value: str, baseline: str, baseline_name: str,
               note: str = "") -> Figure:
        v, b = self.series[value], self.series[baseline]
        paired = len(v.values) == len(b.values) > 1
        return Figure(name, v.median, v.unit, b.median, baseline_name, note,
                      value_rounds=v.values if paired else (),
                      baseline_rounds=b.values if paired else ())


# -- /proc ------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (seconds)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (trio spawns from worker threads)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out


async def idle_window(pid: int, seconds: float) -> tuple[float, float, float]:
    """(CPU % of one core, median VmRSS KiB, providers' CPU % in all) over ``seconds``."""
    kids = children_of(pid)
    kid_cpu0 = sum(_cpu_or_zero(k) for k in kids)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    rss = []
    while time.monotonic() - t0 < seconds:
        await trio.sleep(min(0.5, max(0.0, seconds - (time.monotonic() - t0))))
        value = rss_kib(pid)
        if value is None:
            raise RuntimeError(f"process {pid} is gone")
        rss.append(value)
    elapsed = time.monotonic() - t0
    cpu = (cpu_seconds(pid) - cpu0) / elapsed * 100
    kid_cpu = (sum(_cpu_or_zero(k) for k in kids) - kid_cpu0) / elapsed * 100
    return cpu, statistics.median(rss), kid_cpu


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


# -- boot ----------------------------------------------------------------------------------------
async def fill(api: httpx.AsyncClient, names: list[str], workers: int) -> None:
    send, receive = trio.open_memory_channel[str](0)

    async def worker(receive: trio.MemoryReceiveChannel[str]) -> None:
        async with receive:
            async for name in receive:
                await create_plugin(api, name, PROVIDER, {})

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker, receive.clone())
        await receive.aclose()
        async with send:
            for name in names:
                await send.send(name)


async def all_available(drpd: DrpdProcess, names: set[str], limit: float = 300.0) -> float:
    """perf_counter when every instance in ``names`` was seen available: the
    ``available`` events on the websocket joined with one ``GET /plugins``."""
    url = drpd.endpoint.replace("http://", "ws://", 1) + "/api/v3/ws"
    header = basic_auth_header(*drpd.auth)["Authorization"].encode()
    seen: set[str] = set()
    done = trio.Event()
    finished = [0.0]

    def saw(name: str) -> None:
        if name in names:
            seen.add(name)
            if len(seen) == len(names) and not done.is_set():
                finished[0] = time.perf_counter()
                done.set()

    with trio.fail_after(limit):
        async with open_websocket_url(url, extra_headers=[(b"Authorization", header)],
                                      connect_timeout=30, disconnect_timeout=2) as ws:
            await ws.send_message("register plugins.available.*")
            while True:
                frame = json.loads(await ws.get_message())
                if frame.get("Type") == "websocket":
                    if frame.get("Action") != "register":
                        raise RuntimeError(f"websocket refused the registration: {frame}")
                    break
                if frame.get("Type") == "plugins" and frame.get("Action") == "available":
                    saw(frame.get("Key", ""))

            async def receive() -> None:
                while True:
                    frame = json.loads(await ws.get_message())
                    if frame.get("Type") == "plugins" and frame.get("Action") == "available":
                        saw(frame.get("Key", ""))

            async with trio.open_nursery() as nursery, api_client(drpd) as api:
                nursery.start_soon(receive)
                for p in check(await api.get("/plugins"), 200):
                    if p["Available"]:
                        saw(p["Name"])
                await done.wait()
                nursery.cancel_scope.cancel()
    return finished[0]


async def timed_boot(drpd: DrpdProcess, names: set[str], results: Results) -> None:
    """Stop drpd, start it again on the same store; time start -> all Available."""
    results.add("drpd stop", await trio.to_thread.run_sync(stop_drpd, drpd), "s")
    drpd.endpoint = ""
    t0 = time.perf_counter()
    await trio.to_thread.run_sync(drpd.start)
    results.add("drpd start -> serving", time.perf_counter() - t0, "s")
    at = await all_available(drpd, names)
    results.add("drpd start -> all available", at - t0, "s")
    async with api_client(drpd) as api:
        plugins = check(await api.get("/plugins"), 200)
    down = [p["Name"] for p in plugins if p["Name"] in names and not p["Available"]]
    if down:
        raise RuntimeError(f"{len(down)} instances not available after boot: {down[:5]}")


async def bare_boot(site: BareSite, count: int, results: Results) -> None:
    """Spawn ``count`` bare providers at once: time to all READY!, and to all configured."""
    runs: list[BareRun] = []
    ready_at: list[float] = []
    config_at: list[float] = []
    t0 = time.perf_counter()

    # a thousand interpreters starting at once on two cores take minutes
    limit = max(30.0, count * 0.25)

    async def one(i: int) -> None:
        run = await site.spawn(provider_path(PROVIDER), limit=limit)
        runs.append(run)
        ready_at.append(time.perf_counter())
        await run.config({"Name": f"bare-{i}"}, limit=limit)
        config_at.append(time.perf_counter())

    try:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for run in runs:
                    nursery.start_soon(site.kill, run)
    results.add("bare spawn -> all READY!", max(ready_at) - t0, "s")
    results.add("bare spawn -> all configured", max(config_at) - t0, "s")


# -- actions under event load -----------------------------------------------------------------
class EventLoad:
    """``bench/ws_load.py`` in a child process: subscribers plus a publisher."""

    def __init__(self, drpd: DrpdProcess, subscribers: int, rate: float,
                 sched_idle: bool = False) -> None:
        self.cmd = [sys.executable, str(BENCH_DIR / "ws_load.py"), "--endpoint", drpd.endpoint,
                    "--user", drpd.auth[0], "--password", drpd.auth[1],
                    "--subscribers", str(subscribers), "--rate", str(rate),
                    "--max-seconds", "300"] + (["--sched-idle"] if sched_idle else [])
        self.proc: trio.Process | None = None
        self.lines: list[str] = []

    async def start(self, nursery: trio.Nursery, limit: float = 120.0) -> None:
        self.proc = await trio.lowlevel.open_process(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        nursery.start_soon(self._read)
        with trio.fail_after(limit):
            while "READY" not in self.lines:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"ws_load.py exited with {self.proc.returncode}")
                await trio.sleep(0.02)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        buffer = b""
        while chunk := await self.proc.stdout.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines += [line.decode().strip() for line in lines]

    async def stop(self, limit: float = 15.0) -> dict[str, Any]:
        """Close its stdin; it stops publishing and prints its counts."""
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.aclose()
        with trio.move_on_after(limit):
            await self.proc.wait()
        self.kill()
        await self.proc.wait()
        await trio.sleep(0.05)  # the reader takes the last line
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        raise RuntimeError(f"ws_load.py printed no counts (exit {self.proc.returncode})")

    def kill(self) -> None:
        """SIGKILL its process group (idempotent); the reader task then ends."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass


async def actions_round(drpd: DrpdProcess, plugin: str, sizes: Sizes, results: Results,
                        loads: list[dict[str, Any]], elsewhere: DrpdProcess) -> None:
    make = client_factory(drpd.endpoint, headers=basic_auth_header(*drpd.auth))
    path = f"/api/v3/system/actions/ping?plugin={plugin}"

    async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
        expect(await client.post(path, json={}), 200)

    kw: dict[str, Any] = {"concurrency": 1, "requests": sizes.action_requests, "warmup": 5,
                          "deadline": 300.0}
    cpu0, t0 = cpu_seconds(drpd.pid), time.monotonic()
    quiet = await drive(make, op, **kw)
    results.add("drpd CPU during quiet ping run",
                (cpu_seconds(drpd.pid) - cpu0) / (time.monotonic() - t0) * 100, "%")
    results.rounds.setdefault("quiet", Rounds("quiet")).add(quiet)
    results.add("ping p99, quiet", quiet.p99_ms, "ms")
    results.add("ping p50, quiet", quiet.p50_ms, "ms")

    async def under(load: EventLoad) -> tuple[Sample, float, dict[str, Any]]:
        """The ping run while ``load`` runs: its sample, drpd's CPU %, the load's counts."""
        async with trio.open_nursery() as nursery:
            try:
                await load.start(nursery)
                await trio.sleep(0.5)  # events flowing
                cpu0, t0 = cpu_seconds(drpd.pid), time.monotonic()
                sample = await drive(make, op, **kw)
                cpu = (cpu_seconds(drpd.pid) - cpu0) / (time.monotonic() - t0) * 100
                counts = await load.stop()
            finally:
                load.kill()
        if counts["published"] == 0 or not counts["delivered"]:
            raise RuntimeError(f"no events flowed: {counts}")
        return sample, cpu, counts

    for rate in sizes.event_rates:
        label = f"{rate:g}/s"
        # the same load on another drpd: what sharing two cores costs the
        # pings, with no fan-out on the loop that answers them
        apart, _, _ = await under(EventLoad(elsewhere, sizes.subscribers, rate))
        results.rounds.setdefault(f"apart {label}", Rounds(f"apart {label}")).add(apart)
        results.add(f"ping p99, events {label} on another drpd", apart.p99_ms, "ms")
        # the subscribers' process on idle cores only: clients on other
        # machines, whose CPU is not drpd's; drpd still sends every frame
        idle, _, _ = await under(EventLoad(drpd, sizes.subscribers, rate, sched_idle=True))
        results.rounds.setdefault(f"idle {label}", Rounds(f"idle {label}")).add(idle)
        results.add(f"ping p99, events {label}, subscribers SCHED_IDLE", idle.p99_ms, "ms")
        results.add(f"ping p50, events {label}, subscribers SCHED_IDLE", idle.p50_ms, "ms")
        loaded, drpd_cpu, counts = await under(EventLoad(drpd, sizes.subscribers, rate))
        results.rounds.setdefault(f"loaded {label}", Rounds(f"loaded {label}")).add(loaded)
        results.add(f"ping p99, events {label}", loaded.p99_ms, "ms")
        results.add(f"ping p50, events {label}", loaded.p50_ms, "ms")
        results.add(f"drpd CPU during ping run, events {label}", drpd_cpu, "%")
        loads.append({"rate": rate} | counts)
        print(f"  event load: {counts}", flush=True)


# -- the run ---------------------------------------------------------------------------------------
async def run_all(work: Path, sizes: Sizes, results: Results) -> None:
    names = [f"scale-{i:04d}" for i in range(sizes.instances)]
    drpd = await trio.to_thread.run_sync(start_drpd, work / "drpd", [PROVIDER], {})
    try:
        print(f"drpd {drpd.endpoint} (pid {drpd.pid}): idle window with 0 instances", flush=True)
        await trio.sleep(sizes.settle)
        cpu, rss, _ = await idle_window(drpd.pid, sizes.window)
        results.add("drpd idle CPU, 0 instances", cpu, "%")
        results.add("drpd RSS, 0 instances", rss / 1024, "MiB")
        print(f"creating {sizes.instances} instances", flush=True)
        t0 = time.perf_counter()
        async with api_client(drpd) as api:
            await fill(api, names, sizes.fill_workers)
        results.info["fill_s"] = round(time.perf_counter() - t0, 2)
        async with BareSite.open() as site:
            for r in range(sizes.restarts):
                print(f"boot round {r + 1}/{sizes.restarts}", flush=True)
                await timed_boot(drpd, set(names), results)
                if sizes.bare:
                    await bare_boot(site, sizes.instances, results)
        print(f"idle window with {sizes.instances} instances", flush=True)
        await trio.sleep(sizes.settle)
        cpu, rss, kids = await idle_window(drpd.pid, sizes.window)
        results.add(f"drpd idle CPU, {sizes.instances} instances", cpu, "%")
        results.add(f"drpd RSS, {sizes.instances} instances", rss / 1024, "MiB")
        results.add(f"providers' idle CPU in all, {sizes.instances} instances", kids, "%")
        results.info["drpd_fds"] = len(os.listdir(f"/proc/{drpd.pid}/fd"))
        loads: list[dict[str, Any]] = []
        elsewhere = await trio.to_thread.run_sync(start_drpd, work / "elsewhere", [], {})
        try:
            for r in range(sizes.action_rounds):
                print(f"action round {r + 1}/{sizes.action_rounds}", flush=True)
                await actions_round(drpd, names[0], sizes, results, loads, elsewhere)
                if drpd.proc is None or drpd.proc.poll() is not None:
                    raise RuntimeError(f"drpd exited:\n{drpd.log_text()[-2000:]}")
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(stop_drpd, elsewhere)
        results.info["event_load"] = loads
        async with api_client(drpd) as api:
            plugins = check(await api.get("/plugins"), 200)
        results.info["available_at_end"] = sum(1 for p in plugins if p["Available"])
        results.info["restarts_at_end"] = sum(p["Runtime"]["Restarts"] for p in plugins)
    finally:
        with trio.CancelScope(shield=True):
            results.info["final_stop_s"] = round(
                await trio.to_thread.run_sync(stop_drpd, drpd), 2)


def figures_from(results: Results, sizes: Sizes) -> list[Figure]:
    n = sizes.instances
    f = results.figure
    figs = [] if not sizes.bare else [
        f(f"boot: start -> {n} instances Available", "drpd start -> all available",
          "bare spawn -> all READY!", f"{n} bare plain_provider spawned at once -> all READY!",
          note="drpd restarted on a store holding the instances; ws events + GET /plugins"),
        f(f"boot: start -> {n} Available vs bare READY! + config", "drpd start -> all available",
          "bare spawn -> all configured", f"{n} bare spawns -> all READY! and configured")]
    figs += [
        f(f"drpd RSS with {n} instances", f"drpd RSS, {n} instances", "drpd RSS, 0 instances",
          "the same drpd with 0 instances"),
        f(f"drpd idle CPU with {n} instances", f"drpd idle CPU, {n} instances",
          "drpd idle CPU, 0 instances", "the same drpd with 0 instances",
          note=f"utime+stime over {sizes.window:g} s, % of one core"),
    ]
    for rate in sizes.event_rates:
        label = f"{rate:g}/s"
        figs.append(f(f"ping p99, {sizes.subscribers} ws subscribers + {label} events",
                      f"ping p99, events {label}", "ping p99, quiet",
                      "the same calls, no subscribers and no events",
                      note=f"POST /system/actions/ping?plugin=<one> c1; {label} POST /events "
                           f"fanned out to {sizes.subscribers} subscribers registered *.*.* "
                           f"({rate * sizes.subscribers:,.0f} deliveries/s)"))
        figs.append(f(f"ping p50, {sizes.subscribers} ws subscribers + {label} events",
                      f"ping p50, events {label}", "ping p50, quiet",
                      "the same calls, no subscribers and no events"))
        figs.append(f(f"ping p99, {label} events here vs the same load on another drpd",
                      f"ping p99, events {label}", f"ping p99, events {label} on another drpd",
                      "the same subscribers and events on a second drpd process",
                      note="the cost of the fan-out sharing drpd's event loop, beyond "
                           "sharing the machine's two cores"))
        figs.append(f(f"ping p99, {sizes.subscribers} SCHED_IDLE subscribers + {label} events",
                      f"ping p99, events {label}, subscribers SCHED_IDLE", "ping p99, quiet",
                      "the same calls, no subscribers and no events",
                      note="the subscribers' process (bench/ws_load.py) runs only on idle "
                           "cores, standing for clients on other machines: drpd still sends "
                           "every frame"))
        figs.append(f(f"ping p50, {sizes.subscribers} SCHED_IDLE subscribers + {label} events",
                      f"ping p50, events {label}, subscribers SCHED_IDLE", "ping p50, quiet",
                      "the same calls, no subscribers and no events"))
    return figs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/scale.json, "
                             "or scale-quick.json with --quick)")
    parser.add_argument("--instances", type=int, default=None,
                        help="another instance count (growth: 1000 next to the usual 200); "
                             "one boot, one action round; results in scale-<n>.json")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.instances is not None:
        sizes = replace(sizes, instances=args.instances, restarts=1, action_rounds=1, bare=False)
    default = ("scale-quick.json" if args.quick else "scale.json") if args.instances is None \
        else f"scale-{args.instances}.json"
    output = args.output or RESULTS_DIR / default
    work = Path(tempfile.mkdtemp(prefix="drpd-bench-scale-"))
    started = time.monotonic()
    meta = machine_info() | {"drpd_source": git_state()}
    results = Results()
    try:
        trio.run(run_all, work, sizes, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = figures_from(results, sizes)
    print()
    print_table(figures, title=(
        f"drpd at scale: {sizes.instances} instances of plain_provider; medians of "
        f"{sizes.restarts} boots and {sizes.action_rounds} action rounds.\nratio = drpd / "
        "baseline (of the medians); paired = median of per-round ratios."))
    print("\nall series (medians):")
    for name, s in results.series.items():
        print(f"  {name}: {s.median:,.2f} {s.unit}")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in results.info.items()))
    duration = time.monotonic() - started
    meta.update(duration_s=round(duration, 1), quick=args.quick)
    path = write_results(output, benchmark="scale", meta=meta, figures=figures,
                         settings=asdict(sizes) | {"provider": PROVIDER},
                         measurements={"series": {k: s.to_json()
                                                  for k, s in results.series.items()},
                                       "action_runs": {k: r.to_json()
                                                       for k, r in results.rounds.items()},
                                       "info": results.info})
    print(f"\nwrote {path} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
