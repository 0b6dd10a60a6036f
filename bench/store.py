"""Benchmark: drpd's REST writes and reads of machines, against their floors.

    .venv/bin/python bench/store.py            # full run, about 2 minutes
    .venv/bin/python bench/store.py --quick    # CI smoke run, tiny sizes
    .venv/bin/python bench/store.py --profile /tmp/drpd.prof  # where drpd's time goes

What is measured, in one run (every figure is the median of ``rounds``):

- drpd (a real ``drpd serve`` process, ``DrpdProcess``): create (POST),
  update (merge PATCH) and get of machines through ``/api/v3/machines``, at
  concurrency 1 and 32, over plain HTTP (``--no-tls``); create and get also
  over HTTPS (drpd's own certificate). Every round restarts these drpds on
  an empty store; a third drpd, started on a store preloaded with
  ``large`` machines (20,000), repeats create/update/get at concurrency 1;
- baseline A: raw SQLite inserts in a worker thread, single writer, with
  drpd's schema and durability (WAL, ``synchronous=FULL``, one transaction
  per insert), the row a machine's stored JSON; also drpd's own
  ``SQLiteStore.create``/``modify`` in-process, without HTTP;
- baseline B: ``bench/bare_quart.py`` (a quart-trio route returning a
  constant, on hypercorn, its own process), driven by the same client code:
  GET for drpd's get, POST of the same machine JSON (read by the route) for
  drpd's create and update;
- baseline C: the same bare server's ``POST /store``, which also commits
  the body to SQLite before answering as drpd's store does (its schema,
  WAL, ``synchronous=FULL``, one transaction per request, in a worker
  thread the way drpd's store hands it): the floor of a durable create, with
  the same thread hand-offs and fsync, measured the same way.

The client is this process: one kept-alive ``httpx.AsyncClient`` per
concurrent worker, under trio. Client and servers share the machine's cores,
so the ratios matter more than the absolute figures. Phases are interleaved
round by round (drpd, then its baseline) so drift hits both alike.
Everything binds and connects to 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    BareQuart,
    Figure,
    LaunchedDrpd,
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
    timed_loop,
    tls_context,
    write_results,
)
from drpd.daemon import StateDir  # noqa: E402
from drpd.models import KINDS, Machine  # noqa: E402
from drpd.store.sqlite import MIGRATIONS, SQLiteStore  # noqa: E402
from drpd.store.store_thread import StoreThread  # noqa: E402
from drpd.testing import DrpdProcess  # noqa: E402

CONCURRENCIES = (1, 32)


@dataclass(frozen=True)
class Sizes:
    rounds: int
    #: timed requests per run at concurrency 1 and at 32
    c1: int
    c32: int
    #: untimed requests per worker before each run (opens the connections)
    warmup: int
    #: raw SQLite inserts per round
    sqlite: int
    #: in-process SQLiteStore writes per round
    store: int
    #: HTTPS runs (create and get only)
    tls_c1: int
    tls_c32: int
    #: machines preloaded in the "large" drpd (create/update/get at concurrency 1 there)
    large: int

    def requests(self, concurrency: int, tls: bool = False) -> int:
        if tls:
            return self.tls_c1 if concurrency == 1 else self.tls_c32
        return self.c1 if concurrency == 1 else self.c32


FULL = Sizes(rounds=5, c1=200, c32=768, warmup=3, sqlite=1000, store=500,
             tls_c1=150, tls_c32=384, large=20_000)
QUICK = Sizes(rounds=2, c1=20, c32=64, warmup=1, sqlite=100, store=50, tls_c1=10, tls_c32=64,
              large=1_000)


# -- the machine being written ---------------------------------------------------------
def machine_body(name: str, uid: str) -> dict[str, Any]:
    """A machine as a client creates it: a few params, about 700 bytes of JSON."""
    return {
        "Uuid": uid,
        "Name": name,
        "Description": "benchmark machine in rack r12, slot 7",
        "Address": "10.20.30.40",
        "Arch": "amd64",
        "BootEnv": "local",
        "Workflow": "discover-base",
        "Meta": {"color": "blue", "icon": "server", "feature-flags": "change-stage-v2"},
        "Params": {
            "bench/rack": "r12",
            "bench/slot": 7,
            "bench/tags": ["alpha", "beta", "gamma"],
            "bench/nics": [
                {"mac": "52:54:00:12:34:56", "ip": "10.20.30.40", "up": True},
                {"mac": "52:54:00:12:34:57", "ip": "10.20.31.40", "up": False},
            ],
            "bench/bios": {"vendor": "ACME", "version": "2.17.1", "date": "2024-01-31"},
            "bench/notes": "x" * 120,
        },
    }


def stored_row(body: dict[str, Any]) -> bytes:
    """The bytes drpd stores for ``body`` (what baseline A inserts)."""
    machine = msgspec.convert(body, Machine)
    machine.Validated = machine.Available = True
    return msgspec.json.encode(machine)


def encode(body: Any) -> bytes:
    return msgspec.json.encode(body)


JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


class Workload:
    """The ops of one server; machine keys created so far are shared by update and get."""

    def __init__(self, label: str, keys: list[str] | None = None) -> None:
        self.label = label
        self.keys: list[str] = keys if keys is not None else []
        self._runs = 0

    def _tag(self) -> str:
        self._runs += 1
        return f"{self.label}{self._runs}"

    def create(self) -> Op:
        tag = self._tag()
        keys = self.keys

        async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
            uid = str(uuid.uuid4())
            body = encode(machine_body(f"bench-{tag}-{w}-{i}", uid))
            expect(await client.post("/api/v3/machines", content=body, headers=JSON), 201)
            keys.append(uid)

        return op

    def update(self, concurrency: int) -> Op:
        keys = self.keys

        async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
            key = keys[(w + i * concurrency) % len(keys)]
            patch = encode({"Description": f"updated {w}-{i}", "Params": {"bench/slot": i}})
            expect(await client.patch(f"/api/v3/machines/{key}", content=patch,
                                      headers=MERGE), 200)

        return op

    def get(self, concurrency: int) -> Op:
        keys = self.keys

        async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
            key = keys[(w + i * concurrency) % len(keys)]
            expect(await client.get(f"/api/v3/machines/{key}"), 200)

        return op


def bare_post() -> Op:
    """Baseline B's POST: the same machine JSON as drpd's create, read by the route."""
    async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
        body = encode(machine_body(f"bench-bare-{w}-{i}", str(uuid.uuid4())))
        expect(await client.post("/post", content=body, headers=JSON), 200)

    return op


def bare_store() -> Op:
    """Baseline C: baseline B's POST that also commits the body to SQLite, durably."""
    async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
        body = encode(machine_body(f"bench-bare-{w}-{i}", str(uuid.uuid4())))
        expect(await client.post("/store", content=body, headers=JSON), 200)

    return op


