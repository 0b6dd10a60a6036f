"""Benchmark: drpd's supervision of provider processes, against bare spawns.

    .venv/bin/python bench/supervise.py            # full run, about 75 s
    .venv/bin/python bench/supervise.py --quick    # CI smoke run, under 30 s

What is measured, in one run (every figure is the median of its rounds,
each drpd figure next to a baseline measured in the same rounds):

1. **update**: ``PATCH /api/v3/plugins/<name>`` of a Params change, which
   answers once the restarted instance is ``Available`` (the answer must
   show it with a new pid, and the old pid gone); for ``sdk_echo`` (drpd's
   SDK) and ``plain_provider`` (standard library only). Baselines, per
   round: a bare spawn of the same provider until it prints ``READY!``
   (``<provider> serve <plugin-sock> <server-sock>`` started here, with a
   ``drpd.http11.serve_unix`` stub on the server socket), and the bare
   floor of a restart: ``/stop`` the old bare process, wait for its exit,
   spawn, ``READY!``, ``config``;
2. **crash**: SIGKILL of the instance's pid to its replacement being
   ``Available`` (the ``available`` lifecycle event on drpd's websocket,
   with the new pid), with ``DRPD_HEALTHY_AFTER`` small and each run
   healthy before the next kill, so every kill is a "first crash" that
   restarts at once. Baselines: the bare spawn until ``READY!``, and the
   bare floor: SIGKILL a bare process, reap it, spawn, ``READY!``, ``config``;
3. **memory**: drpd's RSS (``VmRSS``) with 0, 50, 100 and 200 instances of
   ``plain_provider``: the slope in KiB per instance, against drpd's idle
   RSS; the providers' own RSS per instance against a bare
   ``plain_provider``'s; and a crash of one instance at 200 instances
   against the same at 1 (drpd's reaction: kill -> replacement spawned,
   and kill -> Available);
4. **start-up**: spawn to ``READY!`` of ``python3 -c 'print("READY!")'``
   against a minimal ``drpd.sdk`` provider, ``plain_provider`` and
   ``sdk_echo`` (interpreter, imports, sockets, READY!), rounds interleaved;
   also the minimal SDK provider with its bytecode cached under a private
   ``PYTHONPYCACHEPREFIX``: with ``PYTHONDONTWRITEBYTECODE`` set (as in this
   sandbox) the editable ``drpd/`` has no ``__pycache__``, so every SDK
   provider compiles drpd's modules as it starts.

Everything runs on this machine (127.0.0.1, UNIX sockets under /tmp);
every loop is bounded and every process started is ended in a ``finally``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
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
    MERGE_PATCH,
    MINIMAL_SDK_PROVIDER,
    BareRun,
    BareSite,
    LifecycleWatch,
    alive,
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

#: the two providers measured: (provider, params every instance needs)
PROVIDERS: dict[str, dict[str, Any]] = {
    "sdk_echo": {"echo/greeting": "hello"},
    "plain_provider": {},
}
#: the param changed by each update (not one the providers act on)
GEN_PARAM = "bench/gen"


@dataclass(frozen=True)
class Sizes:
    update_rounds: int
    crash_rounds: int
    startup_rounds: int
    #: instance counts at which drpd's RSS is measured (the first must be 0)
    mem_levels: tuple[int, ...]
    #: concurrent POST /plugins while filling up
    mem_workers: int
    #: crashes of one instance timed at 1 and at the largest level
    mem_crashes: int
    #: settle before drpd's RSS is sampled, and how many samples (0.1 s apart)
    mem_settle: float
    mem_samples: int
    #: DRPD_HEALTHY_AFTER for the crash drpd; each run lasts longer before its kill
    healthy_after: float


FULL = Sizes(update_rounds=11, crash_rounds=11, startup_rounds=15,
             mem_levels=(0, 50, 100, 200), mem_workers=8, mem_crashes=7, mem_settle=1.0,
             mem_samples=5, healthy_after=0.5)
QUICK = Sizes(update_rounds=2, crash_rounds=2, startup_rounds=2,
              mem_levels=(0, 5, 10, 20), mem_workers=4, mem_crashes=2, mem_settle=0.3,
              mem_samples=3, healthy_after=0.3)





class Results:
    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.figures: list[Figure] = []
        self.info: dict[str, Any] = {}

    def add(self, name: str, value: float, unit: str = "ms") -> None:
        self.series.setdefault(name, Series(unit)).values.append(value)

    def __getitem__(self, name: str) -> Series:
        return self.series[name]

    def figure(self, name: str, value: str, baseline: str, baseline_name: str,
               note: str = "") -> None:
        """A figure of two series measured round by round (paired)."""
        v, b = self.series[value], self.series[baseline]
        paired = len(v.values) == len(b.values)
        self.figures.append(Figure(name, v.median, v.unit, b.median, baseline_name, note,
                                   value_rounds=v.values if paired else (),
                                   baseline_rounds=b.values if paired else ()))


def ms(seconds: float) -> float:
    return seconds * 1e3


@asynccontextmanager
async def running_drpd(state: Path, providers: Sequence[str],
                       env: dict[str, str]) -> AsyncIterator[DrpdProcess]:
    drpd = await trio.to_thread.run_sync(start_drpd, state, providers, env)
    try:
        yield drpd
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop_drpd, drpd)


def check_drpd(drpd: DrpdProcess) -> None:
    if drpd.proc is None or drpd.proc.poll() is not None:
        raise RuntimeError(f"drpd exited during the run:\n{drpd.log_text()[-3000:]}")


async def provider_pid(api: httpx.AsyncClient, name: str) -> int:
    p = check(await api.get(f"/plugins/{name}"), 200)
    if not p["Available"]:
        raise RuntimeError(f"plugin {name} is not available: {p['Errors']}")
    return int(p["Runtime"]["Pid"])


# -- 1. update -----------------------------------------------------------------------------
async def bare_ready(site: BareSite, provider: str) -> float:
    """Spawn until READY!, then kill it (untimed); seconds to READY!."""
    run = await site.spawn(provider_path(provider))
    await site.kill(run)
    return run.ready_s


async def bare_restart(site: BareSite, old: BareRun, provider: str,
                       params: dict[str, Any]) -> tuple[float, float, BareRun]:
    """The floor of drpd's restart: /stop the old process, wait, spawn, READY!, config.

    Returns (seconds in all, seconds of the stop, the new run)."""
    t0 = time.perf_counter()
    stop = await site.stop(old)
    run = await site.spawn(provider_path(provider))
    await run.config(params)
    return time.perf_counter() - t0, stop, run


async def bare_crash_restart(site: BareSite, old: BareRun, provider: str,
                             params: dict[str, Any]) -> tuple[float, BareRun]:
    """The floor of a crash restart: SIGKILL, reap, spawn, READY!, config."""
    t0 = time.perf_counter()
    os.kill(old.pid, signal.SIGKILL)
    await site.kill(old)  # reaps it
    run = await site.spawn(provider_path(provider))
    await run.config(params)
    return time.perf_counter() - t0, run


async def measure_updates(drpd: DrpdProcess, site: BareSite, sizes: Sizes,
                          results: Results) -> None:
    async with api_client(drpd) as api:
        watch = LifecycleWatch(drpd, api)
        names = {provider: f"upd-{provider}" for provider in PROVIDERS}
        async with watch.open(list(names.values())):
            results.info["update_watch"] = watch.mode
            machine = check(await api.post("/machines", json={"Name": "bench-upd"}), 201)
            for provider, base in PROVIDERS.items():
                name = names[provider]
                params = {**base, GEN_PARAM: 0}
                created = await create_plugin(api, name, provider, params)
                pid = int(created["Runtime"]["Pid"])
                bare = await site.spawn(provider_path(provider))
                await bare.config({**params, "Name": "bare"})
                for gen in range(1, sizes.update_rounds + 1):
                    watch.clear()
                    t0 = time.perf_counter()
                    r = await api.patch(f"/plugins/{name}", json={"Params": {GEN_PARAM: gen}},
                                        headers=MERGE_PATCH)
                    elapsed = time.perf_counter() - t0
                    p = check(r, 200)
                    new_pid = int(p["Runtime"]["Pid"])
                    if not p["Available"] or new_pid in (0, pid) or alive(pid):
                        raise RuntimeError(f"update of {name} did not restart it: {p}")
                    results.add(f"update {provider}", ms(elapsed))
                    if watch.mode == "websocket":
                        # where the time went: old stopped -> new started -> available
                        stopped = await watch.wait_event(name, "restarted")
                        started = await watch.wait_event(name, "started")
                        available = await watch.wait_event(name, "available")
                        results.add(f"update {provider}: stop phase", ms(stopped.at - t0))
                        results.add(f"update {provider}: start phase",
                                    ms(available.at - started.at))
                    pid = new_pid
                    results.add(f"bare ready {provider} (update rounds)",
                                ms(await bare_ready(site, provider)))
                    floor, stop, bare = await bare_restart(
                        site, bare, provider, {**params, GEN_PARAM: gen, "Name": "bare"})
                    results.add(f"bare restart {provider}", ms(floor))
                    results.add(f"bare restart {provider}: stop phase", ms(stop))
                await site.stop(bare)
                if provider == "sdk_echo":  # the new process got the new config
                    echoed = check(await api.post(
                        f"/machines/{machine['Uuid']}/actions/echo?plugin={name}", json={}), 200)
                    if echoed["Config"].get(GEN_PARAM) != sizes.update_rounds:
                        raise RuntimeError(f"{name} runs with an old config: {echoed['Config']}")
                final = check(await api.get(f"/plugins/{name}"), 200)
                results.info[f"update {provider}"] = {
                    "restarts": final["Runtime"]["Restarts"], "pid": final["Runtime"]["Pid"],
                    "plugin_errors": len(final["PluginErrors"])}
                check(await api.delete(f"/plugins/{name}"), 200)
                check_drpd(drpd)
    for provider in PROVIDERS:
        results.figure(f"update -> Available, {provider}", f"update {provider}",
                       f"bare ready {provider} (update rounds)",
                       f"bare spawn until READY! of {provider}",
                       note="PATCH of a Params change, answered once Available")
        results.figure(f"update -> Available vs bare restart, {provider}", f"update {provider}",
                       f"bare restart {provider}",
                       f"bare /stop + exit + spawn + READY! + config of {provider}")


# -- 2. crash ---------------------------------------------------------------------------
@dataclass
class Crash:
    """One SIGKILL of an instance's provider; seconds from the kill."""

    pid: int  # the replacement's
    at: float  # perf_counter when it was seen available
    available: float
    started: float | None  # the replacement spawned ('started' event)
    crashed: float | None  # drpd noticed ('crashed' event)


