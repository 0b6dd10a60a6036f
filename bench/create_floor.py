"""Benchmark: where a create's time goes at one client, next to a bare POST.

    .venv/bin/python bench/create_floor.py            # full run, about 2 minutes
    .venv/bin/python bench/create_floor.py --quick    # CI smoke run

``POST /api/v3/machines`` at concurrency 1 (the machine JSON of
``bench/store.py``), against four drpds started in the same rounds, each a
real ``drpd serve --no-tls`` on a fresh store, through
``bench/drpd_variant.py``:

- ``shipped``: drpd as it is;
- ``inline``: the commit runs on the event loop, no hand-off to the store's
  thread (never allowed in drpd: each fsync would stall every request);
- ``no-commit``: the hand-off without the commit (not durable);
- ``neither``: drpd's request handling alone;

and the baseline, ``bench/bare_quart.py``'s ``POST /post`` (a quart-trio
route reading the same JSON, no store), driven by the same client code.
The ratios say which part of a create costs what against the issue's goal
(create c1 p50 at most 1.4 times the bare POST's): ``neither`` is drpd's
own work, ``inline`` minus ``neither`` the commit, ``shipped`` minus
``inline`` the hand-off. Only ``shipped`` is durable and allowed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BENCH_DIR,
    RESULTS_DIR,
    BareQuart,
    Figure,
    LaunchedDrpd,
    Rounds,
    Sample,
    basic_auth_header,
    client_factory,
    drive,
    machine_info,
    print_table,
    run_main,
    write_results,
)
from bench.drpd_variant import VARIANTS  # noqa: E402
from bench.store import Workload, bare_post, seed_references  # noqa: E402


async def timed(make: Any, op: Any, requests: int, warmup: int) -> Sample:
    return await drive(make, op, concurrency=1, requests=requests, warmup=warmup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/create_floor.json, "
                             "or create_floor-quick.json with --quick)")
    args = parser.parse_args(argv)
    rounds, requests, warmup = (2, 30, 2) if args.quick else (5, 400, 5)
    output = args.output or RESULTS_DIR / (
        "create_floor-quick.json" if args.quick else "create_floor.json")
    work = Path(tempfile.mkdtemp(prefix="drpd-bench-floor-"))
    started = time.monotonic()
    meta = machine_info()
    results: dict[str, Rounds] = {name: Rounds(name) for name in (*VARIANTS, "bare")}
    try:
        with BareQuart() as bare:
            bare_client = client_factory(bare.endpoint)
            for r in range(rounds):
                for variant in VARIANTS:
                    launch = [str(BENCH_DIR / "drpd_variant.py"), variant]
                    with LaunchedDrpd(work / f"{variant}-{r}", no_tls=True, launch=launch) as d:
                        seed_references(d)
                        client = client_factory(d.endpoint, headers=basic_auth_header(*d.auth))
                        load = Workload(variant)
                        sample = trio.run(timed, client, load.create(), requests, warmup)
                    results[variant].add(sample)
                    print(f"  round {r + 1} {variant:<10} p50 {sample.p50_ms:6.3f} ms", flush=True)
                sample = trio.run(timed, bare_client, bare_post(), requests, warmup)
                results["bare"].add(sample)
                print(f"  round {r + 1} {'bare':<10} p50 {sample.p50_ms:6.3f} ms", flush=True)
        base = results["bare"]
        what = {
            "shipped": "drpd as shipped (durable)",
            "inline": "commit inline on the event loop (not allowed: measured only)",
            "no-commit": "no commit, hand-off kept (not durable: measured only)",
            "neither": "no commit, no hand-off: drpd's request handling alone",
        }
        figures = [
            Figure(f"create c1 p50, {what[v]}", results[v].p50_ms, "ms", base.p50_ms,
                   "bare quart POST c1 p50", value_rounds=results[v].per_round("p50_ms"),
                   baseline_rounds=base.per_round("p50_ms"))
            for v in VARIANTS
        ]
        shipped = results["shipped"]
        figures += [
            Figure(f"create c1 p50 shipped vs {v}", shipped.p50_ms, "ms", results[v].p50_ms,
                   f"create c1 p50, {what[v]}", value_rounds=shipped.per_round("p50_ms"),
                   baseline_rounds=results[v].per_round("p50_ms"))
            for v in ("inline", "neither")
        ]
        print()
        print_table(figures, title=(
            f"where a create's time goes (c1), medians of {rounds} rounds of {requests}; "
            "ratio = value / baseline"))
        duration = time.monotonic() - started
        meta.update(duration_s=round(duration, 1), quick=args.quick)
        path = write_results(
            output, benchmark="create_floor", meta=meta, figures=figures,
            settings={"rounds": rounds, "requests": requests, "warmup": warmup,
                      "variants": what, "body": "bench/store.py machine_body (a machine JSON)"},
            measurements={name: r.to_json() for name, r in results.items()})
        print(f"\nwrote {path} in {duration:.0f} s")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
