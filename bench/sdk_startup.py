"""Benchmark: how soon a provider written with drpd.sdk is ready, and answers.

    .venv/bin/python bench/sdk_startup.py            # full run, about 30 seconds
    .venv/bin/python bench/sdk_startup.py --quick    # CI smoke run

Each round spawns, in turn: ``python3 -c 'print("READY!")'`` (the floor),
``tests/providers/plain_provider.py`` (standard library only, the baseline)
and a minimal drpd.sdk provider, each as drpd runs it (``serve <plugin
socket> <server socket>``, a server socket listening), and measures:

- spawn -> ``READY!`` on stdout (what the protocol calls ready: the plugin
  socket accepts connections);
- spawn -> the answer to a first request on the plugin socket (what drpd
  waits for before an instance is Available: the SDK binds its socket and
  prints ``READY!`` before it imports trio and h11, so this is later).

Figures are medians of rounds, bytecode cached as a provider's second start
finds it. Everything stays on this machine's UNIX sockets.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, Figure, machine_info, print_table, run_main, write_results  # noqa: E402
from bench.provider_kit import MINIMAL_SDK_PROVIDER  # noqa: E402

PLAIN = Path(__file__).resolve().parent.parent / "tests" / "providers" / "plain_provider.py"
REQUEST = b"GET /api-plugin/v4/nothing HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n"


def once(argv: list[str], workdir: Path) -> tuple[float, float]:
    """(spawn -> READY!, spawn -> first answer), seconds; the floor answers nothing."""
    plugin, server = workdir / "p.sock", workdir / "s.sock"
    for path in (plugin, server):
        path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(server))
        listening.listen(16)
        t0 = time.perf_counter()
        proc = subprocess.Popen([*argv, "serve", str(plugin), str(server)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == b"READY!":
                    break
            ready = time.perf_counter() - t0
            if not plugin.exists():
                return ready, ready  # the floor: nothing to ask
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(30)
                client.connect(str(plugin))
                client.sendall(REQUEST)
                if not client.recv(65536):
                    raise RuntimeError(f"{argv[-1]} closed without an answer")
            return ready, time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds (CI smoke run)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rounds = 5 if args.quick else 25
    output = args.output or RESULTS_DIR / ("sdk_startup-quick.json" if args.quick
                                           else "sdk_startup.json")
    meta = machine_info()
    python = os.path.join(os.path.dirname(sys.executable), "python3")
    with tempfile.TemporaryDirectory(prefix="drpd-sdk-start-") as tmp:
        work = Path(tmp)
        minimal = work / "bench_minimal"
        minimal.write_text(MINIMAL_SDK_PROVIDER)
        minimal.chmod(0o755)
        kinds = {"floor": [python, "-c", 'print("READY!")'],
                 "plain": [python, str(PLAIN)], "sdk": [python, str(minimal)]}
        for argv in kinds.values():
            once(argv, work)  # bytecode written, caches warm
        ready: dict[str, list[float]] = {k: [] for k in kinds}
        answer: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind, argv in kinds.items():
                r, a = once(argv, work)
                ready[kind].append(r * 1e3)
                answer[kind].append(a * 1e3)
    med = {k: statistics.median(v) for k, v in ready.items()}
    med_answer = {k: statistics.median(v) for k, v in answer.items()}
    figures = [
        Figure("spawn -> READY!, drpd.sdk vs stdlib provider", med["sdk"], "ms", med["plain"],
               "plain_provider (standard library)", value_rounds=ready["sdk"],
               baseline_rounds=ready["plain"]),
        Figure("spawn -> first answer, drpd.sdk vs stdlib provider", med_answer["sdk"], "ms",
               med_answer["plain"], "plain_provider (standard library)",
               note="trio and h11 load after READY!", value_rounds=answer["sdk"],
               baseline_rounds=answer["plain"]),
        Figure("spawn -> READY!, stdlib provider vs python -c", med["plain"], "ms",
               med["floor"], "python3 -c 'print(\"READY!\")'"),
    ]
    print_table(figures, title="drpd.sdk provider start-up")
    write_results(output, benchmark="sdk_startup", meta=meta, figures=figures,
                  settings={"rounds": rounds})
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    run_main(main)
