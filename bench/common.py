"""Shared helpers for drpd's benchmarks.

- statistics: ``percentile``, ``Sample`` (one timed run), ``Rounds`` (the
  median of several runs: this machine is small and noisy, so every figure
  quoted is a median of rounds);
- HTTP load: ``drive`` runs a bounded number of requests from N concurrent
  workers, each with its own kept-alive ``httpx.AsyncClient``, under trio;
- baseline servers: ``BareQuart`` runs ``bench/bare_quart.py`` (a quart-trio
  route returning a constant, on hypercorn) in a child process;
- reporting: ``Figure`` (a drpd value against a baseline), ``print_table``,
  ``machine_info`` and ``write_results`` (JSON under ``bench/results``).

Benchmarks only touch 127.0.0.1 and stop by themselves: every loop is a
fixed number of requests, under an overall deadline.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import json
import math
import os
import platform
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import httpx
import trio

from drpd.testing import DrpdProcess

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
LOOPBACK = "127.0.0.1"

#: versions recorded with every result
PACKAGES = ("trio", "hypercorn", "quart", "quart-trio", "httpx", "h11", "msgspec", "werkzeug")


# -- statistics ------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class Sample:
    """One timed run: ``count`` operations in ``elapsed`` seconds, with latencies."""

    count: int
    elapsed: float
    latencies: list[float]  # seconds, one per operation
    concurrency: int = 1

    def __post_init__(self) -> None:
        self.latencies.sort()

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else math.nan

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1e3

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1e3

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "elapsed_s": round(self.elapsed, 4),
                "rate": round(self.rate, 1), "p50_ms": round(self.p50_ms, 3),
                "p99_ms": round(self.p99_ms, 3), "concurrency": self.concurrency}


@dataclass
class Rounds:
    """Several ``Sample``s of one measurement; its figures are medians of rounds."""

    name: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> Sample:
        self.samples.append(sample)
        return sample

    def _median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples) if self.samples else math.nan

    @property
    def rate(self) -> float:
        return self._median("rate")

    @property
    def p50_ms(self) -> float:
        return self._median("p50_ms")

    @property
    def p99_ms(self) -> float:
        return self._median("p99_ms")

    def per_round(self, attr: str) -> list[float]:
        """``rate``, ``p50_ms`` or ``p99_ms`` of each round, in order."""
        return [getattr(s, attr) for s in self.samples]

    def to_json(self) -> dict[str, Any]:
        return {"rate": _round(self.rate), "p50_ms": _round(self.p50_ms, 3),
                "p99_ms": _round(self.p99_ms, 3), "rounds": [s.summary() for s in self.samples]}


def _round(value: float, digits: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def timed_loop(op: Callable[[int], object], count: int, *, concurrency: int = 1) -> Sample:
    """Run ``op(i)`` for i in range(count) in this thread, timing each call."""
    latencies = []
    clock = time.perf_counter
    start = clock()
    for i in range(count):
        t0 = clock()
        op(i)
        latencies.append(clock() - t0)
    return Sample(count, clock() - start, latencies, concurrency)


# -- HTTP load ----------------------------------------------------------------------
def basic_auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def tls_context(ca_cert: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """An httpx ``verify`` value: trust only ``ca_cert``, or plain HTTP (False)."""
    if ca_cert is None:
        return False
    return ssl.create_default_context(cafile=str(ca_cert))


def client_factory(base_url: str, *, headers: dict[str, str] | None = None,
                   verify: ssl.SSLContext | bool = False,
                   timeout: float = 30.0) -> Callable[[], httpx.AsyncClient]:
    """Make one-connection kept-alive clients; ``trust_env=False`` so no proxy is used."""
    def make() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=base_url, headers=headers, verify=verify, timeout=timeout,
            trust_env=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
    return make


#: one request: ``op(client, worker, i)``; it checks the response and raises on a failure
Op = Callable[[httpx.AsyncClient, int, int], Awaitable[Any]]


async def drive(make_client: Callable[[], httpx.AsyncClient], op: Op, *, concurrency: int,
                requests: int, warmup: int = 0, deadline: float = 300.0) -> Sample:
    """``requests`` calls of ``op`` spread over ``concurrency`` workers.

    Each worker has its own client (one kept-alive connection). ``warmup``
    calls per worker open the connections and are not timed; worker ``w``'s
    timed calls get indexes ``warmup, warmup+1, ...``. Throughput is the
    timed calls over the wall time from the first to the last of them.
    """
    per_worker = [requests // concurrency + (1 if w < requests % concurrency else 0)
                  for w in range(concurrency)]
    latencies: list[float] = []
    clients = [make_client() for _ in range(concurrency)]
    clock = time.perf_counter
    try:
        with trio.fail_after(deadline):
            async def warm(w: int) -> None:
                for i in range(warmup):
                    await op(clients[w], w, i)

            async with trio.open_nursery() as nursery:
                for w in range(concurrency):
                    nursery.start_soon(warm, w)

            async def work(w: int) -> None:
                client = clients[w]
                mine = latencies
                for i in range(warmup, warmup + per_worker[w]):
                    t0 = clock()
                    await op(client, w, i)
                    mine.append(clock() - t0)

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


def expect(response: httpx.Response, *codes: int) -> httpx.Response:
    if response.status_code not in codes:
        raise RuntimeError(f"{response.request.method} {response.request.url}: "
                           f"{response.status_code} {response.text[:300]}")
    return response


# -- child processes -----------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """PR_SET_PDEATHSIG: the child gets SIGTERM when the (main) thread that forked it ends."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class LaunchedDrpd(DrpdProcess):
    """A ``drpd serve`` whose ``python -m drpd.daemon`` is replaced by ``python *launch``.

    For drpd under a profiler (``-m cProfile -o F -m drpd.daemon``) or
    through a wrapper script that changes part of it before running
    ``drpd.daemon.main`` (``bench/drpd_variant.py``).
    """

    def __init__(self, *args: Any, launch: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.launch = list(launch)

    def command(self) -> list[str]:
        cmd = super().command()
        assert cmd[1:3] == ["-m", "drpd.daemon"], cmd
        return [cmd[0], *self.launch, *cmd[3:]]


class BareQuart:
    """Baseline server: ``bench/bare_quart.py`` (GET /get, POST /post) in a child process.

    The listening socket is bound here on 127.0.0.1 port 0 and handed to the
    child (hypercorn's ``fd://`` bind), so there is no port race. With
    ``certfile``/``keyfile`` it serves HTTPS.
    """

    def __init__(self, *, certfile: str | None = None, keyfile: str | None = None,
                 db: str | None = None, start_timeout: float = 30.0) -> None:
        self.certfile, self.keyfile = certfile, keyfile
        self.db = db
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def start(self) -> BareQuart:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, 0))
            sock.listen(1024)
            self.port = sock.getsockname()[1]
            cmd = [sys.executable, str(BENCH_DIR / "bare_quart.py"), "--fd", str(sock.fileno())]
            if self.certfile:
                cmd += ["--certfile", self.certfile, "--keyfile", str(self.keyfile)]
            if self.db:
                cmd += ["--db", self.db]
            self.proc = subprocess.Popen(cmd, pass_fds=[sock.fileno()], start_new_session=True,
                                         preexec_fn=_die_with_parent)
        finally:
            sock.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        verify: Any = False
        if self.certfile:
            verify = ssl.create_default_context(cafile=self.certfile)
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(verify=verify, trust_env=False, timeout=2.0) as client:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bare_quart.py exited with {self.proc.returncode}")
                try:
                    if client.get(self.endpoint + "/get").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("bare_quart.py did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> BareQuart:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- reporting --------------------------------------------------------------------------
@dataclass
class Figure:
    """One quoted figure: a drpd value against a baseline; ``ratio`` is value / baseline."""

    name: str
    value: float
    unit: str
    baseline: float
    baseline_name: str
    note: str = ""
    #: per-round values of both, measured side by side: gives ``paired_ratio``
    value_rounds: Sequence[float] = ()
    baseline_rounds: Sequence[float] = ()

    @property
    def ratio(self) -> float:
        return _ratio(self.value, self.baseline)

    @property
    def paired_ratio(self) -> float:
        """Median over rounds of value / baseline of the same round (steadier on a noisy box)."""
        if not self.value_rounds or len(self.value_rounds) != len(self.baseline_rounds):
            return math.nan
        return statistics.median(_ratio(v, b) for v, b in zip(self.value_rounds,
                                                              self.baseline_rounds, strict=True))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "value": _round(self.value, 3), "unit": self.unit,
            "baseline": _round(self.baseline, 3), "baseline_name": self.baseline_name,
            "ratio": _round(self.ratio, 3),
        }
        if self.value_rounds:
            out["paired_ratio"] = _round(self.paired_ratio, 3)
            out["value_rounds"] = [_round(v, 3) for v in self.value_rounds]
            out["baseline_rounds"] = [_round(b, 3) for b in self.baseline_rounds]
        if self.note:
            out["note"] = self.note
        return out