async def crash_once(watch: LifecycleWatch, name: str, pid: int, available_at: float,
                     healthy_after: float) -> Crash:
    """Wait until the run counts as healthy (so this is a first crash), SIGKILL
    ``pid``, and wait for the replacement to be available."""
    await trio.sleep(max(0.0, available_at + healthy_after + 0.15 - time.perf_counter()))
    watch.clear()
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    at, new_pid = await watch.wait_available(name, pid)
    started = crashed = None
    if watch.mode == "websocket":
        started = (await watch.wait_event(name, "started")).at - t0
        crashed = (await watch.wait_event(name, "crashed")).at - t0
    return Crash(new_pid, at, at - t0, started, crashed)


async def measure_crashes(drpd: DrpdProcess, site: BareSite, sizes: Sizes,
                          results: Results, backoff_initial: float) -> None:
    async with api_client(drpd) as api:
        watch = LifecycleWatch(drpd, api)
        names = {provider: f"crash-{provider}" for provider in PROVIDERS}
        async with watch.open(list(names.values())):
            results.info["crash_watch"] = watch.mode
            if watch.mode != "websocket":
                results.info["crash_watch_error"] = watch.error
            for provider, params in PROVIDERS.items():
                name = names[provider]
                created = await create_plugin(api, name, provider, params)
                pid = int(created["Runtime"]["Pid"])
                available_at = time.perf_counter()
                bare = await site.spawn(provider_path(provider))
                await bare.config({**params, "Name": "bare"})
                backed_off = 0
                for _ in range(sizes.crash_rounds):
                    crash = await crash_once(watch, name, pid, available_at, sizes.healthy_after)
                    results.add(f"crash {provider}", ms(crash.available))
                    if crash.started is not None and crash.crashed is not None:
                        results.add(f"crash {provider}: kill -> crashed event", ms(crash.crashed))
                        results.add(f"crash {provider}: kill -> started", ms(crash.started))
                        results.add(f"crash {provider}: started -> available",
                                    ms(crash.available - crash.started))
                        if crash.started > backoff_initial / 2:
                            backed_off += 1
                    pid, available_at = crash.pid, crash.at
                    if await provider_pid(api, name) != pid:
                        raise RuntimeError(f"{name}: GET disagrees with the available event")
                    results.add(f"bare ready {provider} (crash rounds)",
                                ms(await bare_ready(site, provider)))
                    floor, bare = await bare_crash_restart(site, bare, provider,
                                                           {**params, "Name": "bare"})
                    results.add(f"bare kill+respawn {provider}", ms(floor))
                await site.kill(bare)
                final = check(await api.get(f"/plugins/{name}"), 200)
                results.info[f"crash {provider}"] = {
                    "restarts": final["Runtime"]["Restarts"],
                    "plugin_errors": len(final["PluginErrors"]),
                    "rounds_that_backed_off": backed_off}
                check(await api.delete(f"/plugins/{name}"), 200)
                check_drpd(drpd)
    for provider in PROVIDERS:
        results.figure(f"crash -> Available, {provider}", f"crash {provider}",
                       f"bare ready {provider} (crash rounds)",
                       f"bare spawn until READY! of {provider}",
                       note="SIGKILL to the 'available' event with the new pid (first crash)")
        results.figure(f"crash -> Available vs bare respawn, {provider}", f"crash {provider}",
                       f"bare kill+respawn {provider}",
                       f"bare SIGKILL + reap + spawn + READY! + config of {provider}")


