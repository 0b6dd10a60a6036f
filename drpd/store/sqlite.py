"""The embedded SQLite backend of the Store.

One connection, used only from a single worker thread (a ``CapacityLimiter``
of one), so the trio thread never blocks on disk. WAL with
``synchronous=FULL``: a write is on disk before its caller hears of it, and a
SIGKILL at any moment leaves either the whole write or none of it.

Every object is also kept in memory, as DRP does: reads never touch SQLite.
The memory copy changes only after the commit succeeded.

Writes are committed in groups (issue 19). A write is checked and given its
Seq at once, against memory plus the writes waiting for their commit (the
*pending* overlay: ``_pending``, ``_pending_unique``), then queued; one
writer at a time leads, committing everything queued so far in one
transaction (one fsync for the lot), then applying it to memory and
emitting its events, in Seq order, and waking the writers it carried. A
writer hears of its write only after that commit: acknowledged is still
durable. A failed commit fails every write queued with or after it (their
checks counted on it) and drops the overlay, so memory and disk agree.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import datetime as dt
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, Unpack, cast

import msgspec
import trio

from ..models import KINDS, Conflict, Event, Kind, NotFound, PreconditionFailed
from ..storage import insufficient_storage, is_no_space
from . import ChangeHook, Mutator
from .records import Record, public_view
from .store_thread import StoreThread

#: One entry per schema version; entry N upgrades a version N database to N+1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
    CREATE TABLE objects (
        prefix TEXT NOT NULL,
        key TEXT NOT NULL,
        rev INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (prefix, key)
    ) WITHOUT ROWID;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
#: Seqs handed to events that are not store writes are reserved in blocks, so
#: they keep increasing across restarts without a disk write per event.
SEQ_BLOCK = 10_000


log = logging.getLogger("drpd.store")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class StoreVersionError(RuntimeError):
    pass


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction.

    SQLite rolls back by itself on some errors (``SQLITE_FULL``, I/O
    errors); a ROLLBACK then fails with "no transaction is active" and
    would hide the real cause, so it is issued only while one is active.
    """
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