def bare_get() -> Op:
    async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
        expect(await client.get("/get"), 200)

    return op


# -- baseline A: raw SQLite ---------------------------------------------------------------
class RawSQLite:
    """drpd's schema and pragmas, one connection, one transaction per insert."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                self.conn.execute(statement)
        self.next = 0

    def insert(self, row: bytes) -> None:
        conn = self.conn
        self.next += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO objects (prefix, key, rev, data) VALUES (?, ?, ?, ?)",
                     ("machines", str(uuid.UUID(int=self.next)), self.next, row))
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


async def sqlite_in_thread(db: RawSQLite, row: bytes, count: int) -> Sample:
    """Baseline A: the whole loop in one worker thread, each insert timed there."""
    return await trio.to_thread.run_sync(lambda: timed_loop(lambda i: db.insert(row), count))


async def sqlite_per_hop(db: RawSQLite, row: bytes, count: int, *, own_thread: bool) -> Sample:
    """Each insert handed to a thread from trio, timed in trio: through
    ``trio.to_thread`` or through drpd's store thread (``StoreThread``)."""
    limiter = trio.CapacityLimiter(1)
    thread = StoreThread("bench-sqlite")

    async def hop() -> None:
        if own_thread:
            await thread.run(db.insert, row)
        else:
            await trio.to_thread.run_sync(db.insert, row, limiter=limiter)

    if own_thread:
        thread.start()
    latencies = []
    clock = time.perf_counter
    start = clock()
    try:
        for _ in range(count):
            t0 = clock()
            await hop()
            latencies.append(clock() - t0)
    finally:
        await thread.aclose()
    return Sample(count, clock() - start, latencies)


