"""Benchmark: drpd's two hops beside their floors (the stack's limits).

    .venv/bin/python bench/limits.py            # full run, about 70 s
    .venv/bin/python bench/limits.py --quick    # CI smoke run, under 30 s

Every action crosses two hops, and each is measured here next to the least
the stack can do for it, at 1 and 32 concurrent clients (one kept-alive
connection per client), p50, p99 and requests/s, medians of rounds whose
phases are interleaved:

- **provider hop** (drpd -> provider, HTTP/1.1 on a UNIX socket): POST of a
  small Action JSON (about 100 bytes) answered with the same bytes.
  *Floor*: ``RawClient`` -> ``raw`` server of ``bench/h11_floor.py``: trio
  and h11 with nothing else on either side (the server its own process).
  *drpd*: ``drpd.http11.UnixHTTPClient`` (one per client,
  ``max_connections=1``) -> ``drpd.http11.serve_unix`` with an echo handler
  (its own process). The mixed pairs split drpd's cost between client and
  server. Also: ``UnixHTTPClient`` -> ``plain_provider`` (the stdlib test
  provider, ``ping``), and at 32 clients one shared ``UnixHTTPClient`` with
  the pool drpd's supervisor gives each instance (``max_connections`` =
  ``action_concurrency`` 128, ``max_idle`` 32);
- **API hop** (client -> drpd's REST API, plain HTTP): ``GET /api/v3/info``
  (Basic auth, authenticated route) and ``GET /api/v3/healthz`` (no auth) of
  a real ``drpd serve --no-tls`` with no instances. *Floor*: ``GET /get`` of
  ``bench/bare_quart.py`` (a quart-trio route returning a constant on
  hypercorn, its own process). Both driven by one kept-alive
  ``httpx.AsyncClient`` per client, from this process.

The clients run in this process (trio), the servers in their own; all share
the machine's cores. 127.0.0.1 and UNIX sockets only; every loop is a fixed
number of requests under a deadline; every process is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BENCH_DIR,
    RESULTS_DIR,
    BareQuart,
    Figure,
    Op,
    Rounds,
    Sample,
    basic_auth_header,
    client_factory,
    drive,
    expect,
    machine_info,
    print_table,
    run_main,  # noqa: E402
    stop_process,
    write_results,
)
from bench.h11_floor import RawClient  # noqa: E402
from bench.provider_kit import (  # noqa: E402
    ACTION_PATH,
    BareSite,
    drive_unix,
    git_state,
    provider_path,
    short_tmpdir,
    start_drpd,
    stop_drpd,
)
from drpd.config import Settings  # noqa: E402
from drpd.http11 import UnixHTTPClient  # noqa: E402
from drpd.testing import DrpdProcess  # noqa: E402

CONCURRENCIES = (1, 32)
_LIMIT = Settings().action_concurrency
#: drpd's per-instance pool, as drpd/plugins/supervisor.py builds it (keep in step)
DRPD_POOL = {"max_connections": _LIMIT, "max_idle": min(_LIMIT, 32)}
#: what drpd posts to plain_provider for ``ping`` (about 100 bytes)
ACTION = json.dumps({"Model": None, "Plugin": "ping1", "Command": "ping",
                     "CommandSet": "plain_provider", "Params": {}}).encode()


@dataclass(frozen=True)
class Sizes:
    rounds: int
    unix_c1: int
    unix_c32: int
    api_c1: int
    api_c32: int
    warmup: int

    def unix(self, c: int) -> int:
        return self.unix_c1 if c == 1 else self.unix_c32

    def api(self, c: int) -> int:
        return self.api_c1 if c == 1 else self.api_c32


FULL = Sizes(rounds=5, unix_c1=2000, unix_c32=6400, api_c1=400, api_c32=1280, warmup=5)
QUICK = Sizes(rounds=2, unix_c1=200, unix_c32=640, api_c1=50, api_c32=160, warmup=2)


class FloorServer:
    """``bench/h11_floor.py <mode> <path>`` in a child process."""

    def __init__(self, mode: str, path: str) -> None:
        self.mode, self.path = mode, path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, limit: float = 20.0) -> FloorServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "h11_floor.py"), self.mode, self.path],
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + limit
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"h11_floor.py {self.mode} exited with {self.proc.returncode}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.path)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"h11_floor.py {self.mode} did not listen") from None
                time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> FloorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def drive_raw(path: str, body: bytes, *, concurrency: int, requests: int, warmup: int,
                    deadline: float = 120.0) -> Sample:
    """``drive_unix`` with the minimal ``RawClient``: one per worker."""
    per_worker = [requests // concurrency + (1 if w < requests % concurrency else 0)
                  for w in range(concurrency)]
    clients = [RawClient(path) for _ in range(concurrency)]
    latencies: list[float] = []
    clock = time.perf_counter

    async def op(client: RawClient) -> None:
        status, answer = await client.post(ACTION_PATH, body)
        if status != 200 or len(answer) != len(body):
            raise RuntimeError(f"raw server answered {status}: {answer[:200]!r}")

    try:
        with trio.fail_after(deadline):
            async with trio.open_nursery() as nursery:
                for w in range(concurrency):
                    async def warm(c: RawClient = clients[w]) -> None:
                        for _ in range(warmup):
                            await op(c)
                    nursery.start_soon(warm)

            async def work(w: int) -> None:
                client = clients[w]
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


def unix_client(path: str, **pool: int) -> Callable[[], UnixHTTPClient]:
    def make() -> UnixHTTPClient:
        return UnixHTTPClient(path, **(pool or {"max_connections": 1, "max_idle": 1}))
    return make


def get_op(path: str) -> Op:
    async def op(client: httpx.AsyncClient, worker: int, i: int) -> None:
        expect(await client.get(path), 200)
    return op


class Results:
    def __init__(self) -> None:
        self.rounds: dict[str, Rounds] = {}

    def add(self, name: str, sample: Sample) -> None:
        self.rounds.setdefault(name, Rounds(name)).add(sample)

    def __getitem__(self, name: str) -> Rounds:
        return self.rounds[name]


@dataclass
class Targets:
    raw_sock: str
    drpd_sock: str
    plain_sock: str
    drpd_endpoint: str
    bare_endpoint: str
    headers: dict[str, str]


async def run_round(t: Targets, sizes: Sizes, results: Results) -> None:
    for c in CONCURRENCIES:
        kw: dict[str, Any] = {"concurrency": c, "requests": sizes.unix(c),
                              "warmup": sizes.warmup}
        results.add(f"raw->raw c{c}", await drive_raw(t.raw_sock, ACTION, **kw))
        results.add(f"drpd->drpd c{c}", await drive_unix(unix_client(t.drpd_sock), ACTION, **kw))
        results.add(f"raw->drpd c{c}", await drive_raw(t.drpd_sock, ACTION, **kw))
        results.add(f"drpd->raw c{c}", await drive_unix(unix_client(t.raw_sock), ACTION, **kw))
        results.add(f"drpd->plain c{c}", await drive_unix(unix_client(t.plain_sock), ACTION,
                                                          **kw))
        if c > 1:
            results.add(f"drpd pool->drpd c{c}", await drive_unix(
                unix_client(t.drpd_sock, **DRPD_POOL), ACTION, shared=True, **kw))
    drpd_client = client_factory(t.drpd_endpoint, headers=t.headers)
    bare_client = client_factory(t.bare_endpoint, headers=t.headers)
    for c in CONCURRENCIES:
        kw = {"concurrency": c, "requests": sizes.api(c), "warmup": sizes.warmup,
              "deadline": 120.0}
        results.add(f"bare GET c{c}", await drive(bare_client, get_op("/get"), **kw))
        results.add(f"drpd info c{c}", await drive(drpd_client, get_op("/api/v3/info"), **kw))
        results.add(f"drpd healthz c{c}", await drive(drpd_client, get_op("/api/v3/healthz"),
                                                      **kw))


def figures_from(results: Results) -> list[Figure]:
    figs: list[Figure] = []
    attrs = {"rate": ("req/s", "throughput"), "p50_ms": ("ms", "p50"), "p99_ms": ("ms", "p99")}

    def fig(name: str, value: str, base: str, base_label: str, attr: str, note: str = "") -> None:
        v, b = results[value], results[base]
        unit, what = attrs[attr]
        figs.append(Figure(f"{name} {what}", getattr(v, attr), unit, getattr(b, attr),
                           base_label, note, value_rounds=v.per_round(attr),
                           baseline_rounds=b.per_round(attr)))

    for c in CONCURRENCIES:
        floor = f"raw h11 client -> raw h11 server c{c}"
        for attr in attrs:
            fig(f"provider hop c{c}: drpd.http11 both sides", f"drpd->drpd c{c}",
                f"raw->raw c{c}", floor, attr,
                note="UnixHTTPClient -> serve_unix (echo), small JSON POST")
        for attr in ("p50_ms", "rate"):
            fig(f"provider hop c{c}: UnixHTTPClient alone", f"drpd->raw c{c}", f"raw->raw c{c}",
                floor, attr, note="drpd's client against the raw server")
            fig(f"provider hop c{c}: serve_unix alone", f"raw->drpd c{c}", f"raw->raw c{c}",
                floor, attr, note="the raw client against drpd's server")
            fig(f"provider hop c{c}: UnixHTTPClient -> plain_provider", f"drpd->plain c{c}",
                f"raw->raw c{c}", floor, attr,
                note="the stdlib test provider (threaded http.server), ping")
        if c > 1:
            for attr in ("p50_ms", "rate"):
                fig(f"provider hop c{c}: drpd's shared pool -> serve_unix",
                    f"drpd pool->drpd c{c}", f"drpd->drpd c{c}",
                    f"one UnixHTTPClient per client c{c}", attr,
                    note=f"one UnixHTTPClient(max_connections={DRPD_POOL['max_connections']}, "
                         f"max_idle={DRPD_POOL['max_idle']}) for all clients, as drpd's "
                         "supervisor has per instance")
    for c in CONCURRENCIES:
        base = f"bare quart-trio GET c{c}"
        for attr in attrs:
            fig(f"API hop c{c}: GET /api/v3/info", f"drpd info c{c}", f"bare GET c{c}", base,
                attr, note="authenticated (Basic), plain HTTP")
        for attr in ("p50_ms", "rate"):
            fig(f"API hop c{c}: GET /api/v3/healthz", f"drpd healthz c{c}", f"bare GET c{c}",
                base, attr, note="no authentication")
    return figs


@dataclass
class Servers:
    raw: FloorServer
    served: FloorServer
    bare: BareQuart
    drpd: DrpdProcess

    def check(self) -> None:
        for ok, what in ((self.raw.alive(), "raw server"), (self.served.alive(), "serve_unix"),
                         (self.bare.proc is not None and self.bare.proc.poll() is None,
                          "bare_quart.py"),
                         (self.drpd.proc is not None and self.drpd.proc.poll() is None, "drpd")):
            if not ok:
                raise RuntimeError(f"{what} exited during the run")


async def run_all(servers: Servers, sizes: Sizes, results: Results) -> None:
    async with BareSite.open() as site:
        plain = await site.spawn(provider_path("plain_provider"))
        await plain.config({"Name": "ping1"})
        answer = json.loads(await plain.action(ACTION))
        if answer.get("Pong") is not True:
            raise RuntimeError(f"unexpected ping answer: {answer}")
        drpd = servers.drpd
        targets = Targets(servers.raw.path, servers.served.path, plain.plugin_sock,
                          drpd.endpoint, servers.bare.endpoint, basic_auth_header(*drpd.auth))
        for r in range(sizes.rounds):
            print(f"round {r + 1}/{sizes.rounds}", flush=True)
            await run_round(targets, sizes, results)
            servers.check()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/limits.json, "
                             "or limits-quick.json with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("limits-quick.json" if args.quick else "limits.json")
    work = Path(tempfile.mkdtemp(prefix="drpd-bench-limits-"))
    started = time.monotonic()
    meta = machine_info() | {"drpd_source": git_state()}
    results = Results()
    root = short_tmpdir("drpdl-")
    try:
        with ExitStack() as stack:
            servers = Servers(
                raw=stack.enter_context(FloorServer("raw", str(root / "raw.sock"))),
                served=stack.enter_context(FloorServer("drpd", str(root / "drpd.sock"))),
                bare=stack.enter_context(BareQuart()),
                drpd=start_drpd(work / "drpd", [], {}))
            stack.callback(stop_drpd, servers.drpd)
            trio.run(run_all, servers, sizes, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    figures = figures_from(results)
    print()
    print_table(figures, title=(
        f"drpd's hops beside their floors, medians of {sizes.rounds} rounds. ratio = drpd / "
        "floor (of the medians); paired = median of per-round ratios.\nprovider hop: "
        f"{sizes.unix_c1} requests at c1, {sizes.unix_c32} at c32; API hop: {sizes.api_c1} at c1, "
        f"{sizes.api_c32} at c32."))
    duration = time.monotonic() - started
    meta.update(duration_s=round(duration, 1), quick=args.quick, client=(
        "this process (trio): one kept-alive connection per concurrent client; "
        "servers in their own processes on UNIX sockets / 127.0.0.1"))
    settings = asdict(sizes) | {"action_bytes": len(ACTION), "concurrencies": list(CONCURRENCIES),
                                       "drpd_pool": DRPD_POOL}
    path = write_results(output, benchmark="limits", meta=meta, figures=figures,
                         settings=settings,
                         measurements={n: r.to_json() for n, r in results.rounds.items()})
    print(f"\nwrote {path} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