@dataclass(slots=True)
class _Queued:
    """Writes (or one event) waiting for their group's commit."""

    changes: builtins.list[_Change]
    principal: str
    #: the Seq of the first change (of the event)
    first: int
    event: Event | None = None
    wake: trio.Event = dataclass_field(default_factory=trio.Event)
    records: builtins.list[Record] | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Change:
    prefix: str
    key: str
    new: Any | None  # None deletes
    old: Record | None
    #: the event's Action for a write over an existing object (DRP: PUT ``save``)
    action: str = "update"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SQLiteStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kinds: dict[str, Kind] | None = None,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.path = Path(path)
        self.kinds = dict(KINDS if kinds is None else kinds)
        self.on_change: ChangeHook = on_change or (lambda event: None)
        self._conn: sqlite3.Connection | None = None
        self._thread = StoreThread("drpd-sqlite")
        self._lock = trio.Lock()
        self._data: dict[str, dict[str, Record]] = {p: {} for p in self.kinds}
        self._sorted: dict[str, list[Record]] = {}
        #: sorted keys of each prefix, kept up to date by inserts and deletes
        self._keys: dict[str, list[str]] = {p: [] for p in self.kinds}
        #: (prefix, field) -> value -> key, for each kind's unique fields
        self._unique: dict[tuple[str, str], dict[Any, str]] = {}
        #: the last Seq committed and published
        self._seq = 0
        self._reserved = 0
        #: the last Seq handed out (``_seq`` plus those waiting for a commit)
        self._staged_seq = 0
        #: writes waiting for a commit, oldest first; True while one leads
        self._queue: deque[_Queued] = deque()
        self._leading = False
        #: (prefix, key) -> (Seq, the record as it will be, None if deleted)
        self._pending: dict[tuple[str, str], tuple[int, Record | None]] = {}
        #: (prefix, field) -> value -> (Seq, the key that will hold it, or None)
        self._pending_unique: dict[tuple[str, str], dict[Any, tuple[int, str | None]]] = {}
        #: transactions committed (a group counts once)
        self.commits = 0

    # -- lifecycle -------------------------------------------------------
    async def open(self) -> None:
        self._thread.start()
        try:
            await self._run(self._open_sync)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._thread.aclose()
            raise

    def _open_sync(self) -> None:
        _private_files(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"{self.path} has schema version {version}, newer than this drpd "
                    f"({SCHEMA_VERSION}); upgrade drpd"
                )
            for target in range(version, SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[target].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={target + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
            self._seq = max(int(meta.get("seq", 0)), int(meta.get("seq_reserved", 0)))
            self._staged_seq = self._seq
            self._reserved = self._seq + SEQ_BLOCK
            conn.execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('seq_reserved', ?)",
                (str(self._reserved),),
            )
            unreadable: list[str] = []
            for prefix, key, rev, data in conn.execute(
                "SELECT prefix, key, rev, data FROM objects ORDER BY prefix, key"
            ):
                kind = self.kinds.get(prefix)
                try:
                    obj = (msgspec.json.decode(data, type=kind.model) if kind
                           else msgspec.json.decode(data))
                except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                    # one bad row (a hand edit, another program) must not keep
                    # drpd from starting: it is left on disk, not served, and
                    # a later write of that key replaces it
                    unreadable.append(f"{prefix}/{str(key)[:80]!r}: {exc}")
                    continue
                if kind is not None and kind.key_field == "ID" and not getattr(obj, "ID", True):
                    cast(Any, obj).ID = key  # a template stored by an older drpd, keyed by Name
                self._data.setdefault(prefix, {})[key] = Record(obj, rev)
            if unreadable:
                log.error("%s: %d stored object(s) cannot be read and are not served: %s",
                          self.path, len(unreadable), "; ".join(unreadable[:10]))
            for prefix, bucket in self._data.items():
                self._keys[prefix] = sorted(bucket)
                for key, record in bucket.items():
                    self._index_add(prefix, key, record.obj)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def aclose(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with trio.CancelScope(shield=True):
                    await self._run(conn.close)
            with trio.CancelScope(shield=True):
                await self._thread.aclose()

    async def _run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        return await self._thread.run(fn, *args)

    # -- kinds -----------------------------------------------------------
    def add_kind(self, kind: Kind) -> None:
        """Serve another prefix (a provider's StoreObjects type)."""
        self.kinds[kind.prefix] = kind
        self._data.setdefault(kind.prefix, {})
        self._keys.setdefault(kind.prefix, sorted(self._data[kind.prefix]))

    def stored_prefixes(self) -> list[str]:
        """Prefixes that hold objects (some may have no kind registered yet)."""
        return sorted(p for p, bucket in self._data.items() if bucket)

    # -- reads -----------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._seq

    def get(self, prefix: str, key: str) -> Record | None:
        return self._data.get(prefix, {}).get(key)

    def list(self, prefix: str) -> list[Record]:
        cached = self._sorted.get(prefix)
        if cached is None:
            objs = self._data.get(prefix, {})
            cached = [objs[k] for k in self._keys.get(prefix, ())]
            self._sorted[prefix] = cached
        return cached

    def find(self, prefix: str, field: str, value: str) -> Record | None:
        index = self._unique.get((prefix, field))
        if index is not None:
            key = index.get(value)
            return None if key is None else self._data[prefix].get(key)
        for record in self._data.get(prefix, {}).values():
            if getattr(record.obj, field, None) == value:
                return record
        return None

    # -- writes ----------------------------------------------------------
    async def create(self, prefix: str, obj: Any, *, principal: str) -> Record:
        kind = self.kinds[prefix]
        key = kind.key_of(obj)
        if self._current(prefix, key) is not None:
            raise Conflict(f"{prefix} {key} already exists", model=prefix, key=key)
        self._check_unique(kind, key, obj)
        return (await self._submit([_Change(prefix, key, obj, None)], principal))[0]

    async def modify(
        self,
        prefix: str,
        key: str,
        mutate: Mutator,
        *,
        principal: str,
        if_rev: int | None = None,
        action: str = "update",
    ) -> Record:
        kind = self.kinds[prefix]
        old = self._existing(prefix, key, if_rev)
        new = mutate(old.obj)
        if kind.key_of(new) != key:
            raise Conflict(f"the key of {prefix} {key} cannot change", model=prefix, key=key)
        self._check_unique(kind, key, new)
        return (await self._submit([_Change(prefix, key, new, old, action)], principal))[0]

    async def delete(
        self, prefix: str, key: str, *, principal: str, if_rev: int | None = None
    ) -> Record:
        old = self._existing(prefix, key, if_rev)
        await self._submit([_Change(prefix, key, None, old)], principal)
        return old

    async def emit(self, event: Event) -> Event:
        """Give a Seq to an event that is not a store write and hand it on.

        In Seq order with store writes: behind those waiting for a commit,
        it is published when they are. Its Seqs are reserved on disk in
        blocks, not written one by one.
        """
        if self._staged_seq + 1 > self._reserved:
            async with self._lock:
                if self._staged_seq + 1 > self._reserved:
                    reserved = self._staged_seq + SEQ_BLOCK
                    with trio.CancelScope(shield=True):
                        try:
                            await self._run(self._set_meta_sync, "seq_reserved", str(reserved))
                        except sqlite3.Error as exc:
                            raise self._write_error(exc, [], what="an event") from None
                    self._reserved = reserved
        self._staged_seq += 1
        event.Seq = self._staged_seq
        if not event.Time:
            event.Time = now_rfc3339()
        if not self._leading and not self._queue:
            self._seq = event.Seq
            self.on_change(event)
            return event
        await self._submit([], "", event=event)
        return event

    def _write_error(self, exc: sqlite3.Error, changes: builtins.list[_Change],
                     what: str | None = None) -> Exception:
        """A failed write as the API error it is: 507 for a full disk.

        SQLite has rolled the transaction back already (``_rollback``), so
        memory and disk still agree; the next write may succeed.
        """
        first = changes[0] if changes else None
        model, key = (first.prefix, first.key) if first else ("", "")
        what = what or (f"{model} {key}" if len(changes) == 1 else f"{len(changes)} objects")
        if is_no_space(exc, self.path.parent):
            return insufficient_storage(self.path.parent, what, model=model, key=key)
        return exc

    def _set_meta_sync(self, k: str, v: str) -> None:
        assert self._conn is not None
        self._conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

    def _current(self, prefix: str, key: str) -> Record | None:
        """The object as writes see it: memory, or the pending write of it."""
        pending = self._pending.get((prefix, key))
        if pending is not None:
            return pending[1]
        return self._data.get(prefix, {}).get(key)

    def _existing(self, prefix: str, key: str, if_rev: int | None) -> Record:
        old = self._current(prefix, key)
        if old is None:
            raise NotFound(f"{prefix} {key} not found", model=prefix, key=key)
        if if_rev is not None and old.rev != if_rev:
            raise PreconditionFailed(
                f"{prefix} {key} has changed (revision {old.rev}, expected {if_rev})",
                model=prefix,
                key=key,
            )
        return old

    def _check_unique(self, kind: Kind, key: str, obj: Any) -> None:
        for field in kind.unique:
            value = getattr(obj, field, None)
            if not value:
                continue
            pending = self._pending_unique.get((kind.prefix, field), {}).get(value)
            other_key = (pending[1] if pending is not None
                         else self._unique.get((kind.prefix, field), {}).get(value))
            if other_key is not None and other_key != key:
                raise Conflict(
                    f"{kind.prefix} {other_key} already has {field} {value!r}",
                    model=kind.prefix,
                    key=key,
                )

    def _index_add(self, prefix: str, key: str, obj: Any) -> None:
        kind = self.kinds.get(prefix)
        for field in kind.unique if kind else ():
            value = getattr(obj, field, None)
            if value:
                self._unique.setdefault((prefix, field), {})[value] = key

    def _index_remove(self, prefix: str, key: str, obj: Any) -> None:
        kind = self.kinds.get(prefix)
        for field in kind.unique if kind else ():
            index = self._unique.get((prefix, field), {})
            value = getattr(obj, field, None)
            if value and index.get(value) == key:
                del index[value]

    async def transact(self, changes: Iterable[tuple[str, str, Any | None]], *, principal: str) -> builtins.list[Record]:
        """Write several objects (``None`` deletes) in one all-or-nothing commit."""
        batch = []
        staged: dict[tuple[str, str], Record | None] = {}
        for prefix, key, new in changes:
            old = staged[(prefix, key)] if (prefix, key) in staged else self._current(prefix, key)
            if new is not None:
                self._check_unique(self.kinds[prefix], key, new)
            elif old is None:
                raise NotFound(f"{prefix} {key} not found", model=prefix, key=key)
            batch.append(_Change(prefix, key, new, old))
            staged[(prefix, key)] = None if new is None else Record(new, 0)
        return await self._submit(batch, principal)

    # -- group commit ------------------------------------------------------
    async def _submit(self, changes: builtins.list[_Change], principal: str,
                      event: Event | None = None) -> builtins.list[Record]:
        """Queue checked ``changes`` (or ``event``) and wait for their commit.

        Shielded from the first step: once queued, a write is committed
        whether or not its caller is still there (and a writer that is to
        lead must lead).
        """
        if self._conn is None:
            raise RuntimeError("store is closed")
        if event is not None:
            queued = _Queued([], principal, event.Seq, event)
        else:
            queued = _Queued(changes, principal, self._staged_seq + 1)
            self._stage(queued)
        self._queue.append(queued)
        with trio.CancelScope(shield=True):
            if self._leading:
                await queued.wake.wait()
            if queued.records is None and queued.error is None:
                await self._lead()
        if queued.error is not None:
            raise queued.error
        assert queued.records is not None
        return queued.records

    def _stage(self, queued: _Queued) -> None:
        """Give the changes their Seqs and make them what later writes check against."""
        for offset, change in enumerate(queued.changes):
            rev = queued.first + offset
            record = None if change.new is None else Record(change.new, rev)
            self._pending[(change.prefix, change.key)] = (rev, record)
            kind = self.kinds.get(change.prefix)
            for field in kind.unique if kind else ():
                index = self._pending_unique.setdefault((change.prefix, field), {})
                if change.old is not None:
                    value = getattr(change.old.obj, field, None)
                    if value:
                        index[value] = (rev, None)
                if change.new is not None:
                    value = getattr(change.new, field, None)
                    if value:
                        index[value] = (rev, change.key)
        self._staged_seq = queued.first + len(queued.changes) - 1

    async def _lead(self) -> None:
        """Commit what is queued as one group, then hand the lead on."""
        self._leading = True
        group = list(self._queue)
        self._queue.clear()
        rows = []
        for queued in group:
            for offset, change in enumerate(queued.changes):
                data = None if change.new is None else msgspec.json.encode(change.new)
                rows.append((change.prefix, change.key, queued.first + offset, data))
        # the last Seq the group holds (an event holds one; an empty
        # transaction none: its ``first`` is only the next Seq)
        last = max(q.first if q.event is not None else q.first + len(q.changes) - 1
                   for q in group)
        try:
            if rows:
                async with self._lock:
                    if self._conn is None:
                        raise RuntimeError("store is closed")
                    await self._run(self._commit_sync, rows, last)
                self.commits += 1
        except BaseException as exc:
            self._fail(group + list(self._queue), exc)
            self._queue.clear()
            self._leading = False
            if isinstance(exc, sqlite3.Error | RuntimeError):
                return  # each writer raises it
            raise
        try:
            self._seq = max(self._seq, last)
            self._reserved = max(self._reserved, last)
            for queued in group:
                queued.records = self._apply(queued)
                queued.wake.set()
        finally:
            for queued in group:  # a defect in a change hook must not strand a writer
                if queued.records is None:
                    queued.error = RuntimeError("the write was committed, its event was not sent")
                    queued.wake.set()
            if self._queue:
                self._queue[0].wake.set()  # the next group's first writer leads it
            else:
                self._leading = False

    def _fail(self, queued: builtins.list[_Queued], exc: BaseException) -> None:
        """A commit failed: SQLite rolled it back; every write queued with or
        after it fails too (its checks counted on the failed ones)."""
        for q in queued:
            if isinstance(exc, sqlite3.Error):
                q.error = self._write_error(exc, q.changes)
            elif isinstance(exc, RuntimeError):
                q.error = exc
            else:
                q.error = RuntimeError(f"the store's commit failed: {type(exc).__name__}")
            q.wake.set()
        self._pending.clear()
        self._pending_unique.clear()
        self._staged_seq = self._seq

    def _apply(self, queued: _Queued) -> builtins.list[Record]:
        """Memory and events of a committed write, in Seq order."""
        if queued.event is not None:
            self.on_change(queued.event)
            return []
        time = now_rfc3339()
        records = []
        for offset, change in enumerate(queued.changes):
            prefix, key, rev = change.prefix, change.key, queued.first + offset
            if self._pending.get((prefix, key), (0, None))[0] == rev:
                del self._pending[(prefix, key)]
            kind = self.kinds.get(prefix)
            for field in kind.unique if kind else ():
                index = self._pending_unique.get((prefix, field))
                if not index:
                    continue
                for obj in (change.old.obj if change.old else None, change.new):
                    value = getattr(obj, field, None) if obj is not None else None
                    if value and index.get(value, (0, None))[0] == rev:
                        del index[value]
            bucket = self._data.setdefault(prefix, {})
            keys = self._keys.setdefault(prefix, [])
            self._sorted.pop(prefix, None)
            if change.old is not None:
                self._index_remove(prefix, key, change.old.obj)
            if change.new is None:
                record = change.old
                assert record is not None
                del bucket[key]
                del keys[bisect.bisect_left(keys, key)]
                action = "delete"
                obj, original = public_view(prefix, record.obj), None
            else:
                record = Record(change.new, rev)
                if key not in bucket:
                    bisect.insort(keys, key)
                bucket[key] = record
                self._index_add(prefix, key, change.new)
                action = "create" if change.old is None else change.action
                obj = public_view(prefix, change.new)
                original = None if change.old is None else public_view(prefix, change.old.obj)
            records.append(record)
            self.on_change(
                Event(
                    Time=time,
                    Type=prefix,
                    Action=action,
                    Key=key,
                    Principal=queued.principal,
                    Object=obj,
                    Original=original,
                    Seq=rev,
                )
            )
        return records

    def _commit_sync(self, rows: builtins.list[tuple[str, str, int, bytes | None]], seq: int) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for prefix, key, rev, data in rows:
                if data is None:
                    conn.execute("DELETE FROM objects WHERE prefix = ? AND key = ?", (prefix, key))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO objects (prefix, key, rev, data) VALUES (?, ?, ?, ?)",
                        (prefix, key, rev, data),
                    )
            conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('seq', ?)", (str(seq),))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    # -- maintenance -------------------------------------------------------
    async def backup(self, dest: str | os.PathLike[str]) -> None:
        """A consistent copy of the database while drpd runs (SQLite online backup)."""

        def run() -> None:
            assert self._conn is not None
            target = sqlite3.connect(dest)
            try:
                self._conn.backup(target)
            finally:
                target.close()

        async with self._lock:
            await self._run(run)


def _private_files(path: Path | str) -> None:
    """Make the store and its ``-wal``/``-shm`` files 0600 whatever the umask.

    The store is created 0600 before SQLite opens it; SQLite gives the files
    it adds beside it the store's own mode.
    """
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(f"{path}{suffix}", 0o600)
