"""Benchmark: provider actions through drpd (REST -> drpd -> provider -> back).

    .venv/bin/python bench/actions.py            # full run, about 35 s
    .venv/bin/python bench/actions.py --quick    # CI smoke run, under 30 s

What is measured, in one run, at 1 and at 32 concurrent clients (every
figure is the median of ``rounds``; the phases of a round are interleaved
so drift hits drpd and its baselines alike):

- drpd (a real ``drpd serve --no-tls``): ``POST
  /api/v3/machines/<uuid>/actions/echo`` answered by ``sdk_echo`` (drpd's
  SDK), and ``POST /api/v3/system/actions/ping`` answered by
  ``plain_provider`` (standard library only); p50, p99 and throughput;
- baseline A: ``bench/bare_quart.py`` (a quart-trio route reading the same
  JSON body and returning a constant, on hypercorn, its own process), the
  floor of drpd's REST hop;
- baseline B: the same provider executable started here with ``serve``
  (no drpd: a ``drpd.http11.serve_unix`` stub answers its server socket),
  configured, then ``POST /api-plugin/v4/action`` straight to its UNIX
  socket with ``drpd.http11.UnixHTTPClient``, carrying the ``Action`` drpd
  would send (the machine's JSON as ``Model``): the floor of the provider
  hop. One kept-alive connection per worker, as the HTTP clients have;
- diagnostic: the same direct calls at 32 workers through one shared
  ``UnixHTTPClient`` with the pool drpd's supervisor gives each instance
  (``max_connections`` = action_concurrency 128, ``max_idle`` 4);
- the floor of the whole path at concurrency 1: baseline A's p50 plus
  baseline B's p50, measured in the same round.

The client is this process (trio; httpx for HTTP, one kept-alive client
per worker). Client, drpd and providers share the machine's cores, so the
ratios matter more than the absolute figures. 127.0.0.1 and UNIX sockets
only; every loop is a fixed number of requests under a deadline.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
    write_results,
)
from bench.provider_kit import (  # noqa: E402
    BareSite,
    api_client,
    check,
    create_plugin,
    drive_unix,
    git_state,
    provider_path,
    start_drpd,
    stop_drpd,
)
from drpd.http11 import UnixHTTPClient  # noqa: E402
from drpd.testing import DrpdProcess  # noqa: E402

CONCURRENCIES = (1, 32)
#: drpd's per-instance pool (supervisor: action_concurrency, UnixHTTPClient's default max_idle)
DRPD_POOL = {"max_connections": 128, "max_idle": 4}


@dataclass(frozen=True)
class Sizes:
    rounds: int
    c1: int
    c32: int
    #: untimed requests per worker before each run (opens the connections)
    warmup: int

    def requests(self, concurrency: int) -> int:
        return self.c1 if concurrency == 1 else self.c32


FULL = Sizes(rounds=5, c1=200, c32=768, warmup=3)
QUICK = Sizes(rounds=2, c1=20, c32=64, warmup=1)


@dataclass(frozen=True)
class Target:
    """One action: how drpd is asked, and the Action the provider gets."""

    label: str  # "echo" / "ping"
    provider: str
    instance: str
    path: str  # drpd's REST path
    posted: dict[str, Any]  # the JSON body posted to drpd
    action: bytes  # the Action JSON posted to the provider directly


class Results:
    def __init__(self) -> None:
        self.rounds: dict[str, Rounds] = {}

    def add(self, name: str, sample: Sample) -> None:
        self.rounds.setdefault(name, Rounds(name)).add(sample)

    def __getitem__(self, name: str) -> Rounds:
        return self.rounds[name]


def rest_op(path: str, body: dict[str, Any]) -> Op:
    async def op(client: httpx.AsyncClient, worker: int, i: int) -> None:
        expect(await client.post(path, json=body), 200)
    return op


def unix_client(path: str, **pool: int) -> Callable[[], UnixHTTPClient]:
    def make() -> UnixHTTPClient:
        return UnixHTTPClient(path, **(pool or {"max_connections": 1, "max_idle": 1}))
    return make


async def setup(drpd: DrpdProcess, site: BareSite) -> tuple[list[Target], dict[str, str]]:
    """Instances in drpd, a machine, and the same providers started bare and configured.

    Returns the targets and each target's bare plugin socket."""
    async with api_client(drpd) as api:
        echo_params = {"echo/greeting": "from-instance"}
        await create_plugin(api, "echo1", "sdk_echo", echo_params)
        await create_plugin(api, "ping1", "plain_provider", {})
        machine = check(await api.post("/machines", json={
            "Name": "bench-actions", "Address": "10.0.0.7",
            "Params": {"bench/rack": "r1"}}), 201)
        model = check(await api.get(f"/machines/{machine['Uuid']}"), 200)
        posted = {"echo/greeting": "bench"}
        echo = Target("echo", "sdk_echo", "echo1", f"/api/v3/machines/{machine['Uuid']}/actions/echo",
                      posted, json.dumps({"Model": model, "Plugin": "echo1", "Command": "echo",
                                          "CommandSet": "sdk_echo",
                                          "Params": posted}).encode())
        ping = Target("ping", "plain_provider", "ping1", "/api/v3/system/actions/ping", {},
                      json.dumps({"Model": None, "Plugin": "ping1", "Command": "ping",
                                  "CommandSet": "plain_provider", "Params": {}}).encode())
        # check the answers once: through drpd, and straight from the bare providers
        r = check(await api.post(echo.path.removeprefix("/api/v3"), json=posted), 200)
        if r["Params"].get("echo/greeting") != "bench" or r["Model"]["Uuid"] != machine["Uuid"]:
            raise RuntimeError(f"unexpected echo answer: {r}")
        r = check(await api.post(ping.path.removeprefix("/api/v3"), json={}), 200)
        if r.get("Pong") is not True or r.get("Name") != "ping1":
            raise RuntimeError(f"unexpected ping answer: {r}")
    sockets = {}
    for target, params in ((echo, echo_params), (ping, {})):
        run = await site.spawn(provider_path(target.provider))
        await run.config({**params, "Name": target.instance})
        answer = json.loads(await run.action(target.action))
        if ("Params" not in answer) or (target.label == "ping" and answer.get("Pong") is not True):
            raise RuntimeError(f"unexpected direct {target.label} answer: {answer}")
        sockets[target.label] = run.plugin_sock
    return [echo, ping], sockets


