"""Run every benchmark, then print and save the headline ratios.

    .venv/bin/python bench/run_all.py            # full run (make bench), about 12 minutes
    .venv/bin/python bench/run_all.py --quick    # CI-sized run (make bench-quick), about 2 minutes
    .venv/bin/python bench/run_all.py --only peer,limits
    .venv/bin/python bench/run_all.py --report   # no run: the last summary as a Markdown table

Runs ``store``, ``create_floor``, ``supervise``, ``actions``, ``events`` (when
``bench/events.py`` exists), ``peer``, ``scale``, ``limits``, ``nodes``,
``sdk_startup`` and ``growth`` one after
the other, each in its own process (so one failing does not stop the
others), with ``--quick`` passed on. Then it reads the JSON each wrote in
this run and prints one table of headline figures (drpd, baseline, ratio),
written to ``bench/results/summary.json`` (``summary-quick.json`` with
``--quick``); with ``--only``, the other benchmarks' last results stay in
the summary (status ``previous``, with their date). Exits 1 if any
benchmark failed.

This machine is shared and small: the load average is printed at the start
and recorded; figures from a busy machine drift (every benchmark compares
against a baseline measured in the same run to soften that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DIR, RESULTS_DIR, machine_info, nproc  # noqa: E402

BENCHES = ("store", "create_floor", "supervise", "actions", "events", "peer", "scale", "limits",
           "nodes", "sdk_startup", "growth")
#: the figures quoted in the summary, by benchmark (regular expressions, full match);
#: a benchmark not listed, or whose names all miss, contributes its first three figures
HEADLINES: dict[str, tuple[str, ...]] = {
    "store": (r"create c1 http p50", r"get c1 http p50", r"create c32 http throughput",
              r"create c32 https throughput", r"get c32 http throughput"),
    "create_floor": (r"create c1 p50, commit inline on the event loop .*",
                     r"create c1 p50, no commit, no hand-off: .*"),
    "supervise": (r"crash -> Available vs bare respawn, plain_provider",
                  r"update -> Available vs bare restart, sdk_echo",
                  r"drpd RSS at \d+ instances"),
    "actions": (r"ping \(plain_provider\) c1 p50 vs floor",
                r"echo \(sdk_echo\) c1 p50 vs floor",
                r"ping \(plain_provider\) c32 throughput vs bare quart"),
    "events": (r"publish POST /events, no subscriber", r"deliveries \(flood\), 100 subscribers",
               r"server CPU per delivery, fan-out only, 100 subscribers",
               r"latency p99 @[\d.]+/s, 100 subscribers"),
    "peer": (r"crash -> back and READY, drpd vs supervisord",),
    "scale": (r"boot: start -> \d+ instances Available", r"drpd RSS with \d+ instances",
              r"drpd idle CPU with \d+ instances",
              r"ping p99, \d+ ws subscribers \+ 20/s events",
              r"ping p99, 20/s events here vs the same load on another drpd",
              r"ping p99, \d+ SCHED_IDLE subscribers \+ 20/s events"),
    "growth": (r"list page of 100 p50, [\d,]+ machines", r"drpd RSS per 1,000 machines .*",
               r"start -> serving, [\d,]+ machines"),
    "sdk_startup": (r"spawn -> READY!, drpd.sdk vs stdlib provider",
                    r"spawn -> first answer, drpd.sdk vs stdlib provider"),
    "nodes": (r"create c1 p50, PostgreSQL vs SQLite", r"create c32 throughput, 3 nodes vs 1",
              r"action c32 throughput, 3 nodes vs 1", r"failover: SIGKILL -> Available elsewhere"),
    "limits": (r"provider hop c1: drpd\.http11 both sides p50",
               r"provider hop c32: drpd\.http11 both sides throughput",
               r"API hop c1: GET /api/v3/info p50", r"API hop c32: GET /api/v3/info throughput"),
}
#: a whole benchmark may not take longer than this (seconds)
LIMIT = {"full": 1800, "quick": 180}


def result_path(name: str, quick: bool) -> Path:
    return RESULTS_DIR / (f"{name}-quick.json" if quick else f"{name}.json")


def run_one(name: str, quick: bool) -> dict[str, Any]:
    script = BENCH_DIR / f"{name}.py"
    if not script.exists():
        print(f"\n=== {name}: bench/{name}.py is not there: skipped", flush=True)
        return {"bench": name, "status": "absent"}
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.time()
    t0 = time.monotonic()
    try:
        rc = subprocess.run(cmd, cwd=BENCH_DIR.parent, stdin=subprocess.DEVNULL,
                            timeout=LIMIT["quick" if quick else "full"]).returncode
    except subprocess.TimeoutExpired:
        rc = -1
    duration = round(time.monotonic() - t0, 1)
    path = result_path(name, quick)
    fresh = path.exists() and path.stat().st_mtime >= started
    status = "ok" if rc == 0 and fresh else ("skipped" if rc == 0 else "failed")
    print(f"=== {name}: {status} (exit {rc}) in {duration:.0f} s", flush=True)
    return {"bench": name, "status": status, "exit": rc, "duration_s": duration,
            "results": str(path.relative_to(BENCH_DIR.parent)) if fresh else None}


def headlines(name: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    figures = doc.get("figures", [])
    chosen = []
    for pattern in HEADLINES.get(name, ()):
        for f in figures:
            if re.fullmatch(pattern, f["name"]) and f not in chosen:
                chosen.append(f)
                break
    if not chosen:
        chosen = [f for f in figures if f.get("headline")] or figures[:3]
    return [{"bench": name, "name": f["name"], "unit": f["unit"], "value": f["value"],
             "baseline": f["baseline"], "ratio": f["ratio"],
             "baseline_name": f["baseline_name"]} for f in chosen]


def _num(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def text_table(rows: list[dict[str, Any]]) -> str:
    cells = [("bench", "figure", "drpd", "baseline", "ratio", "baseline is")]
    for r in rows:
        cells.append((r["bench"], f"{r['name']} [{r['unit']}]", _num(r["value"], r["unit"]),
                      _num(r["baseline"], r["unit"]), _ratio(r["ratio"]), r["baseline_name"]))
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    out = []
    for n, c in enumerate(cells):
        line = [c[0].ljust(widths[0]), c[1].ljust(widths[1])]
        line += [x.rjust(w) for x, w in zip(c[2:5], widths[2:5], strict=True)]
        out.append("  ".join(line + [c[5]]).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    out = ["| figure | drpd | baseline | ratio |", "|---|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['bench']}: {r['name']} [{r['unit']}] (vs {r['baseline_name']}) "
                   f"| {_num(r['value'], r['unit'])} | {_num(r['baseline'], r['unit'])} "
                   f"| {_ratio(r['ratio'])} |")
    return "\n".join(out)


def report(quick: bool) -> int:
    path = RESULTS_DIR / ("summary-quick.json" if quick else "summary.json")
    doc = json.loads(path.read_text())
    m = doc["meta"]
    print(markdown_table(doc["headlines"]))
    print(f"\n{m['date']}: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
          f"load average {m['loadavg_start'][0]:.2f} at the start")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized runs (each under 30 s)")
    parser.add_argument("--only", help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: print the last summary as a Markdown table")
    args = parser.parse_args(argv)
    if args.report:
        return report(args.quick)
    names = list(BENCHES)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in BENCHES]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}")
        names = wanted
    meta = machine_info()
    load = os.getloadavg()[0]
    print(f"{meta['nproc']} CPUs ({meta['cpu_model']}), Python {meta['python']}; "
          f"load average {load:.2f}", flush=True)
    if load > nproc() / 2:
        print(f"warning: the machine is busy (load {load:.2f} on {nproc()} CPUs): "
              "figures will be noisy", flush=True)
    t0 = time.monotonic()
    runs = [run_one(name, args.quick) for name in names]
    # benchmarks not run now (--only) keep their last results in the summary
    for name in BENCHES:
        path = result_path(name, args.quick)
        if name not in names and path.exists():
            runs.append({"bench": name, "status": "previous",
                         "results": str(path.relative_to(BENCH_DIR.parent))})
    runs.sort(key=lambda r: BENCHES.index(r["bench"]))
    rows: list[dict[str, Any]] = []
    for run in runs:
        if run.get("results"):
            doc = json.loads((BENCH_DIR.parent / run["results"]).read_text())
            run["date"] = doc.get("meta", {}).get("date")
            run["loadavg_start"] = doc.get("meta", {}).get("loadavg_start")
            rows += headlines(run["bench"], doc)
    meta.update(duration_s=round(time.monotonic() - t0, 1), quick=args.quick,
                loadavg_end=list(os.getloadavg()))
    out = RESULTS_DIR / ("summary-quick.json" if args.quick else "summary.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": "summary", "meta": meta, "runs": runs,
                               "headlines": rows}, indent=2) + "\n")
    tmp.replace(out)
    print("\n" + "=" * 30 + " summary: headline figures (ratio = drpd / baseline) "
          + "=" * 30)
    print(text_table(rows))
    print()
    for run in runs:
        print(f"{run['bench']:<10} {run['status']:<8}"
              + (f" {run['duration_s']:6.0f} s" if "duration_s" in run else " " * 8)
              + (f"  results of {run['date']}" if run.get("date") else ""))
    print(f"\nwrote {out} in {meta['duration_s']:.0f} s")
    return 1 if any(r["status"] == "failed" for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
