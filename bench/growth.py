"""Benchmark: how drpd's costs grow with the machines it stores, and plots.

    .venv/bin/python bench/growth.py            # 1,000 / 10,000 / 100,000 machines, ~6 min
    .venv/bin/python bench/growth.py --quick    # 200 / 1,000 / 2,000 machines
    .venv/bin/python bench/growth.py --plot-only  # redraw the plots from the results

For each size, a store is filled with that many machines of ten params each
(in-process, ``SQLiteStore.transact`` in batches: the load is not what is
measured), then a real ``drpd serve --no-tls`` starts on it and this process
measures: start -> serving, drpd's RSS, ``GET`` of one machine (p50), a list
page of 100 (``?offset=&limit=100``, p50), a filtered list (a regular
expression on ``Name`` over every machine, p50) and creates at 32 clients
(req/s). Each figure stands next to the same figure at the smallest size
(the baseline): the ratio says how the cost grows.

It also draws ``bench/results/growth-machines.png`` from these results and
``bench/results/growth-instances.png`` from ``scale.json`` (200 instances)
and ``scale-1000.json`` (``bench/scale.py --instances 1000``), when present.
Only 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    Figure,
    basic_auth_header,
    client_factory,
    drive,
    expect,
    machine_info,
    print_table,
    run_main,
    write_results,
)
from bench.store import JSON, REFERENCES, encode, machine_body  # noqa: E402
from drpd.daemon import StateDir  # noqa: E402
from drpd.models import KINDS, Machine  # noqa: E402
from drpd.store.sqlite import SQLiteStore  # noqa: E402
from drpd.testing import DrpdProcess  # noqa: E402

FULL = (1_000, 10_000, 100_000)
QUICK = (200, 1_000, 2_000)


def ten_params(i: int) -> dict[str, Any]:
    return {f"growth/p{n}": (f"value-{i}-{n}" if n % 2 else i * 10 + n) for n in range(10)}


async def fill(db: Path, count: int) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        await store.transact([(prefix, obj["Name"], msgspec.convert(obj, KINDS[prefix].model))
                              for prefix, obj in REFERENCES], principal="bench-growth")
        done = 0
        while done < count:
            batch = []
            for i in range(done, min(done + 5000, count)):
                body = machine_body(f"m-{i:07d}", str(uuid.uuid4()))
                body["Params"] = ten_params(i)
                batch.append(("machines", body["Uuid"], msgspec.convert(body, Machine)))
            await store.transact(batch, principal="bench-growth")
            done += len(batch)
    finally:
        await store.aclose()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def p50_ms(client: httpx.AsyncClient, urls: list[str]) -> float:
    times = []
    for url in urls:
        t0 = time.perf_counter()
        expect(await client.get(url), 200)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


async def measure_size(count: int, work: Path) -> dict[str, float]:
    state = work / f"s{count}"
    state.mkdir(mode=0o700, parents=True)
    await fill(StateDir(state).db, count)
    drpd = DrpdProcess(state, no_tls=True, start_timeout=600)
    t0 = time.perf_counter()
    await trio.to_thread.run_sync(drpd.start)
    startup = time.perf_counter() - t0
    try:
        headers = basic_auth_header(*drpd.auth)
        async with httpx.AsyncClient(base_url=drpd.endpoint + "/api/v3", headers=headers,
                                     trust_env=False, timeout=120) as client:
            names = [f"m-{(i * 7919) % count:07d}" for i in range(100)]
            get = await p50_ms(client, [f"/machines/Name:{n}" for n in names])
            page = await p50_ms(client, [f"/machines?offset={(i * 97) % max(1, count - 100)}"
                                         f"&limit=100" for i in range(30)])
            filtered = await p50_ms(client, [f"/machines?Name=Re(^m-00{i:02d}1)&limit=100"
                                             for i in range(10)])
        make = client_factory(drpd.endpoint, headers=headers)

        async def create(c: httpx.AsyncClient, w: int, i: int) -> None:
            body = encode(machine_body(f"new-{w}-{i}", str(uuid.uuid4())))
            expect(await c.post("/api/v3/machines", content=body, headers=JSON), 201)

        creates = await drive(make, create, concurrency=32, requests=640, warmup=2)
        assert drpd.proc is not None
        rss = rss_mib(drpd.proc.pid)
    finally:
        await trio.to_thread.run_sync(drpd.stop)
    return {"machines": count, "startup_s": startup, "rss_mib": rss, "get_p50_ms": get,
            "page_p50_ms": page, "filter_p50_ms": filtered, "create_c32_rate": creates.rate}


async def measure(sizes: tuple[int, ...], work: Path) -> list[dict[str, float]]:
    rows = []
    for count in sizes:
        print(f"{count} machines ...", flush=True)
        rows.append(await measure_size(count, work))
        print("  " + ", ".join(f"{k} {v:,.2f}" for k, v in rows[-1].items()), flush=True)
    return rows


def figures_from(rows: list[dict[str, float]]) -> list[Figure]:
    base = rows[0]
    found = []
    for row in rows[1:]:
        n, b = int(row["machines"]), int(base["machines"])
        for key, label, unit in (("startup_s", "start -> serving", "s"),
                                 ("rss_mib", "drpd RSS", "MiB"),
                                 ("get_p50_ms", "GET one machine p50", "ms"),
                                 ("page_p50_ms", "list page of 100 p50", "ms"),
                                 ("filter_p50_ms", "filtered list (Name regex) p50", "ms"),
                                 ("create_c32_rate", "create c32 throughput", "req/s")):
            found.append(Figure(f"{label}, {n:,} machines", row[key], unit, base[key],
                                f"the same with {b:,} machines"))
        per_k = (row["rss_mib"] - base["rss_mib"]) / ((n - b) / 1000)
        found.append(Figure(f"drpd RSS per 1,000 machines ({b:,} -> {n:,})", per_k, "MiB",
                            base["rss_mib"] / (b / 1000), f"RSS per 1,000 at {b:,} (all of it)"))
    return found


def _grid(plt: Any, panels: list[tuple[str, list[float], list[float]]], shape: tuple[int, int],
          xlabel: str, title: str, log_x: bool, out: Path) -> Path:
    """One figure of small line plots (title, xs, ys), every y axis from 0
    (a flat cost must look flat), saved to ``out``."""
    rows, cols = shape
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.25 * rows))
    for ax, (name, xs, ys) in zip(axes.flat, panels, strict=True):
        ax.plot(xs, ys, marker="o")
        if log_x:
            ax.set_xscale("log")
        ax.set_ylim(bottom=0, top=max(ys) * 1.15 if ys and max(ys) > 0 else None)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def plot(rows: list[dict[str, float]] | None) -> list[Path]:
    """growth-machines.png from ``rows``; growth-instances.png from scale*.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if rows:
        xs = [r["machines"] for r in rows]
        panels = [(name, xs, [r[key] for r in rows]) for key, name in (
            ("startup_s", "start -> serving (s)"), ("rss_mib", "drpd RSS (MiB)"),
            ("get_p50_ms", "GET one, p50 (ms)"), ("page_p50_ms", "page of 100, p50 (ms)"),
            ("filter_p50_ms", "Name regex filter, p50 (ms)"),
            ("create_c32_rate", "create at c32 (req/s)"))]
        made.append(_grid(plt, panels, (2, 3), "machines stored",
                          "drpd: cost against machines stored (10 params each)", True,
                          RESULTS_DIR / "growth-machines.png"))
    points = []
    for path in (RESULTS_DIR / "scale.json", RESULTS_DIR / "scale-1000.json"):
        if path.exists():
            doc = json.loads(path.read_text())
            series = doc["measurements"]["series"]
            n = doc["settings"]["instances"]

            def med(prefix: str, doc_series: dict[str, Any] = series) -> float:
                name = next(k for k in doc_series if k.startswith(prefix))
                return float(doc_series[name]["median"])

            points.append((n, med("drpd start -> all available"), med(f"drpd RSS, {n} "),
                           med("ping p50, quiet")))
    if len(points) >= 2:
        points.sort()
        xs = [p[0] for p in points]
        panels = [(name, xs, [p[i] for p in points]) for i, name in (
            (1, "boot -> all Available (s)"), (2, "drpd RSS (MiB)"),
            (3, "action p50 to one instance (ms)"))]
        made.append(_grid(plt, panels, (1, 3), "plugin instances",
                          "drpd: cost against plugin instances (plain_provider)", False,
                          RESULTS_DIR / "growth-instances.png"))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--plot-only", action="store_true", help="no run: redraw the plots")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    output = args.output or RESULTS_DIR / ("growth-quick.json" if args.quick else "growth.json")
    if args.plot_only:
        rows = json.loads(output.read_text())["measurements"]["rows"] if output.exists() else None
        print("\n".join(str(p) for p in plot(rows)))
        return 0
    meta = machine_info()
    with tempfile.TemporaryDirectory(prefix="drpd-bench-growth-") as tmp:
        rows = trio.run(measure, QUICK if args.quick else FULL, Path(tmp))
    figures = figures_from(rows)
    print_table(figures, title="drpd: cost against machines stored")
    write_results(output, benchmark="growth", meta=meta, figures=figures,
                  measurements={"rows": rows})
    if not args.quick:
        for path in plot(rows):
            print(f"plot: {path}")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    run_main(main)