async def run_round(drpd: DrpdProcess, bare: BareQuart, targets: list[Target],
                    sockets: dict[str, str], sizes: Sizes, results: Results) -> None:
    headers = basic_auth_header(*drpd.auth)
    drpd_client = client_factory(drpd.endpoint, headers=headers)
    bare_client = client_factory(bare.endpoint, headers=headers)
    for c in CONCURRENCIES:
        kw: dict[str, Any] = {"concurrency": c, "requests": sizes.requests(c),
                              "warmup": sizes.warmup, "deadline": 120.0}
        for t in targets:
            results.add(f"drpd {t.label} c{c}", await drive(drpd_client,
                                                            rest_op(t.path, t.posted), **kw))
            results.add(f"direct {t.label} c{c}", await drive_unix(
                unix_client(sockets[t.label]), t.action, **kw))
        results.add(f"bare POST c{c}", await drive(bare_client, rest_op("/post", targets[0].posted),
                                                   **kw))
    c = CONCURRENCIES[-1]
    for t in targets:
        results.add(f"direct {t.label} c{c} drpd pool", await drive_unix(
            unix_client(sockets[t.label], **DRPD_POOL), t.action, concurrency=c,
            requests=sizes.requests(c), warmup=sizes.warmup, shared=True, deadline=120.0))


