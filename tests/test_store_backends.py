"""The Store contract on both backends, and what only several nodes on PostgreSQL can show."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import trio

from drpd.models import Conflict, Event, Machine, NotFound, PreconditionFailed, Profile
from drpd.store import SQLiteStore
from drpd.store.postgres import SCHEMA_VERSION, PostgresStore
from drpd.store.sqlite import StoreVersionError


class Seen(list[Event]):
    """The change hook's events, with a way to wait for the ones a test expects."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    def append(self, event: Event) -> None:
        super().append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, predicate: Callable[[], bool], limit: float = 10) -> None:
        with trio.fail_after(limit):
            while not predicate():
                changed = self._changed
                await changed.wait()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "drpd.db")


@asynccontextmanager
async def opened(location: str, events: list[Event]) -> AsyncIterator[Any]:
    """A store at ``location`` (a path or a postgresql:// URL), its feed served while open."""
    if location.startswith("postgresql://"):
        store: Any = PostgresStore(location, on_change=events.append)
        await store.open()
        async with trio.open_nursery() as nursery:
            await nursery.start(store.serve)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
        await store.aclose()
    else:
        store = SQLiteStore(location, on_change=events.append)
        await store.open()
        try:
            yield store
        finally:
            await store.aclose()


async def test_change_hook_in_commit_order(backend: str) -> None:
    events: list[Event] = []
    async with opened(backend, events) as store:
        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(partial(store.create, principal="t"), "profiles", Profile(Name=f"p{i}"))
        await store.modify("profiles", "p1", lambda o: msgspec.structs.replace(o, Description="d"),
                           principal="u")
        await store.delete("profiles", "p2", principal="u")
        seqs = [e.Seq for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == 32
        assert seqs == list(range(seqs[0], seqs[0] + 32))
        update, delete = events[-2], events[-1]
        assert (update.Action, update.Key, update.Object["Description"]) == ("update", "p1", "d")
        assert update.Original["Description"] == "" and update.Principal == "u"
        assert (delete.Action, delete.Key) == ("delete", "p2")
        assert [r.obj.Name for r in store.list("profiles")][:3] == ["p0", "p1", "p10"]
        assert store.get("profiles", "p1").rev == update.Seq


async def test_seq_and_objects_survive_restart(backend: str) -> None:
    events: list[Event] = []
    async with opened(backend, events) as store:
        await store.create("profiles", Profile(Name="a"), principal="t")
        await store.emit(Event(Type="x", Action="y"))
        last = events[-1].Seq
    async with opened(backend, events) as store:
        await store.emit(Event(Type="x", Action="y"))
        await store.create("profiles", Profile(Name="b"), principal="t")
        assert events[-2].Seq > last and events[-1].Seq > events[-2].Seq
        assert store.get("profiles", "a") is not None


async def test_failed_writes_change_nothing(backend: str) -> None:
    events: list[Event] = []
    async with opened(backend, events) as store:
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
    async with opened(backend, []) as store:
        assert [r.obj.Uuid for r in store.list("machines")] == ["u1"]
        assert store.list("profiles") == []


async def test_transact_is_all_or_nothing_and_ordered(backend: str) -> None:
    events: list[Event] = []
    async with opened(backend, events) as store:
        await store.transact([("profiles", f"b{i}", Profile(Name=f"b{i}")) for i in range(3)],
                             principal="t")
        assert [e.Key for e in events] == ["b0", "b1", "b2"]


async def test_cancelled_writer_leaves_memory_and_store_in_step(backend: str) -> None:
    events: list[Event] = []
    async with opened(backend, events) as store:
        for i in range(10):
            with trio.move_on_after(0):
                await store.create("profiles", Profile(Name=f"c{i}"), principal="t")
        in_memory = {r.obj.Name for r in store.list("profiles")}
    async with opened(backend, []) as store:
        assert {r.obj.Name for r in store.list("profiles")} == in_memory
        assert {e.Key for e in events} == in_memory


# -- several nodes on one PostgreSQL ------------------------------------------

async def test_nodes_see_each_others_writes_in_one_seq_order(pg_url: str) -> None:
    seen_a, seen_b = Seen(), Seen()
    async with opened(pg_url, seen_a) as a, opened(pg_url, seen_b) as b:
        async with trio.open_nursery() as nursery:
            for i in range(15):
                nursery.start_soon(partial(a.create, principal="a"), "profiles", Profile(Name=f"a{i}"))
                nursery.start_soon(partial(b.create, principal="b"), "profiles", Profile(Name=f"b{i}"))
            nursery.start_soon(a.emit, Event(Type="note", Action="hello"))
        last = max(a.last_seq, b.last_seq)
        await seen_a.until(lambda: a.last_seq >= last)
        await seen_b.until(lambda: b.last_seq >= last)
        assert [e.Seq for e in seen_a] == [e.Seq for e in seen_b]
        assert [(e.Type, e.Key) for e in seen_a] == [(e.Type, e.Key) for e in seen_b]
        assert len(seen_a) == 31
        assert {r.obj.Name for r in a.list("profiles")} == {r.obj.Name for r in b.list("profiles")}


async def test_unique_fields_and_revisions_hold_across_nodes(pg_url: str) -> None:
    async with opened(pg_url, []) as a, opened(pg_url, []) as b:
        results: list[str] = []

        async def create(store: Any, uuid: str) -> None:
            try:
                await store.create("machines", Machine(Uuid=uuid, Name="same"), principal="t")
                results.append("ok")
            except Conflict:
                results.append("conflict")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create, a, "11111111-1111-1111-1111-111111111111")
            nursery.start_soon(create, b, "22222222-2222-2222-2222-222222222222")
        assert sorted(results) == ["conflict", "ok"]

        # b's memory is behind a's write until b reads the feed; the database decides
        record = await a.create("profiles", Profile(Name="p"), principal="t")
        with pytest.raises(PreconditionFailed):
            await b.modify("profiles", "p", lambda o: o, principal="t", if_rev=record.rev + 5)
        counted = await b.modify(
            "profiles", "p", lambda o: msgspec.structs.replace(o, Description=o.Description + "b"),
            principal="t")
        again = await a.modify(
            "profiles", "p", lambda o: msgspec.structs.replace(o, Description=o.Description + "a"),
            principal="t")
        assert counted.obj.Description == "b" and again.obj.Description == "ba"


async def test_a_node_that_missed_notifications_catches_up(pg_url: str) -> None:
    events = Seen()
    async with opened(pg_url, events) as a:
        # another writer that never runs serve(): it only commits
        writer = PostgresStore(pg_url)
        await writer.open()
        for i in range(5):
            await writer.create("profiles", Profile(Name=f"w{i}"), principal="w")
        await writer.aclose()
        await events.until(lambda: len(a.list("profiles")) == 5)
        assert [e.Key for e in events] == [f"w{i}" for i in range(5)]


async def test_newer_schema_is_refused(pg_url: str) -> None:
    async with opened(pg_url, []):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE drpd_meta SET v = %s WHERE k = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    store = PostgresStore(pg_url)
    with pytest.raises(StoreVersionError):
        await store.open()
    await store.aclose()