# -- 3. memory ----------------------------------------------------------------------------
async def sample_rss(pid: int, sizes: Sizes, pause: float = 0.1) -> float:
    """Median VmRSS (KiB) of a few samples, after a short settle."""
    await trio.sleep(sizes.mem_settle)
    values = []
    for _ in range(sizes.mem_samples):
        value = rss_kib(pid)
        if value is None:
            raise RuntimeError(f"process {pid} is gone")
        values.append(value)
        await trio.sleep(pause)
    return statistics.median(values)


async def fill(api: httpx.AsyncClient, names: list[str], workers: int) -> None:
    send, receive = trio.open_memory_channel[str](0)

    async def worker(receive: trio.MemoryReceiveChannel[str]) -> None:
        async with receive:
            async for name in receive:
                await create_plugin(api, name, "plain_provider", {})

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker, receive.clone())
        await receive.aclose()
        async with send:
            for name in names:
                await send.send(name)


async def probe_crashes(watch: LifecycleWatch, api: httpx.AsyncClient, name: str,
                        sizes: Sizes, results: Results, label: str) -> None:
    """SIGKILL the probe instance a few times: drpd's own reaction time
    (kill -> the replacement spawned) and the whole crash -> Available."""
    pid = await provider_pid(api, name)
    available_at = time.perf_counter()
    for _ in range(sizes.mem_crashes):
        crash = await crash_once(watch, name, pid, available_at, sizes.healthy_after)
        results.add(f"crash at {label}", ms(crash.available))
        if crash.started is not None:
            results.add(f"crash at {label}: kill -> started", ms(crash.started))
        pid, available_at = crash.pid, crash.at


