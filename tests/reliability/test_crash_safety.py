"""SIGKILL drpd in the middle of many concurrent writes: nothing acknowledged is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from .scale import size

WRITES = size(300, 1_000)


async def test_sigkill_mid_concurrent_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    drpd = DrpdProcess(state, no_tls=True).start()
    acknowledged: dict[str, int] = {}
    failed: list[str] = []
    half = trio.Event()

    async def write(client: httpx.AsyncClient, i: int) -> None:
        name = f"w{i}"
        try:
            r = await client.post("/machines", json={"Name": name, "Params": {"i": i}})
        except httpx.HTTPError as exc:
            failed.append(f"{name}: {type(exc).__name__}")
            return
        if r.status_code == 201:
            acknowledged[name] = i
            if len(acknowledged) >= WRITES // 2:
                half.set()
        else:
            failed.append(f"{name}: {r.status_code}")

    limits = httpx.Limits(max_connections=WRITES, max_keepalive_connections=WRITES)
    async with api_client(drpd, limits=limits) as client:
        async with trio.open_nursery() as nursery:
            for i in range(WRITES):
                nursery.start_soon(write, client, i)
            with trio.fail_after(120):
                await half.wait()
            drpd.kill()
    # every write either was acknowledged or failed visibly at the client
    assert len(acknowledged) + len(failed) == WRITES
    with sqlite3.connect(state / "drpd.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    drpd.start()
    try:
        async with api_client(drpd) as api:
            stored = {m["Name"]: m for m in (await api.get("/machines")).json()}
        lost = sorted(set(acknowledged) - set(stored))
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
        assert all(stored[n]["Params"] == {"i": i} for n, i in acknowledged.items())
        # nothing half-written: every stored machine is whole
        assert all(m["Uuid"] and m["Name"].startswith("w") for m in stored.values())
    finally:
        drpd.stop()
