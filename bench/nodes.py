"""Benchmark: drpd on PostgreSQL, one node against three (issue 16).

    .venv/bin/python bench/nodes.py            # full run, about 3 minutes
    .venv/bin/python bench/nodes.py --quick    # CI smoke run, tiny sizes

What is measured, in one run (figures are medians of ``rounds``):

- create p50 at one client: a drpd on PostgreSQL against the same drpd on
  its embedded SQLite store (both ``--no-tls``, fresh stores);
- create throughput at 32 clients: three nodes on one PostgreSQL (clients
  spread over them) against one node on it;
- action throughput at 32 clients (``sdk_echo`` ``echo`` with
  ``?plugin=``, three instances): three nodes, each client on a fixed node,
  so two calls in three are forwarded to the node running the instance,
  against one node running all three;
- failover: SIGKILL the node running an instance, until another node shows
  it Available, next to the lease length (``lease_seconds``).

Everything (PostgreSQL included: a throw-away ``initdb`` cluster) binds
127.0.0.1; every loop is bounded. All nodes share this machine's two cores
with the client and the database: three nodes on one box show what the
coordination costs, not what three machines would give.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    Figure,
    Op,
    Rounds,
    client_factory,
    drive,
    expect,
    machine_info,
    print_table,
    run_main,
    write_results,
)
from bench.store import encode, machine_body, seed_references  # noqa: E402
from drpd.testing import DrpdProcess  # noqa: E402
from tests.pg_cluster import PgCluster  # noqa: E402
from tests.plugin_helpers import install  # noqa: E402

LEASE = 4.0
NODE_ENV = {"DRPD_LEASE_SECONDS": str(LEASE), "DRPD_STOP_GRACE": "0.5",
            "DRPD_SHUTDOWN_TIMEOUT": "20", "DRPD_ACTION_CONCURRENCY": "256"}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Sizes:
    rounds: int
    c1: int
    c32: int
    failovers: int


FULL = Sizes(rounds=3, c1=150, c32=600, failovers=3)
QUICK = Sizes(rounds=1, c1=20, c32=64, failovers=1)


@contextmanager
def nodes(tmp: Path, url: str | None, count: int) -> Iterator[list[DrpdProcess]]:
    """``count`` drpd nodes on ``url`` (None: one node on its own SQLite)."""
    with ExitStack() as stack:
        started = []
        for i in range(count):
            state = tmp / f"n{i}-{uuid.uuid4().hex[:6]}"
            install(state / "plugins", "sdk_echo")
            args = ("--store", url) if url else ()
            node = DrpdProcess(state, *args, no_tls=True,
                               env={**NODE_ENV, "DRPD_NODE_NAME": f"n{i}"})
            started.append(stack.enter_context(node))
        seed_references(started[0])  # the workflow and bootenv the machines name
        yield started


def auth_headers(node: DrpdProcess) -> dict[str, str]:
    from bench.common import basic_auth_header

    return basic_auth_header(*node.auth)


def create_op(prefix: str) -> Op:
    async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
        body = encode(machine_body(f"{prefix}-{w}-{i}", str(uuid.uuid4())))
        expect(await client.post("/api/v3/machines", content=body, headers=JSON), 201)

    return op


async def spread_drive(targets: list[DrpdProcess], op: Op, *, concurrency: int,
                       requests: int) -> Any:
    """``drive`` with worker w's client on node w % len(targets)."""
    made = 0

    def make() -> httpx.AsyncClient:
        nonlocal made
        node = targets[made % len(targets)]
        made += 1
        return client_factory(node.endpoint, headers=auth_headers(node))()

    return await drive(make, op, concurrency=concurrency, requests=requests, warmup=2)


async def wait_available(api: httpx.AsyncClient, names: list[str], not_on: str = "",
                         limit: float = 60) -> dict[str, Any]:
    with trio.fail_after(limit):
        while True:
            shown = {p["Name"]: p for p in (await api.get("/api/v3/plugins")).json()}
            if all(shown.get(n, {}).get("Available")
                   and shown[n]["Runtime"]["Node"] != not_on for n in names):
                return {n: shown[n]["Runtime"] for n in names}
            await trio.sleep(0.05)


