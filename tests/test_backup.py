"""``drpd backup`` while drpd runs, ``drpd restore`` into a stopped one."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from drpd.store.sqlite import SCHEMA_VERSION
from drpd.testing import DrpdProcess

from .helpers import api_client


def drpd_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drpd.daemon", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


async def names(api: httpx.AsyncClient, prefix: str) -> list[str]:
    return [o["Name"] for o in (await api.get(f"/{prefix}")).json()]


async def test_backup_while_running_and_restore_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "state"
    backup_file = tmp_path / "backups" / "drpd-backup.db"
    backup_file.parent.mkdir()
    drpd = DrpdProcess(state, no_tls=True).start()
    try:
        async with api_client(drpd) as api:
            for i in range(20):
                r = await api.post("/profiles", json={"Name": f"before{i}", "Params": {"i": i}})
                assert r.status_code == 201
            machine = (await api.post("/machines", json={"Name": "m1"})).json()

            # a writer keeps committing, one acknowledged write after another,
            # while the backup runs in another process
            written: list[str] = []
            enough = trio.Event()
            done = trio.Event()

            async def writer() -> None:
                i = 0
                while not done.is_set():
                    r = await api.post("/profiles", json={"Name": f"during{i:05d}"})
                    assert r.status_code == 201
                    written.append(f"during{i:05d}")
                    if len(written) == 20:
                        enough.set()
                    i += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                with trio.fail_after(30):
                    await enough.wait()
                result = await trio.to_thread.run_sync(
                    lambda: drpd_cli("backup", str(backup_file), "--state-dir", str(state)))
                done.set()
            assert result.returncode == 0, result.stderr
            assert "backed up" in result.stdout

            # refused while drpd runs: it holds every object in memory
            busy = await trio.to_thread.run_sync(
                lambda: drpd_cli("restore", str(backup_file), "--state-dir", str(state)))
            assert busy.returncode == 1 and "drpd is running" in busy.stderr, busy.stderr

            await api.delete("/profiles/before0")
            await api.post("/profiles", json={"Name": "after"})
        assert drpd.stop() == 0

        # the copy is one self-contained, consistent file: some prefix of the
        # sequential writes, with no gap
        with sqlite3.connect(backup_file) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            keys = [k for (k,) in db.execute(
                "SELECT key FROM objects WHERE prefix='profiles' AND key LIKE 'during%' "
                "ORDER BY key")]
        db.close()
        assert keys == written[:len(keys)] and len(keys) >= 20
        assert not list(backup_file.parent.glob(".*tmp"))

        restored = drpd_cli("restore", str(backup_file), "--state-dir", str(state))
        assert restored.returncode == 0, restored.stderr
        assert (state / "drpd.db.pre-restore").exists()
        drpd.start()
        async with api_client(drpd) as api:
            profiles = await names(api, "profiles")
            assert "before0" in profiles and "after" not in profiles
            assert [p for p in profiles if p.startswith("during")] == keys
            assert (await api.get(f"/machines/{machine['Uuid']}")).json() == machine
            assert (await api.get("/profiles/before3")).json()["Params"] == {"i": 3}
    finally:
        drpd.stop()
        drpd.kill()


def test_restore_refuses_bad_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    good = tmp_path / "good.db"
    with DrpdProcess(state, no_tls=True):
        pass
    assert drpd_cli("backup", str(good), "--state-dir", str(state)).returncode == 0
    before = (state / "drpd.db").read_bytes()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    newer = tmp_path / "newer.db"
    newer.write_bytes(good.read_bytes())
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()

    for path, needle in [(garbage, "not a usable SQLite database"),
                         (newer, "newer than this drpd"),
                         (foreign, "not a drpd store"),
                         (tmp_path / "missing.db", "no backup file")]:
        result = drpd_cli("restore", str(path), "--state-dir", str(state))
        assert result.returncode == 1 and needle in result.stderr, (path, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("drpd: "), result.stderr
    # nothing was touched
    assert (state / "drpd.db").read_bytes() == before
    assert not (state / "drpd.db.pre-restore").exists()
    assert sorted(p.name for p in state.iterdir() if p.name.startswith(".drpd.db")) == []


def test_backup_of_a_missing_store_fails_cleanly(tmp_path: Path) -> None:
    result = drpd_cli("backup", str(tmp_path / "out.db"), "--state-dir", str(tmp_path / "none"))
    assert result.returncode == 1 and "no store at" in result.stderr
    assert not (tmp_path / "out.db").exists()


def test_backup_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True):
        pass
    result = drpd_cli("backup", str(tmp_path / "no" / "such" / "dir.db"), "--state-dir", str(state))
    assert result.returncode == 1 and "No such file or directory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