async def measure_memory(work: Path, site: BareSite, sizes: Sizes, results: Results) -> None:
    # the baseline provider: a bare plain_provider, configured
    bare = await site.spawn(provider_path("plain_provider"))
    await bare.config({"Name": "bare"})
    await trio.sleep(sizes.mem_settle)
    bare_rss = rss_kib(bare.pid) or math.nan
    await site.kill(bare)
    levels = sizes.mem_levels
    assert levels[0] == 0
    top = levels[-1]
    rss: dict[int, float] = {}
    provider_rss: dict[int, float] = {}
    names = [f"mem-{i:04d}" for i in range(top)]
    env = {"DRPD_HEALTHY_AFTER": str(sizes.healthy_after), "DRPD_BACKOFF_INITIAL": "2"}
    async with running_drpd(work / "drpd-mem", ["plain_provider"], env) as drpd:
        async with api_client(drpd) as api:
            watch = LifecycleWatch(drpd, api)
            async with watch.open([names[0]]):
                rss[0] = await sample_rss(drpd.pid, sizes)
                results.info["drpd fds, threads at 0"] = [_count_fds(drpd.pid),
                                                          _vm_field(drpd.pid, "Threads")]
                await fill(api, names[:1], 1)
                await probe_crashes(watch, api, names[0], sizes, results, "1 instance")
                created = 1
                for level in levels[1:]:
                    t0 = time.perf_counter()
                    await fill(api, names[created:level], sizes.mem_workers)
                    results.info[f"fill {created}->{level} s"] = round(time.perf_counter() - t0, 2)
                    created = level
                    check_drpd(drpd)
                    rss[level] = await sample_rss(drpd.pid, sizes)
                    plugins = check(await api.get("/plugins"), 200)
                    pids = [p["Runtime"]["Pid"] for p in plugins if p["Available"]]
                    if len(pids) != level:
                        raise RuntimeError(f"{len(pids)} of {level} instances available")
                    provider_rss[level] = sum(rss_kib(pid) or 0 for pid in pids) / level
                    results.info[f"drpd fds, threads at {level}"] = [
                        _count_fds(drpd.pid), _vm_field(drpd.pid, "Threads")]
                t0 = time.perf_counter()
                check(await api.get("/plugins"), 200)
                results.info[f"GET /plugins at {top} instances ms"] = round(
                    ms(time.perf_counter() - t0), 1)
                await probe_crashes(watch, api, names[0], sizes, results, f"{top} instances")
                results.info["drpd VmHWM KiB"] = _vm_field(drpd.pid, "VmHWM")
        results.info[f"drpd shutdown with {top} instances s"] = round(
            await trio.to_thread.run_sync(stop_drpd, drpd), 2)
    xs = list(rss)
    slope = _slope(xs, [rss[x] for x in xs])
    results.info["drpd RSS KiB by instances"] = {str(k): v for k, v in rss.items()}
    results.info["provider RSS KiB per instance by instances"] = {
        str(k): round(v) for k, v in provider_rss.items()}
    results.add("drpd RSS slope", slope, "KiB/instance")
    results.add("drpd idle RSS", rss[0], "KiB")
    results.add(f"drpd RSS at {top}", rss[top], "KiB")
    results.add("provider RSS per instance", provider_rss[top], "KiB")
    results.add("bare plain_provider RSS", bare_rss, "KiB")
    results.figure(f"drpd RSS per instance (slope 0..{top})", "drpd RSS slope", "drpd idle RSS",
                   "drpd idle RSS (0 instances)",
                   note=f"least-squares slope of drpd's VmRSS at {list(levels)} instances of "
                        "plain_provider; ratio = slope as a fraction of idle RSS")
    results.figure(f"drpd RSS at {top} instances", f"drpd RSS at {top}", "drpd idle RSS",
                   "drpd idle RSS (0 instances)")
    results.figure(f"provider RSS per instance at {top} (info)", "provider RSS per instance",
                   "bare plain_provider RSS", "a bare plain_provider after config")
    results.figure(f"crash: kill -> respawn at {top} instances",
                   f"crash at {top} instances: kill -> started",
                   "crash at 1 instance: kill -> started", "the same at 1 instance",
                   note="drpd's own reaction to a crash (reap, clean up, spawn), plain_provider")
    results.figure(f"crash -> Available at {top} instances", f"crash at {top} instances",
                   "crash at 1 instance", "the same at 1 instance")


