"""The SQLite store in-process: change hook order, Seq, atomicity, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
import trio

from drpd.models import Conflict, Event, Machine, NotFound, PreconditionFailed, Profile
from drpd.store import SQLiteStore
from drpd.store.sqlite import SCHEMA_VERSION, StoreVersionError


async def open_store(path: Path, events: list[Event]) -> SQLiteStore:
    store = SQLiteStore(path, on_change=events.append)
    await store.open()
    return store


async def test_change_hook_in_commit_order(tmp_path: Path) -> None:
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)

    async def write(i: int) -> None:
        await store.create("profiles", Profile(Name=f"p{i}"), principal="t")

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(write, i)
    await store.modify("profiles", "p1", lambda o: msgspec.structs.replace(o, Description="d"),
                       principal="u")
    await store.delete("profiles", "p2", principal="u")
    seqs = [e.Seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == 52
    update, delete = events[-2], events[-1]
    assert (update.Action, update.Key, update.Object["Description"]) == ("update", "p1", "d")
    assert update.Original["Description"] == "" and update.Principal == "u"
    assert (delete.Action, delete.Key) == ("delete", "p2")
    assert [r.obj.Name for r in store.list("profiles")][:3] == ["p0", "p1", "p10"]
    await store.aclose()


async def test_seq_continues_across_restart(tmp_path: Path) -> None:
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    await store.create("profiles", Profile(Name="a"), principal="t")
    await store.emit(Event(Type="x", Action="y"))
    last = events[-1].Seq
    await store.aclose()
    store = await open_store(tmp_path / "db", events)
    await store.emit(Event(Type="x", Action="y"))
    await store.create("profiles", Profile(Name="b"), principal="t")
    assert events[-2].Seq > last and events[-1].Seq > events[-2].Seq
    assert store.get("profiles", "a") is not None
    await store.aclose()


async def test_failed_writes_change_nothing(tmp_path: Path) -> None:
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    rec = await store.create("machines", Machine(Uuid="u1", Name="m"), principal="t")
    with pytest.raises(Conflict):
        await store.create("machines", Machine(Uuid="u1", Name="other"), principal="t")
    with pytest.raises(Conflict):
        await store.create("machines", Machine(Uuid="u2", Name="m"), principal="t")
    with pytest.raises(PreconditionFailed):
        await store.delete("machines", "u1", principal="t", if_rev=rec.rev + 100)
    with pytest.raises(NotFound):
        await store.delete("machines", "nope", principal="t")

    def boom(old: Machine) -> Machine:
        raise ValueError("mutator refused")

    with pytest.raises(ValueError):
        await store.modify("machines", "u1", boom, principal="t")
    with pytest.raises(NotFound):
        await store.transact([("profiles", "p", Profile(Name="p")), ("profiles", "zz", None)],
                             principal="t")
    assert store.get("profiles", "p") is None and len(events) == 1
    await store.aclose()
    with sqlite3.connect(tmp_path / "db") as db:
        assert db.execute("SELECT count(*) FROM objects").fetchone()[0] == 1


async def test_transact_is_all_or_nothing_and_ordered(tmp_path: Path) -> None:
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    await store.transact([("profiles", f"b{i}", Profile(Name=f"b{i}")) for i in range(3)],
                         principal="t")
    assert [e.Key for e in events] == ["b0", "b1", "b2"]
    await store.aclose()


async def test_cancelled_writer_leaves_memory_and_disk_in_step(tmp_path: Path) -> None:
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    for i in range(20):
        with trio.move_on_after(0):
            await store.create("profiles", Profile(Name=f"c{i}"), principal="t")
    in_memory = {r.obj.Name for r in store.list("profiles")}
    await store.aclose()
    store = await open_store(tmp_path / "db", [])
    assert {r.obj.Name for r in store.list("profiles")} == in_memory
    assert {e.Key for e in events} == in_memory
    await store.aclose()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db", [])
    await store.aclose()
    with sqlite3.connect(tmp_path / "db") as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreVersionError):
        await SQLiteStore(tmp_path / "db").open()


async def test_wal_and_full_sync(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db", [])
    await store.aclose()
    with sqlite3.connect(tmp_path / "db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_backup_is_consistent(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db", [])
    await store.create("profiles", Profile(Name="x"), principal="t")
    await store.backup(tmp_path / "copy.db")
    await store.aclose()
    copy = await open_store(tmp_path / "copy.db", [])
    assert copy.get("profiles", "x") is not None
    await copy.aclose()