async def instances(node: DrpdProcess, names: list[str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.endpoint, headers=auth_headers(node),
                                 trust_env=False, timeout=30) as api:
        for name in names:
            r = await api.post("/api/v3/plugins", json={
                "Name": name, "Provider": "sdk_echo", "Params": {"echo/greeting": name}})
            expect(r, 201)
        machine = expect(await api.post("/api/v3/machines", json={"Name": "bench-target"}),
                         201).json()
        runtimes = await wait_available(api, names)
    return {"machine": machine["Uuid"], "runtimes": runtimes}


def action_op(machine: str, names: list[str]) -> Op:
    async def op(client: httpx.AsyncClient, w: int, i: int) -> None:
        name = names[(w + i) % len(names)]
        expect(await client.post(f"/api/v3/machines/{machine}/actions/echo",
                                 params={"plugin": name}, content=b"{}", headers=JSON), 200)

    return op


async def measure(sizes: Sizes, tmp: Path, cluster: PgCluster) -> tuple[list[Figure], dict[str, Any]]:
    create_sqlite, create_pg = Rounds("create c1 sqlite"), Rounds("create c1 postgresql")
    create_one, create_three = Rounds("create c32 1 node"), Rounds("create c32 3 nodes")
    action_one, action_three = Rounds("action c32 1 node"), Rounds("action c32 3 nodes")
    failovers: list[float] = []
    names = ["e0", "e1", "e2"]
    for r in range(sizes.rounds):
        with nodes(tmp, None, 1) as (solo,):
            create_sqlite.add(await spread_drive([solo], create_op(f"s{r}"), concurrency=1,
                                                 requests=sizes.c1))
        with nodes(tmp, cluster.create_database(f"b{uuid.uuid4().hex[:12]}"), 1) as (one,):
            create_pg.add(await spread_drive([one], create_op(f"p{r}"), concurrency=1,
                                             requests=sizes.c1))
            create_one.add(await spread_drive([one], create_op(f"o{r}"), concurrency=32,
                                              requests=sizes.c32))
            setup = await instances(one, names)
            action_one.add(await spread_drive([one], action_op(setup["machine"], names),
                                              concurrency=32, requests=sizes.c32))
        with nodes(tmp, cluster.create_database(f"b{uuid.uuid4().hex[:12]}"), 3) as three:
            create_three.add(await spread_drive(three, create_op(f"t{r}"), concurrency=32,
                                                requests=sizes.c32))
            setup = await instances(three[0], names)
            action_three.add(await spread_drive(three, action_op(setup["machine"], names),
                                                concurrency=32, requests=sizes.c32))
    for _ in range(sizes.failovers):
        with nodes(tmp, cluster.create_database(f"f{uuid.uuid4().hex[:12]}"), 3) as three:
            setup = await instances(three[0], names)
            victim_name = setup["runtimes"]["e0"]["Node"]
            victim = next(n for n in three if n.extra_env["DRPD_NODE_NAME"] == victim_name)
            watcher = next(n for n in three if n is not victim)
            async with httpx.AsyncClient(base_url=watcher.endpoint, trust_env=False,
                                         headers=auth_headers(watcher), timeout=30) as api:
                t0 = trio.current_time()
                victim.kill()
                await wait_available(api, ["e0"], not_on=victim_name, limit=LEASE + 30)
                failovers.append(trio.current_time() - t0)
    figures = [
        Figure("create c1 p50, PostgreSQL vs SQLite", create_pg.p50_ms, "ms",
               create_sqlite.p50_ms, "the same drpd on SQLite",
               value_rounds=create_pg.per_round("p50_ms"),
               baseline_rounds=create_sqlite.per_round("p50_ms")),
        Figure("create c32 throughput, 3 nodes vs 1", create_three.rate, "req/s",
               create_one.rate, "one node on PostgreSQL",
               value_rounds=create_three.per_round("rate"),
               baseline_rounds=create_one.per_round("rate")),
        Figure("action c32 throughput, 3 nodes vs 1", action_three.rate, "req/s",
               action_one.rate, "one node running the 3 instances",
               note="2 of 3 calls forwarded to the node running the instance",
               value_rounds=action_three.per_round("rate"),
               baseline_rounds=action_one.per_round("rate")),
        Figure("failover: SIGKILL -> Available elsewhere", statistics.median(failovers), "s",
               LEASE, "lease_seconds", note=f"median of {len(failovers)}: {failovers}"),
    ]
    measurements = {r.name: r.to_json() for r in (create_sqlite, create_pg, create_one,
                                                  create_three, action_one, action_three)}
    measurements["failover_s"] = failovers
    return figures, measurements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("nodes-quick.json" if args.quick else "nodes.json")
    meta = machine_info()
    cluster = PgCluster()
    try:
        cluster.start()
        with tempfile.TemporaryDirectory(prefix="drpd-bench-nodes-") as tmp:
            figures, measurements = trio.run(measure, sizes, Path(tmp), cluster)
    finally:
        cluster.destroy()
    print_table(figures, title="drpd on PostgreSQL: one node and three")
    write_results(output, benchmark="nodes", meta=meta, figures=figures,
                  measurements=measurements, settings={"sizes": sizes.__dict__,
                                                       "lease_seconds": LEASE})
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    run_main(main)