async def store_writes(store: SQLiteStore, count: int, tag: str) -> tuple[Sample, Sample]:
    """drpd's SQLiteStore.create then .modify, in-process (no HTTP), one at a time."""
    keys = []
    latencies = []
    clock = time.perf_counter
    start = clock()
    for i in range(count):
        uid = str(uuid.uuid4())
        machine = msgspec.convert(machine_body(f"store-{tag}-{i}", uid), Machine)
        t0 = clock()
        await store.create("machines", machine, principal="bench")
        latencies.append(clock() - t0)
        keys.append(uid)
    create = Sample(count, clock() - start, latencies)
    latencies = []
    start = clock()
    for i, key in enumerate(keys):
        t0 = clock()
        await store.modify("machines", key,
                           lambda old, i=i: msgspec.structs.replace(old, Description=f"u{i}"),
                           principal="bench")
        latencies.append(clock() - t0)
    return create, Sample(count, clock() - start, latencies)


# -- the run ------------------------------------------------------------------------------
class Results:
    def __init__(self) -> None:
        self.rounds: dict[str, Rounds] = {}

    def add(self, name: str, sample: Sample) -> None:
        self.rounds.setdefault(name, Rounds(name)).add(sample)
        s = sample
        print(f"  {name:<30} {s.rate:9.1f}/s  p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms"
              f"  (n={s.count})", flush=True)

    def __getitem__(self, name: str) -> Rounds:
        return self.rounds[name]

    def __contains__(self, name: str) -> bool:
        return name in self.rounds


async def preload(db: Path, count: int) -> list[str]:
    """Fill a drpd store (before drpd starts on it) with ``count`` machines; returns their keys.

    The names are unique by construction, so the store's uniqueness check
    (a scan of every machine per object written: quadratic in a bulk load)
    is switched off for this load only.
    """
    kinds = {**KINDS, "machines": replace(KINDS["machines"], unique=())}
    store = SQLiteStore(db, kinds=kinds)
    await store.open()
    keys: list[str] = []
    try:
        await store.transact([(prefix, obj["Name"], msgspec.convert(obj, KINDS[prefix].model))
                              for prefix, obj in REFERENCES], principal="bench-preload")
        while len(keys) < count:
            batch = []
            for _ in range(min(2000, count - len(keys))):
                uid = str(uuid.uuid4())
                body = machine_body(f"preloaded-{len(keys)}", uid)
                batch.append(("machines", uid, msgspec.convert(body, Machine)))
                keys.append(uid)
            await store.transact(batch, principal="bench-preload")
    finally:
        await store.aclose()
    return keys


#: what the benchmark machine refers to: drpd checks a machine's Workflow and
#: BootEnv exist (422 otherwise), as DRP does
REFERENCES = (("workflows", {"Name": "discover-base"}), ("bootenvs", {"Name": "local"}))


def seed_references(d: DrpdProcess) -> None:
    verify = d.verify
    with httpx.Client(base_url=d.endpoint, auth=d.auth, verify=verify, timeout=30) as client:
        for prefix, obj in REFERENCES:
            r = client.post(f"/api/v3/{prefix}", json=obj)
            if r.status_code not in (201, 409):
                raise RuntimeError(f"cannot create {prefix} {obj['Name']}: {r.text}")


def fresh_start(d: DrpdProcess) -> None:
    """Restart drpd on an empty store (same state dir, so the same TLS certificate)."""
    d.stop()
    db = StateDir(d.state_dir).db
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
    d.endpoint = ""
    d.start()
    seed_references(d)


@dataclass
class Servers:
    """The processes under test; drpd and drpd_tls restart on an empty store every round."""

    drpd: DrpdProcess
    bare: BareQuart
    large: DrpdProcess | None = None
    large_keys: list[str] = field(default_factory=list)
    drpd_tls: DrpdProcess | None = None
    bare_tls: BareQuart | None = None


