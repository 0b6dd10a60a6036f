"""A restart on a store seeded with oversized and odd objects: drpd starts and serves.

Issue 11 ("no stored object can stop drpd from starting"). The objects are
written into SQLite directly, as an older drpd, a restored backup or a
hand edit could have left them: values far over every limit, names the API
would refuse, StoreObjects prefixes that are fixed routes, records of
prefixes nobody declares, rows that are not the JSON of their kind.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..ws_helpers import connect

MIB = 1024 * 1024
BIG = "6c1e1f4e-0000-4000-8000-000000000001"


def seed(db: Path) -> None:
    huge = "x" * (24 * MIB)
    rows: list[tuple[str, str, bytes]] = [
        ("machines", BIG, json.dumps({"Name": "big", "Uuid": BIG,
                                      "Params": {"blob": huge}}).encode()),
        ("profiles", "deep", json.dumps({"Name": "deep", "Params": {
            "nest": json.loads("[" * 200 + "]" * 200)}}).encode()),
        ("profiles", "../../etc", json.dumps({"Name": "../../etc"}).encode()),
        ("profiles", ".hidden", json.dumps({"Name": ".hidden"}).encode()),
        ("profiles", "n" * 5000, json.dumps({"Name": "n" * 5000}).encode()),
        ("profiles", "snow\u2603\x00man", json.dumps({"Name": "snow\u2603\x00man"}).encode()),
        ("profiles", "notjson", b"{not json"),
        ("profiles", "wrongtype", json.dumps({"Name": 7, "Params": []}).encode()),
        ("plugin_providers", "squatter", json.dumps({
            "Name": "squatter", "PluginVersion": 4,
            "StoreObjects": {"healthz": {}, "events": {}, "ok_prefix": {"type": "nosuchtype"}},
        }).encode()),
        ("plugin_providers", ".hidden", json.dumps({"Name": ".hidden", "PluginVersion": 4}).encode()),
        ("plugins", "orphan", json.dumps({"Name": "orphan", "Provider": "nosuchprovider"}).encode()),
        ("healthz", "x", json.dumps({"Id": "x"}).encode()),
        ("nosuchprefix", "y", json.dumps({"Id": "y", "v": huge[:MIB]}).encode()),
    ]
    with sqlite3.connect(db) as conn:
        for seq, (prefix, key, data) in enumerate(rows, start=1_000):
            conn.execute("INSERT OR REPLACE INTO objects (prefix, key, rev, data) VALUES (?, ?, ?, ?)",
                         (prefix, key, seq, data))


async def test_drpd_starts_and_serves_on_a_poisoned_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True):
        pass  # creates the store
    seed(state / "drpd.db")
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            assert (await api.get("/info")).status_code == 200
            assert (await api.get("/healthz")).status_code == 200
            r = await api.get(f"/machines/{BIG}")
            assert r.status_code == 200 and len(r.json()["Params"]["blob"]) == 24 * MIB
            assert (await api.get("/profiles")).status_code == 200
            r = await api.get("/plugins/orphan")
            assert r.status_code == 200 and not r.json()["Available"]
            # writes and events go on
            async with connect(drpd) as ws:
                await ws.ws.send_message("register machines.*.*")
                assert (await ws.next())["Action"] == "register"
                r = await api.post("/machines", json={"Name": "fresh"})
                assert r.status_code == 201, r.text
                with trio.fail_after(10):
                    assert (await ws.next())["Key"] == r.json()["Uuid"]
            # an update of the oversized machine is one ordinary event too
            r = await api.patch(f"/machines/{BIG}", json=[
                {"op": "replace", "path": "/Description", "value": "still here"}])
            assert r.status_code in (200, 413, 422), r.text
            # the fixed routes stay fixed: unauthenticated /healthz is the health check
            async with api_client(drpd, auth=None) as anonymous:
                assert (await anonymous.get("/healthz")).status_code == 200
                assert (await anonymous.post("/healthz", json={"Id": "z"})).status_code != 500
        log = drpd.log_text()
        assert "cannot be read and are not served" in log
        assert "Traceback" not in log, log[-3000:]
    # and once more: a restart after serving keeps starting
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            assert (await api.get("/machines/fresh")).status_code in (200, 404)
            assert (await api.get("/info")).status_code == 200