def figures_from(results: Results, targets: list[Target]) -> list[Figure]:
    figs: list[Figure] = []

    def fig(name: str, unit: str, value: str, base: str, base_label: str, attr: str,
            note: str = "") -> None:
        v, b = results[value], results[base]
        figs.append(Figure(name, getattr(v, attr), unit, getattr(b, attr), base_label, note,
                           value_rounds=v.per_round(attr), baseline_rounds=b.per_round(attr)))

    for t in targets:
        who = f"{t.label} ({t.provider})"
        for c in CONCURRENCIES:
            for attr, unit, what in (("rate", "req/s", "throughput"), ("p50_ms", "ms", "p50"),
                                     ("p99_ms", "ms", "p99")):
                fig(f"{who} c{c} {what} vs bare quart", unit, f"drpd {t.label} c{c}",
                    f"bare POST c{c}", f"bare quart POST c{c}", attr)
                fig(f"{who} c{c} {what} vs direct", unit, f"drpd {t.label} c{c}",
                    f"direct {t.label} c{c}", f"direct to the provider's socket c{c}", attr)
        # the floor of the whole path: one REST hop plus one provider hop
        d, q, u = results[f"drpd {t.label} c1"], results["bare POST c1"], \
            results[f"direct {t.label} c1"]
        floor = [a + b for a, b in zip(q.per_round("p50_ms"), u.per_round("p50_ms"), strict=True)]
        figs.append(Figure(f"{who} c1 p50 vs floor", d.p50_ms, "ms", q.p50_ms + u.p50_ms,
                           "bare quart POST p50 + direct provider p50", value_rounds=d.per_round(
                               "p50_ms"), baseline_rounds=floor))
        c = CONCURRENCIES[-1]
        fig(f"{who} direct c{c} throughput, drpd's pool vs one connection per worker", "req/s",
            f"direct {t.label} c{c} drpd pool", f"direct {t.label} c{c}",
            f"direct c{c}, one kept-alive connection per worker", "rate",
            note="one shared UnixHTTPClient(max_connections=128, max_idle=4), as drpd's "
                 "supervisor makes for each instance")
        fig(f"{who} direct c{c} p50, drpd's pool vs one connection per worker", "ms",
            f"direct {t.label} c{c} drpd pool", f"direct {t.label} c{c}",
            f"direct c{c}, one kept-alive connection per worker", "p50_ms")
    return figs


async def run_all(drpd: DrpdProcess, bare: BareQuart, sizes: Sizes,
                  results: Results) -> list[Target]:
    async with BareSite.open() as site:
        targets, sockets = await setup(drpd, site)
        for r in range(sizes.rounds):
            print(f"round {r + 1}/{sizes.rounds}: drpd {drpd.endpoint}, bare {bare.endpoint}",
                  flush=True)
            await run_round(drpd, bare, targets, sockets, sizes, results)
            for proc, what in ((drpd.proc, "drpd"), (bare.proc, "bare_quart.py")):
                if proc is None or proc.poll() is not None:
                    raise RuntimeError(f"{what} exited during the run")
        if site.stub.requests < 1:  # plain_provider logs through it on config
            raise RuntimeError("the bare providers never called their server socket")
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/actions.json, "
                             "or actions-quick.json with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("actions-quick.json" if args.quick else "actions.json")
    work = Path(tempfile.mkdtemp(prefix="drpd-bench-actions-"))
    started = time.monotonic()
    meta = machine_info() | {"drpd_source": git_state()}
    results = Results()
    try:
        with ExitStack() as stack:
            drpd = start_drpd(work / "drpd", ["sdk_echo", "plain_provider"], {})
            stack.callback(stop_drpd, drpd)
            bare = stack.enter_context(BareQuart())
            targets = trio.run(run_all, drpd, bare, sizes, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = figures_from(results, targets)
    print()
    print_table(figures, title=(
        f"drpd action benchmark, medians of {sizes.rounds} rounds. ratio = drpd / baseline "
        "(of the medians); paired = median of per-round ratios.\nrequests per run: "
        f"{sizes.c1} at c1, {sizes.c32} at c32; drpd over plain HTTP (--no-tls)."))
    duration = time.monotonic() - started
    meta.update(duration_s=round(duration, 1), quick=args.quick, client=(
        "this process: one kept-alive httpx.AsyncClient (REST) or UnixHTTPClient "
        "(direct) per concurrent worker, under trio; servers on 127.0.0.1 / UNIX sockets"))
    settings = asdict(sizes) | {
        "concurrencies": list(CONCURRENCIES), "drpd_pool": DRPD_POOL,
        "echo": "POST /api/v3/machines/<uuid>/actions/echo {\"echo/greeting\": \"bench\"}",
        "ping": "POST /api/v3/system/actions/ping {}",
        "bare_post_body": "the echo call's JSON body",
    }
    path = write_results(output, benchmark="actions", meta=meta, figures=figures,
                         settings=settings,
                         measurements={n: r.to_json() for n, r in results.rounds.items()})
    print(f"\nwrote {path} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
