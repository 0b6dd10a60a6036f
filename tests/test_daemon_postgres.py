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
from .plugin_helpers import install, wait_plugin

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
    with DrpdProcess(state, "--store", url, env={"DRPD_STOP_GRACE": "2"}) as drpd:
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