def _ratio(value: float, baseline: float) -> float:
    if not baseline or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return value / baseline


def _fmt(value: float, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "ms":
        return f"{value:.2f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def format_table(figures: Sequence[Figure], *, title: str = "") -> str:
    """figure | drpd | baseline | ratio (of the medians) | paired (median of per-round ratios)."""
    def r(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.2f}"

    rows = [("figure", "drpd", "baseline", "ratio", "paired", "baseline is")]
    for f in figures:
        rows.append((f"{f.name} [{f.unit}]", _fmt(f.value, f.unit), _fmt(f.baseline, f.unit),
                     r(f.ratio), r(f.paired_ratio), f.baseline_name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:5], widths[1:5],
                                                                            strict=True)]
        lines.append("  ".join(cells + [row[5]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(figures: Sequence[Figure], *, title: str = "") -> None:
    print(format_table(figures, title=title), flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 0


def machine_info() -> dict[str, Any]:
    import sqlite3

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["sqlite"] = sqlite3.sqlite_version
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "nproc": nproc(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "loadavg_start": list(os.getloadavg()),
    }


def write_results(path: str | os.PathLike[str], *, benchmark: str, meta: dict[str, Any],
                  figures: Sequence[Figure], measurements: dict[str, Any] | None = None,
                  settings: dict[str, Any] | None = None) -> Path:
    """Write figures and metadata as JSON (atomically); returns the path."""
    names = [f.name for f in figures]
    if len(set(names)) != len(names):
        raise ValueError(f"figure names repeat: {sorted(n for n in names if names.count(n) > 1)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta["loadavg_end"] = list(os.getloadavg())
    doc = {
        "benchmark": benchmark,
        "meta": meta,
        "settings": settings or {},
        "figures": [f.to_json() for f in figures],
        "measurements": measurements or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def _interrupted(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, BaseExceptionGroup) and all(_interrupted(e) for e in exc.exceptions)


def run_main(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's ``main``; Ctrl-C ends it with 130 and writes nothing."""
    try:
        sys.exit(main())
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        print("interrupted: servers stopped, nothing written", file=sys.stderr)
        sys.exit(130)


@dataclass
class Series:
    """Per-round values of one measurement (the figures are medians of them)."""

    unit: str = "ms"
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": rounded(self.median),
                "min": rounded(min(self.values)) if self.values else None,
                "max": rounded(max(self.values)) if self.values else None,
                "values": [rounded(v) for v in self.values]}


def rounded(value: float | None) -> float | None:
    """A figure for the JSON results: 3 decimals, NaN and None as null."""
    return None if value is None or math.isnan(value) else round(value, 3)