async def run_round(servers: Servers, sizes: Sizes, work_dir: Path, results: Results,
                    large: Workload | None) -> None:
    """One round of every measurement, each drpd one next to its baseline."""
    headers = basic_auth_header(*servers.drpd.auth)
    drpd_client = client_factory(servers.drpd.endpoint, headers=headers)
    bare_client = client_factory(servers.bare.endpoint, headers=headers)
    plain = Workload("h")
    for c in CONCURRENCIES:
        kw: dict[str, Any] = {"concurrency": c, "requests": sizes.requests(c),
                              "warmup": sizes.warmup}
        results.add(f"drpd create c{c}", await drive(drpd_client, plain.create(), **kw))
        results.add(f"bare POST c{c}", await drive(bare_client, bare_post(), **kw))
        results.add(f"bare durable POST c{c}", await drive(bare_client, bare_store(), **kw))
        results.add(f"drpd update c{c}", await drive(drpd_client, plain.update(c), **kw))
        results.add(f"drpd get c{c}", await drive(drpd_client, plain.get(c), **kw))
        results.add(f"bare GET c{c}", await drive(bare_client, bare_get(), **kw))

    if servers.large is not None and large is not None:
        big = client_factory(servers.large.endpoint, headers=headers)
        kw = {"concurrency": 1, "requests": sizes.c1, "warmup": sizes.warmup}
        results.add("drpd create c1 large", await drive(big, large.create(), **kw))
        results.add("drpd update c1 large", await drive(big, large.update(1), **kw))
        results.add("drpd get c1 large", await drive(big, large.get(1), **kw))

    if servers.drpd_tls is not None and servers.bare_tls is not None:
        verify = tls_context(servers.drpd_tls.ca_cert)
        drpd_tls = client_factory(servers.drpd_tls.endpoint, headers=headers, verify=verify)
        bare_tls = client_factory(servers.bare_tls.endpoint, headers=headers, verify=verify)
        tls = Workload("s")
        for c in CONCURRENCIES:
            kw = {"concurrency": c, "requests": sizes.requests(c, tls=True),
                  "warmup": sizes.warmup}
            results.add(f"drpd create c{c} tls", await drive(drpd_tls, tls.create(), **kw))
            results.add(f"bare POST c{c} tls", await drive(bare_tls, bare_post(), **kw))
            results.add(f"drpd get c{c} tls", await drive(drpd_tls, tls.get(c), **kw))
            results.add(f"bare GET c{c} tls", await drive(bare_tls, bare_get(), **kw))

    row = stored_row(machine_body("bench-row", str(uuid.uuid4())))
    raw = RawSQLite(work_dir / "raw.db")
    try:
        results.add("sqlite insert (thread)", await sqlite_in_thread(raw, row, sizes.sqlite))
        results.add("sqlite insert (to_thread hop)",
                    await sqlite_per_hop(raw, row, sizes.sqlite // 2, own_thread=False))
        results.add("sqlite insert (store thread hop)",
                    await sqlite_per_hop(raw, row, sizes.sqlite // 2, own_thread=True))
    finally:
        raw.close()
    store = SQLiteStore(work_dir / "store.db")
    await store.open()
    try:
        create, modify = await store_writes(store, sizes.store, "s")
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
    results.add("store.create in-process", create)
    results.add("store.modify in-process", modify)


def remove_db(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


def figures_from(results: Results, sizes: Sizes) -> list[Figure]:
    figs: list[Figure] = []

    def fig(name: str, unit: str, drpd: str, base: str, base_label: str, attr: str) -> None:
        d, b = results[drpd], results[base]
        figs.append(Figure(name, getattr(d, attr), unit, getattr(b, attr), base_label,
                           value_rounds=d.per_round(attr), baseline_rounds=b.per_round(attr)))

    def three(label: str, drpd: str, base: str, base_label: str) -> None:
        fig(f"{label} throughput", "req/s", drpd, base, base_label, "rate")
        fig(f"{label} p50", "ms", drpd, base, base_label, "p50_ms")
        fig(f"{label} p99", "ms", drpd, base, base_label, "p99_ms")

    for c in CONCURRENCIES:
        three(f"create c{c} http", f"drpd create c{c}", f"bare POST c{c}", f"bare quart POST c{c}")
        three(f"update c{c} http", f"drpd update c{c}", f"bare POST c{c}", f"bare quart POST c{c}")
        three(f"get c{c} http", f"drpd get c{c}", f"bare GET c{c}", f"bare quart GET c{c}")
    for c in CONCURRENCIES:
        three(f"create c{c} http vs durable POST", f"drpd create c{c}",
              f"bare durable POST c{c}", f"bare quart POST + SQLite commit c{c}")
    for c in CONCURRENCIES:
        if f"drpd create c{c} tls" in results:
            three(f"create c{c} https", f"drpd create c{c} tls", f"bare POST c{c} tls",
                  f"bare quart POST c{c} https")
            three(f"get c{c} https", f"drpd get c{c} tls", f"bare GET c{c} tls",
                  f"bare quart GET c{c} https")

    if "drpd create c1 large" in results:
        n = f"{sizes.large:,}"
        for op in ("create", "update", "get"):
            fig(f"{op} c1 http @{n} machines p50", "ms", f"drpd {op} c1 large", f"drpd {op} c1",
                f"drpd {op} c1 p50, fresh store", "p50_ms")
            fig(f"{op} c1 http @{n} machines throughput", "req/s", f"drpd {op} c1 large",
                f"drpd {op} c1", f"drpd {op} c1, fresh store", "rate")

    # the floors of a durable write: HTTP + SQLite
    raw, post1 = results["sqlite insert (thread)"], results["bare POST c1"]
    floor_rounds = [p + q for p, q in zip(post1.per_round("p50_ms"), raw.per_round("p50_ms"),
                                           strict=True)]
    for op in ("create", "update"):
        d = results[f"drpd {op} c1"]
        figs.append(Figure(f"{op} c1 http p50 vs floor", d.p50_ms, "ms",
                           post1.p50_ms + raw.p50_ms,
                           "bare POST c1 p50 + raw SQLite insert p50",
                           value_rounds=d.per_round("p50_ms"), baseline_rounds=floor_rounds))
    for c in CONCURRENCIES:
        fig(f"create c{c} http throughput vs SQLite", "req/s", f"drpd create c{c}",
            "sqlite insert (thread)", "raw SQLite inserts/s, 1 writer thread", "rate")
    for op in ("create", "modify"):
        fig(f"store.{op} in-process (no HTTP) throughput", "ops/s", f"store.{op} in-process",
            "sqlite insert (thread)", "raw SQLite inserts/s, 1 writer thread", "rate")
        fig(f"store.{op} in-process (no HTTP) p50", "ms", f"store.{op} in-process",
            "sqlite insert (store thread hop)", "raw SQLite insert via the store's thread p50",
            "p50_ms")
    fig("SQLite insert via trio.to_thread p50", "ms",
        "sqlite insert (to_thread hop)", "sqlite insert (thread)",
        "raw SQLite insert p50, timed in its thread", "p50_ms")
    fig("SQLite insert via the store's thread p50 (floor of store writes)", "ms",
        "sqlite insert (store thread hop)", "sqlite insert (thread)",
        "raw SQLite insert p50, timed in its thread", "p50_ms")
    fig("SQLite insert via the store's thread vs via trio.to_thread p50", "ms",
        "sqlite insert (store thread hop)", "sqlite insert (to_thread hop)",
        "the same insert via trio.to_thread p50", "p50_ms")
    return figs


# -- profiling ------------------------------------------------------------------------------
def run_profile(sizes: Sizes, work_dir: Path, out: Path) -> None:
    launch = ["-m", "cProfile", "-o", str(out), "-m", "drpd.daemon"]
    with LaunchedDrpd(work_dir / "drpd-prof", no_tls=True, launch=launch) as d:
        seed_references(d)
        make = client_factory(d.endpoint, headers=basic_auth_header(*d.auth))
        load = Workload("p")
        results = Results()

        async def main() -> None:
            kw: dict[str, Any] = {"concurrency": 32, "requests": sizes.c32, "warmup": 1}
            results.add("drpd create c32 (profiled)", await drive(make, load.create(), **kw))
            results.add("drpd update c32 (profiled)", await drive(make, load.update(32), **kw))
            results.add("drpd get c32 (profiled)", await drive(make, load.get(32), **kw))

        trio.run(main)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--no-tls", action="store_true", help="skip the HTTPS runs")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/store.json, "
                             "or store-quick.json with --quick)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="instead: run drpd under cProfile at concurrency 32, print where "
                             "its time goes and keep the profile in FILE")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("store-quick.json" if args.quick else "store.json")
    work_dir = Path(tempfile.mkdtemp(prefix="drpd-bench-store-"))
    started = time.monotonic()
    try:
        if args.profile:
            run_profile(sizes, work_dir, work_dir / "drpd.prof")
            shutil.copy(work_dir / "drpd.prof", args.profile)
            print(f"profile written to {args.profile}")
            return 0
        meta = machine_info()
        results = Results()
        large_dir = work_dir / "drpd-large"
        large_dir.mkdir()
        large_keys = trio.run(preload, StateDir(large_dir).db, sizes.large)
        print(f"preloaded {len(large_keys):,} machines in {time.monotonic() - started:.1f} s",
              flush=True)
        with ExitStack() as stack:
            servers = Servers(
                drpd=stack.enter_context(DrpdProcess(work_dir / "drpd", no_tls=True)),
                bare=stack.enter_context(BareQuart(db=str(work_dir / "bare-store.db"))),
                large=stack.enter_context(DrpdProcess(large_dir, no_tls=True)),
            )
            if not args.no_tls:
                servers.drpd_tls = stack.enter_context(DrpdProcess(work_dir / "drpd-tls"))
                ca = servers.drpd_tls.ca_cert
                servers.bare_tls = stack.enter_context(
                    BareQuart(certfile=ca, keyfile=str(Path(ca).with_name("server.key"))))
            for d in (servers.drpd, servers.drpd_tls):
                if d is not None:
                    seed_references(d)
            large = Workload("L", large_keys)
            drpds = [d for d in (servers.drpd, servers.drpd_tls, servers.large) if d]
            for r in range(sizes.rounds):
                if r:
                    for d in (servers.drpd, servers.drpd_tls):
                        if d is not None:
                            fresh_start(d)
                    remove_db(work_dir / "raw.db")
                    remove_db(work_dir / "store.db")
                print(f"round {r + 1}/{sizes.rounds}: drpd {servers.drpd.endpoint}, "
                      f"bare {servers.bare.endpoint}"
                      + (f", drpd {servers.drpd_tls.endpoint}" if servers.drpd_tls else ""),
                      flush=True)
                trio.run(run_round, servers, sizes, work_dir, results, large)
                for d in drpds:
                    if d.proc is None or d.proc.poll() is not None:
                        raise RuntimeError(f"drpd exited during the run:\n{d.log_text()[-2000:]}")
        figures = figures_from(results, sizes)
        print()
        print_table(figures, title=(
            f"drpd store/REST benchmark, medians of {sizes.rounds} rounds. ratio = drpd / baseline"
            " (of the medians); paired = median of per-round ratios.\n'http' = plain HTTP"
            " (drpd --no-tls), 'https' = drpd's own TLS; every round starts on an empty store."))
        duration = time.monotonic() - started
        meta.update(duration_s=round(duration, 1), quick=args.quick, client=(
            "this process: one kept-alive httpx.AsyncClient per concurrent worker, under trio;"
            " servers on 127.0.0.1 on the same machine"))
        settings = asdict(sizes) | {
            "concurrencies": list(CONCURRENCIES),
            "row_bytes": len(stored_row(machine_body("bench-row", str(uuid.uuid4())))),
            "update": "merge PATCH (application/merge-patch+json) of Description and one param",
            "bare_post_body": "the same machine JSON as drpd's create",
        }
        path = write_results(
            output, benchmark="store", meta=meta, figures=figures, settings=settings,
            measurements={name: r.to_json() for name, r in results.rounds.items()},
        )
        print(f"\nwrote {path} in {duration:.0f} s")
        return 0
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
