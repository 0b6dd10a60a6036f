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


# -- group commit (issue 19) -------------------------------------------------------------------
async def test_concurrent_writes_share_commits_and_keep_seq_order(tmp_path: Path) -> None:
    """Fifty writers at once: fewer transactions than writes, every write
    stored and acknowledged once committed, events in Seq order with emitted
    events interleaved where their Seqs put them."""
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    done: list[int] = []

    async def write(i: int) -> None:
        record = await store.create("profiles", Profile(Name=f"p{i}"), principal="t")
        # acknowledged = durable: what a writer hears of is on disk
        row = sqlite3.connect(tmp_path / "db").execute(
            "SELECT rev FROM objects WHERE prefix = 'profiles' AND key = ?",
            (f"p{i}",)).fetchone()
        assert row == (record.rev,)
        done.append(i)

    async def announce(i: int) -> None:
        await store.emit(Event(Type="note", Action="n", Key=str(i)))

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(write, i)
            if i % 10 == 0:
                nursery.start_soon(announce, i)
    assert sorted(done) == list(range(50))
    assert store.commits < 50
    seqs = [e.Seq for e in events]
    assert seqs == sorted(seqs) and seqs == list(range(seqs[0], seqs[0] + 55))
    assert store.last_seq == seqs[-1]
    await store.aclose()
    reopened = await open_store(tmp_path / "db", [])
    assert len(reopened.list("profiles")) == 50 and reopened.last_seq >= seqs[-1]
    await reopened.aclose()


async def test_writes_check_against_writes_waiting_for_their_commit(tmp_path: Path) -> None:
    """A write queued behind an uncommitted one sees it: the same key thrice
    is one create and two Conflicts, a unique Name is claimed once, a
    modify after a create applies to the created object, a Name given up
    can be claimed at once."""
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(6)]
    outcomes: dict[str, str] = {}

    async def attempt(label: str, write: object) -> None:
        try:
            await write  # type: ignore[misc]
            outcomes[label] = "ok"
        except Conflict:
            outcomes[label] = "conflict"

    async with trio.open_nursery() as nursery:
        for n in range(3):  # three creates of one key
            nursery.start_soon(attempt, f"same{n}",
                               store.create("profiles", Profile(Name="twin"), principal="t"))
        for n in range(3):  # three machines claiming one Name
            nursery.start_soon(attempt, f"name{n}", store.create(
                "machines", Machine(Uuid=uuids[n], Name="only.one"), principal="t"))
        await trio.testing.wait_all_tasks_blocked()  # all queued (or committed)
        nursery.start_soon(attempt, "modify", store.modify(
            "profiles", "twin", lambda o: msgspec.structs.replace(o, Description="after"),
            principal="t"))
    assert sorted(outcomes[f"same{n}"] for n in range(3)) == ["conflict", "conflict", "ok"]
    assert sorted(outcomes[f"name{n}"] for n in range(3)) == ["conflict", "conflict", "ok"]
    assert outcomes["modify"] == "ok"
    record = store.get("profiles", "twin")
    assert record is not None and record.obj.Description == "after"
    assert [m.obj.Name for m in store.list("machines")] == ["only.one"]
    # a machine that gives the Name up frees it for another, in one group
    owner = store.find("machines", "Name", "only.one")
    assert owner is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, "rename", store.modify(
            "machines", owner.obj.Uuid, lambda o: msgspec.structs.replace(o, Name="moved"),
            principal="t"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(attempt, "claim", store.create(
            "machines", Machine(Uuid=uuids[5], Name="only.one"), principal="t"))
    assert outcomes["rename"] == outcomes["claim"] == "ok"
    await store.aclose()


async def test_a_failed_group_commit_fails_its_writes_and_those_behind_it(tmp_path: Path) -> None:
    """SQLite refuses one write of a group (a trigger stands in for a full
    disk): every write of that group and every write queued behind it fails
    with the error, nothing of them is in memory or on disk or announced, and
    the next write succeeds."""
    path = tmp_path / "db"
    events: list[Event] = []
    store = await open_store(path, events)
    await store.create("profiles", Profile(Name="before"), principal="t")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON objects WHEN NEW.key = 'poison' "
                 "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.commit()
    conn.close()
    failed: list[str] = []
    stored: list[str] = []

    async def write(name: str) -> None:
        try:
            await store.create("profiles", Profile(Name=name), principal="t")
            stored.append(name)
        except sqlite3.Error:
            failed.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, "first")  # leads a group of its own
        await trio.testing.wait_all_tasks_blocked(cushion=0.0)
        for name in ("a", "poison", "b"):  # one group behind it
            nursery.start_soon(write, name)
    assert stored == ["first"] and sorted(failed) == ["a", "b", "poison"]
    assert [r.obj.Name for r in store.list("profiles")] == ["before", "first"]
    assert [e.Key for e in events] == ["before", "first"]
    await store.create("profiles", Profile(Name="after"), principal="t")
    assert events[-1].Key == "after" and events[-1].Seq == events[-2].Seq + 1
    await store.aclose()
    reopened = await open_store(path, [])
    assert [r.obj.Name for r in reopened.list("profiles")] == ["after", "before", "first"]
    await reopened.aclose()


async def test_an_empty_transaction_takes_no_seq(tmp_path: Path) -> None:
    """``transact([])`` (a content bundle with nothing to write) commits
    nothing and moves no Seq: the next write's Seq follows the last one."""
    events: list[Event] = []
    store = await open_store(tmp_path / "db", events)
    await store.create("profiles", Profile(Name="a"), principal="t")
    before = store.last_seq
    assert await store.transact([], principal="t") == []
    assert store.last_seq == before
    await store.create("profiles", Profile(Name="b"), principal="t")
    assert [e.Seq for e in events] == [before, before + 1] and store.last_seq == before + 1
    await store.aclose()
