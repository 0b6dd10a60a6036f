"""``drpd serve --store postgresql://...``: the daemon on the PostgreSQL store
(issue 16, step 1): objects survive a restart, the plugin side follows the
feed, a lost database is a clear 503, and the password never shows."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from drpd.testing import DrpdProcess

from .helpers import api_client
from .pg_cluster import PgCluster
from .plugin_helpers import install, wait_for, wait_plugin

SECRET = "hunter2-not-shown"


def with_password(url: str) -> str:
    """The same URL with a password (the test cluster trusts, so any works)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"postgres:{SECRET}@{parts.hostname}:{parts.port}"))


async def test_drpd_serves_from_postgresql(tmp_path: Path, pg_url: str,
                                           pg_cluster: PgCluster) -> None:
    url = with_password(pg_url)
    state = tmp_path / "state"
    install(state / "plugins", "sdk_echo")
    # a stop must not wait for shutdown_timeout (the feed and heartbeat tasks
    # are cancelled once the ordered shutdown is done): restart() gives it 30 s
    env = {"DRPD_STOP_GRACE": "2", "DRPD_SHUTDOWN_TIMEOUT": "120"}
    with DrpdProcess(state, "--store", url, env=env) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/machines", json={"Name": "pg-m1"})
            assert r.status_code == 201, r.text
            r = await api.post("/plugins", json={"Name": "e1", "Provider": "sdk_echo",
                                                 "Params": {"echo/greeting": "hi"}})
            assert r.status_code == 201 and r.json()["Available"], r.text
            info = (await api.get("/info")).text
            assert SECRET not in info
        # the objects live in PostgreSQL, not in the state directory's SQLite file
        assert not (state / "drpd.db").exists()
        drpd.restart()
        async with api_client(drpd) as api:
            names = [m["Name"] for m in (await api.get("/machines")).json()]
            assert names == ["pg-m1"]
            await wait_plugin(api, "e1", lambda p: p["Available"])
            # the database goes away: writes answer a clear 503, reads still answer
            pg_cluster.stop("immediate")
            try:
                r = await api.post("/machines", json={"Name": "pg-m2"})
                assert r.status_code == 503, r.text
                assert "PostgreSQL store is unreachable" in r.json()["Messages"][0]
                assert SECRET not in r.text
                assert (await api.get("/machines")).status_code == 200
            finally:
                pg_cluster.start()
            r = await api.post("/machines", json={"Name": "pg-m2"})
            assert r.status_code == 201, r.text
    assert SECRET not in drpd.log_text()


def test_a_store_url_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="store_url must be empty"):
        DrpdProcess(tmp_path / "s", "--store", "mysql://x", start_timeout=15).start()


def test_an_unreachable_store_stops_drpd_with_the_password_hidden(tmp_path: Path) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/nothing"
    with pytest.raises(RuntimeError) as failed:
        DrpdProcess(tmp_path / "s", "--store", url, start_timeout=30).start()
    text = str(failed.value)
    assert "cannot open the store postgresql://postgres:***@127.0.0.1:1/nothing" in text
    assert SECRET not in text


async def test_nodes_on_one_database_see_each_other(tmp_path: Path, pg_url: str) -> None:
    """Two drpd nodes on one PostgreSQL store: GET /nodes on either lists both,
    each marks itself; a killed node is ``gone`` after its missed heartbeats."""
    advertised = "https://node-b.example:8092"
    with DrpdProcess(tmp_path / "a", "--store", pg_url, env={"DRPD_NODE_NAME": "node-a"}) as a, \
            DrpdProcess(tmp_path / "b", "--store", pg_url,
                        env={"DRPD_NODE_NAME": "node-b", "DRPD_NODE_ENDPOINT": advertised}) as b:
        async with api_client(a) as api_a, api_client(b) as api_b:

            async def both_alive() -> list[dict[str, object]] | None:
                nodes = (await api_a.get("/nodes")).json()
                alive = {n["Name"] for n in nodes if n["State"] == "alive"}
                return nodes if alive == {"node-a", "node-b"} else None

            nodes = await wait_for(both_alive, 15)
            assert [n["Self"] for n in nodes] == [True, False]
            # what other nodes forward to: the bind address, or node_endpoint when set
            assert {n["Endpoint"] for n in nodes} == {a.endpoint, advertised}
            info = (await api_b.get("/info")).json()
            me = next(n for n in (await api_b.get("/nodes")).json() if n["Self"])
            assert me["Name"] == "node-b" and info["local_id"] == me["Id"]
            # a write through one node is read through the other
            r = await api_a.post("/profiles", json={"Name": "from-a"})
            assert r.status_code == 201
            await wait_for(lambda: _has_profile(b, "from-a"), 10)
            b.kill()

            async def b_gone() -> bool:
                nodes = (await api_a.get("/nodes")).json()
                return any(n["Name"] == "node-b" and n["State"] == "gone" for n in nodes)

            assert await wait_for(b_gone, 20)


def _has_profile(drpd: DrpdProcess, name: str) -> bool:
    import httpx

    r = httpx.get(f"{drpd.endpoint}/api/v3/profiles/{name}", auth=drpd.auth, verify=drpd.verify)
    return r.status_code == 200


async def test_one_node_on_sqlite(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "s", env={"DRPD_NODE_NAME": "solo"}) as drpd:
        async with api_client(drpd) as api:
            nodes = (await api.get("/nodes")).json()
            assert [(n["Name"], n["State"], n["Self"]) for n in nodes] == [("solo", "alive", True)]
            assert (await api.get("/info")).json()["local_id"] == nodes[0]["Id"]
            node_id = nodes[0]["Id"]
        drpd.restart()  # the id is the node's: kept in its state directory
        async with api_client(drpd) as api:
            assert (await api.get("/nodes")).json()[0]["Id"] == node_id