def _vm_field(pid: int, name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _count_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else math.nan


# -- 4. start-up ---------------------------------------------------------------------------
async def measure_startup(site: BareSite, sizes: Sizes, results: Results) -> None:
    minimal = site.root / "bench_minimal"
    minimal.write_text(MINIMAL_SDK_PROVIDER)
    minimal.chmod(0o755)
    python = [os.path.join(os.path.dirname(sys.executable), "python3"), "-c",
              'print("READY!")']
    # drpd's own modules have no __pycache__ when PYTHONDONTWRITEBYTECODE is set (as
    # here): every SDK provider then compiles drpd.sdk & co. at start. The "pyc"
    # variant caches bytecode under a private prefix (warmed by its first, dropped, run).
    pyc = {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": str(site.root / "pyc")}
    kinds: dict[str, tuple[Path | None, dict[str, str | None] | None]] = {
        "python -c": (None, None), "minimal sdk": (minimal, None),
        "minimal sdk, pyc cached": (minimal, pyc),
        "plain_provider": (provider_path("plain_provider"), None),
        "sdk_echo": (provider_path("sdk_echo"), None)}
    await site.kill(await site.spawn(minimal, env=pyc))  # writes the bytecode cache
    for _ in range(sizes.startup_rounds):
        for kind, (binary, env) in kinds.items():
            if binary is None:
                run = await site.spawn_argv(python)
            else:
                run = await site.spawn(binary, env=env)
                await site.kill(run)
                results.add(f"startup rss {kind}", (run.rss_at_ready or math.nan) / 1024, "MiB")
            results.add(f"startup {kind}", ms(run.ready_s))
    results.info["PYTHONDONTWRITEBYTECODE"] = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
    base = "python3 -c 'print(\"READY!\")' (spawn to its line)"
    results.figure("start-up to READY!, minimal drpd.sdk provider", "startup minimal sdk",
                   "startup python -c", base)
    results.figure("start-up to READY!, plain_provider (stdlib)", "startup plain_provider",
                   "startup python -c", base)
    results.figure("start-up to READY!, sdk_echo", "startup sdk_echo", "startup python -c", base)
    results.figure("start-up to READY!, minimal drpd.sdk vs plain_provider",
                   "startup minimal sdk", "startup plain_provider", "plain_provider (stdlib)")
    results.figure("start-up to READY!, minimal drpd.sdk, bytecode cached vs not",
                   "startup minimal sdk, pyc cached", "startup minimal sdk",
                   "the same without cached bytecode (PYTHONDONTWRITEBYTECODE)")
    results.figure("RSS at READY!, minimal drpd.sdk provider", "startup rss minimal sdk",
                   "startup rss plain_provider", "plain_provider (stdlib) at READY!")


# -- main ------------------------------------------------------------------------------------
async def run_all(work: Path, sizes: Sizes, results: Results) -> None:
    env = {"DRPD_HEALTHY_AFTER": str(sizes.healthy_after), "DRPD_BACKOFF_INITIAL": "2"}
    async with BareSite.open() as site:
        async with running_drpd(work / "drpd", list(PROVIDERS), env) as drpd:
            print(f"drpd {drpd.endpoint}: updates", flush=True)
            await measure_updates(drpd, site, sizes, results)
            print("crashes", flush=True)
            await measure_crashes(drpd, site, sizes, results, backoff_initial=2.0)
        print("start-up", flush=True)
        await measure_startup(site, sizes, results)
        print(f"memory: {list(sizes.mem_levels)} instances", flush=True)
        await measure_memory(work, site, sizes, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/supervise.json, "
                             "or supervise-quick.json with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("supervise-quick.json" if args.quick
                                           else "supervise.json")
    work = Path(tempfile.mkdtemp(prefix="drpd-bench-supervise-"))
    started = time.monotonic()
    meta = machine_info() | {"drpd_source": git_state()}
    results = Results()
    try:
        trio.run(run_all, work, sizes, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(results.figures, title=(
        f"drpd supervision benchmark, medians of rounds ({sizes.update_rounds} updates, "
        f"{sizes.crash_rounds} crashes, {sizes.startup_rounds} start-ups per provider).\n"
        "ratio = drpd / baseline (of the medians); paired = median of per-round ratios."))
    breakdown = [name for name in results.series if ":" in name]
    if breakdown:
        print("\nwhere the time goes (medians, ms):")
        for name in breakdown:
            print(f"  {name}: {results.series[name].median:.1f}")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in results.info.items()))
    duration = time.monotonic() - started
    meta.update(duration_s=round(duration, 1), quick=args.quick)
    path = write_results(output, benchmark="supervise", meta=meta, figures=results.figures,
                         settings=asdict(sizes) | {"providers": list(PROVIDERS),
                                                   "backoff_initial": 2.0},
                         measurements={"series": {k: s.to_json()
                                                  for k, s in results.series.items()},
                                       "info": results.info})
    print(f"\nwrote {path} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
