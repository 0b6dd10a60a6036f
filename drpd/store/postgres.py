"""The PostgreSQL backend of the Store: several drpd nodes share one database.

Same contract as the SQLite store (reads from memory, writes durable before
they return, one change feed in Seq order), made to hold across nodes:

- **The database is the truth.** Revisions, unique fields and Seqs are
  checked and given inside the writing transaction, never by one node's
  memory alone: a write that raced another node's is retried against the
  fresh state, or refused with the same error SQLite would give.
- **One Seq order everywhere.** Writers take a transaction-scoped advisory
  lock, so Seqs are handed out (from ``meta.seq``, transactionally: no gaps
  from rollbacks) and committed in the same order on every node.
- **The feed is a table.** Every change (store writes and ``emit``\\ ted
  events) is a row of ``changes``; ``NOTIFY`` only wakes the nodes, which
  then read every row past the last one they applied. A lost notification
  loses nothing; a node that was away replays the rows it missed, or reloads
  everything if they were pruned.
- **Each node applies the feed in one place** (``serve``), in Seq order,
  to its memory and its change hook. A local writer waits until its own
  change has come back through the feed, so a node reads its own writes.

psycopg's async API is asyncio-only; here its sync API runs in trio worker
threads behind a ``CapacityLimiter`` (one connection per slot), and the
LISTEN connection waits in a thread of its own with a short timeout so that
cancellation is never held up for long.
"""

from __future__ import annotations

import base64
import bisect
import builtins
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import trio

from ..models import KINDS, Conflict, Event, Kind, NotFound, PreconditionFailed, Unavailable
from . import ChangeHook, Mutator
from .records import LeaseView, Record
from .sqlite import StoreVersionError, now_rfc3339, public_view

#: Entry N upgrades a version N database to N+1 (kept in meta.schema_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS drpd_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS drpd_objects (
        prefix TEXT NOT NULL,
        key TEXT NOT NULL,
        rev BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (prefix, key)
    );
    CREATE TABLE IF NOT EXISTS drpd_uniques (
        prefix TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (prefix, field, value)
    );
    CREATE INDEX IF NOT EXISTS drpd_uniques_key ON drpd_uniques (prefix, key);
    CREATE TABLE IF NOT EXISTS drpd_changes (
        seq BIGINT PRIMARY KEY,
        prefix TEXT,
        key TEXT,
        data BYTEA,
        event BYTEA NOT NULL
    );
    INSERT INTO drpd_meta (k, v) VALUES ('seq', '0') ON CONFLICT DO NOTHING
    """,
    """
    CREATE TABLE IF NOT EXISTS drpd_nodes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        started TEXT NOT NULL,
        heartbeat TIMESTAMPTZ NOT NULL
    )
    """,
    """
    ALTER TABLE drpd_nodes ADD COLUMN IF NOT EXISTS weight DOUBLE PRECISION NOT NULL DEFAULT 1;
    ALTER TABLE drpd_nodes ADD COLUMN IF NOT EXISTS cert TEXT NOT NULL DEFAULT '';
    CREATE TABLE IF NOT EXISTS drpd_leases (
        instance TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        expires TIMESTAMPTZ NOT NULL,
        status BYTEA NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS drpd_blobs (
        sha256 TEXT NOT NULL,
        part INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (sha256, part)
    )
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
#: one advisory lock id for every writer of every node (arbitrary constant)
WRITE_LOCK = 0x64727064
#: bytes of a provider executable per row of drpd_blobs
BLOB_PART = 1 << 20
#: and one for lease rounds, so two nodes place instances one after the other
LEASE_LOCK = 0x6C656173
CHANNEL = "drpd_changes"
#: how many feed rows are kept for nodes that were away (then they reload)
KEEP_CHANGES = 100_000
#: how long a LISTEN wait lasts before the feed looks anyway
log = logging.getLogger("drpd.store")
POLL_SECONDS = 1.0
#: seconds a pooled connection may idle before it is probed on checkout
PROBE_AFTER = 1.0
#: waits between attempts to reach the database again after losing it
RECONNECT_MIN = 0.5
RECONNECT_MAX = 10.0


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    """The one row a query of drpd's own meta table must give."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("drpd_meta has no 'seq' row: the schema is damaged")
    return row


def _close_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except psycopg.Error:
        pass


class _Raced(Exception):
    """Another node changed what this write was computed from: recompute."""


@dataclass(slots=True)
class _Change:
    prefix: str
    key: str
    new: Any | None  # None deletes
    old: Record | None
    #: the event's Action for a write over an existing object (DRP: PUT ``save``)
    action: str = "update"


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        kinds: dict[str, Kind] | None = None,
        on_change: ChangeHook | None = None,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.kinds = dict(KINDS if kinds is None else kinds)
        self.on_change: ChangeHook = on_change or (lambda event: None)
        self.connect_timeout = connect_timeout
        self._limiter = trio.CapacityLimiter(pool_size)
        #: idle connections with when each was last used (time.monotonic)
        self._idle: queue.SimpleQueue[tuple[psycopg.Connection[Any], float]] = (
            queue.SimpleQueue())
        self._all: list[psycopg.Connection[Any]] = []
        self._all_lock = threading.Lock()
        self._lock = trio.Lock()  # local writers, one at a time (the DB lock orders nodes)
        self._data: dict[str, dict[str, Record]] = {p: {} for p in self.kinds}
        self._sorted: dict[str, list[Record]] = {}
        self._keys: dict[str, list[str]] = {p: [] for p in self.kinds}
        self._unique: dict[tuple[str, str], dict[Any, str]] = {}
        self._applied = 0
        #: one feed reader at a time (serve() and local writers both catch up)
        self._feed_lock = trio.Lock()
        self._closed = False

    # -- connections -------------------------------------------------------
    def _connect(self, autocommit: bool = False) -> psycopg.Connection[Any]:
        # keepalives and a TCP user timeout: a connection the network swallowed
        # (no reset, no answer) fails within seconds instead of minutes
        conn = psycopg.connect(self.url, autocommit=autocommit,
                               connect_timeout=max(1, int(self.connect_timeout)),
                               keepalives=1, keepalives_idle=5, keepalives_interval=2,
                               keepalives_count=3, tcp_user_timeout=10_000)
        with self._all_lock:
            if self._closed:
                conn.close()
                raise RuntimeError("store is closed")
            self._all.append(conn)
        return conn

    def _checkout(self) -> psycopg.Connection[Any]:
        """An idle connection that still works, else a new one. One idle for a
        while is probed first: after the database restarted it is dead, and a
        write must not fail on it (nor be retried blind: its outcome would be
        unknown)."""
        while True:
            try:
                conn, used = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            if time.monotonic() - used < PROBE_AFTER:
                return conn
            try:
                conn.execute("SELECT 1")
                conn.rollback()
                return conn
            except psycopg.Error:
                self._forget(conn)

    def _forget(self, conn: psycopg.Connection[Any]) -> None:
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except psycopg.Error:
            pass

    def _with_conn(self, fn: Any, *args: Any) -> Any:
        conn = self._checkout()
        try:
            result = fn(conn, *args)
        except BaseException:
            if conn.closed or conn.broken:
                self._forget(conn)
                # the server went away: its other connections are as dead, and
                # the next write must not be the one to find out
                while True:
                    try:
                        self._forget(self._idle.get_nowait()[0])
                    except queue.Empty:
                        break
            else:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
                    with self._all_lock:
                        if conn in self._all:
                            self._all.remove(conn)
                else:
                    self._idle.put((conn, time.monotonic()))
            raise
        if self._closed:
            conn.close()
        else:
            self._idle.put((conn, time.monotonic()))
        return result

    async def _run(self, fn: Any, *args: Any, abandon: bool = False) -> Any:
        """``fn(conn, *args)`` in a worker thread with a pooled connection.

        ``abandon``: a cancel returns at once and leaves the thread to finish
        (its result unused). For the node's own housekeeping (heartbeats,
        leases), which must never hold a shutdown or a fence behind a
        connection the network has swallowed; never for writes, whose
        outcome the caller must know.
        """
        try:
            return await trio.to_thread.run_sync(self._with_conn, fn, *args,
                                                 limiter=self._limiter,
                                                 abandon_on_cancel=abandon)
        except psycopg.OperationalError as exc:
            # the database is down or cut off: a clear 503, never a stack trace
            # (psycopg's message names host and port, never the password)
            raise Unavailable(f"the PostgreSQL store is unreachable: "
                              f"{str(exc).strip().splitlines()[0]}") from None

    # -- nodes (drpd.nodes) ----------------------------------------------------
    async def node_beat(self, node_id: str, name: str, endpoint: str, started: str,
                        weight: float = 1.0, cert: str = "") -> None:
        """Write this node's row with the database's clock as its heartbeat (and
        its API's certificate, which other nodes pin when they forward to it)."""
        def beat(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO drpd_nodes (id, name, endpoint, started, heartbeat, weight, cert) "
                    "VALUES (%s, %s, %s, %s, now(), %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "name = EXCLUDED.name, endpoint = EXCLUDED.endpoint, "
                    "started = EXCLUDED.started, heartbeat = now(), weight = EXCLUDED.weight, "
                    "cert = EXCLUDED.cert",
                    (node_id, name, endpoint, started, weight, cert))

        await self._run(beat, abandon=True)

    # -- instance leases (drpd.leases) -----------------------------------------
    async def lease_round(self, node_id: str, seconds: float, instances: builtins.list[str],
                          statuses: dict[str, bytes], live_after: float) -> LeaseView:
        """One round of this node's leases, in one transaction, by the database's clock.

        Renews this node's leases (writing each held instance's ``statuses``),
        drops the leases of instances no longer stored, then takes the free or
        expired ones that placement gives this node: the live node (heard of
        within ``live_after`` seconds) with the fewest valid leases per unit of
        weight, ties by id. Another node taking the same instance at once
        loses: a lease is only ever taken while it is free or expired.
        """
        def round_(conn: psycopg.Connection[Any]) -> LeaseView:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEASE_LOCK,))
                for name, status in statuses.items():
                    conn.execute("UPDATE drpd_leases SET status = %s WHERE instance = %s "
                                 "AND node = %s", (status, name, node_id))
                conn.execute("UPDATE drpd_leases SET expires = now() + make_interval(secs => %s) "
                             "WHERE node = %s", (seconds, node_id))
                conn.execute("DELETE FROM drpd_leases WHERE NOT (instance = ANY(%s))",
                             (instances,))
                nodes = conn.execute(
                    "SELECT id, name, endpoint, weight, cert FROM drpd_nodes "
                    "WHERE extract(epoch FROM now() - heartbeat) < %s OR id = %s",
                    (live_after, node_id)).fetchall()
                leases = conn.execute(
                    "SELECT instance, node, status FROM drpd_leases WHERE expires > now()"
                ).fetchall()
                owners = {instance: node for instance, node, _ in leases}
                load = {nid: 0 for nid, _, _, _, _ in nodes}
                weight = {nid: max(float(w), 1e-6) for nid, _, _, w, _ in nodes}
                for node in owners.values():
                    if node in load:
                        load[node] += 1
                mine = []
                for name in sorted(set(instances) - owners.keys()):
                    chosen = min(load, key=lambda n: ((load[n] + 1) / weight[n], n))
                    load[chosen] += 1
                    if chosen == node_id:
                        mine.append(name)
                for name in mine:
                    taken = conn.execute(
                        "INSERT INTO drpd_leases (instance, node, expires) "
                        "VALUES (%s, %s, now() + make_interval(secs => %s)) "
                        "ON CONFLICT (instance) DO UPDATE SET node = EXCLUDED.node, "
                        "expires = EXCLUDED.expires, status = '' "
                        "WHERE drpd_leases.expires <= now() RETURNING instance",
                        (name, node_id, seconds)).fetchone()
                    if taken is not None:
                        owners[name] = node_id
                return LeaseView(
                    owners=owners,
                    statuses={i: bytes(s) for i, n, s in leases if n != node_id and s},
                    endpoints={nid: endpoint for nid, _, endpoint, _, _ in nodes},
                    names={nid: name for nid, name, _, _, _ in nodes},
                    certs={nid: cert for nid, _, _, _, cert in nodes})

        return await self._run(round_, abandon=True)

    async def shared_secret(self, name: str, local: bytes) -> bytes:
        """A key every node must use alike (token signing, Secure params): the
        first node to ask stores its own, so what it signed or sealed before
        it shared the database stays valid."""
        def share(conn: psycopg.Connection[Any]) -> bytes:
            with conn.transaction():
                conn.execute("INSERT INTO drpd_meta (k, v) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                              (f"key:{name}", base64.b64encode(local).decode()))
                row = _one(conn.execute("SELECT v FROM drpd_meta WHERE k = %s",
                                        (f"key:{name}",)))
                return base64.b64decode(row[0])

        return bytes(await self._run(share))

    # -- provider executables (drpd.plugins.providers) ---------------------------
    async def blob_put(self, sha256: str, path: Path) -> None:
        """Keep a provider's executable, in parts, so every node can install it."""
        def put(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM drpd_blobs WHERE sha256 = %s AND part = 0",
                                (sha256,)).fetchone() is not None:
                    return
                with open(path, "rb") as f:
                    part = 0
                    while chunk := f.read(BLOB_PART):
                        conn.execute("INSERT INTO drpd_blobs (sha256, part, data) "
                                     "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                     (sha256, part, chunk))
                        part += 1

        await self._run(put)

    async def blob_get(self, sha256: str, dest: Path) -> bool:
        """Write the executable with this digest to ``dest``; False when the
        database has none (or what it has does not match the digest)."""
        def get(conn: psycopg.Connection[Any]) -> bool:
            digest = hashlib.sha256()
            found = False
            with conn.transaction(), conn.cursor(name="drpd_blob") as cursor, \
                    open(dest, "wb") as f:
                cursor.itersize = 4  # parts in memory at once
                cursor.execute("SELECT data FROM drpd_blobs WHERE sha256 = %s ORDER BY part",
                               (sha256,))
                for (data,) in cursor:
                    f.write(data)
                    digest.update(data)
                    found = True
                f.flush()
                os.fsync(f.fileno())
            return found and digest.hexdigest() == sha256

        return bool(await self._run(get))

    async def blob_prune(self, keep: builtins.list[str]) -> None:
        """Drop the executables no provider record names any more."""
        def prune(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("DELETE FROM drpd_blobs WHERE NOT (sha256 = ANY(%s))", (keep,))

        await self._run(prune)

    async def lease_release(self, node_id: str) -> None:
        """Give up every lease of this node (it stopped its providers)."""
        def release(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("DELETE FROM drpd_leases WHERE node = %s", (node_id,))

        await self._run(release, abandon=True)

    async def node_rows(self) -> builtins.list[tuple[str, str, str, str, str, float]]:
        """Every node's (id, name, endpoint, started, last heartbeat, seconds
        since it), by the database's clock: the nodes' clocks need not agree."""
        def rows(conn: psycopg.Connection[Any]) -> builtins.list[Any]:
            with conn.transaction():
                return conn.execute(
                    "SELECT id, name, endpoint, started, "
                    "to_char(heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                    "extract(epoch FROM now() - heartbeat) FROM drpd_nodes ORDER BY name, id"
                ).fetchall()

        return [(i, n, e, s, seen, float(age)) for i, n, e, s, seen, age in await self._run(rows, abandon=True)]

    # -- lifecycle -----------------------------------------------------------
    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS drpd_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            row = conn.execute("SELECT v FROM drpd_meta WHERE k = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"the database has schema version {version}, newer than this drpd "
                    f"({SCHEMA_VERSION}); upgrade drpd")
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO drpd_meta (k, v) VALUES ('schema_version', %s) "
                    "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", (str(target + 1),))
        self._load_all(conn)

    def _load_all(self, conn: psycopg.Connection[Any]) -> None:
        """(Re)load every object and the Seq they stand at, in one snapshot."""
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            seq = int(_one(conn.execute("SELECT v FROM drpd_meta WHERE k = 'seq'"))[0])
            rows = conn.execute("SELECT prefix, key, rev, data FROM drpd_objects").fetchall()
        data: dict[str, dict[str, Record]] = {p: {} for p in self.kinds}
        for prefix, key, rev, blob in rows:
            data.setdefault(prefix, {})[key] = Record(self._decode(prefix, bytes(blob)), rev)
        self._data = data
        self._keys = {p: sorted(bucket) for p, bucket in data.items()}
        self._sorted = {}
        self._unique = {}
        for prefix, bucket in data.items():
            for key, record in bucket.items():
                self._index_add(prefix, key, record.obj)
        self._applied = seq

    def _decode(self, prefix: str, blob: bytes) -> Any:
        kind = self.kinds.get(prefix)
        return msgspec.json.decode(blob, type=kind.model) if kind else msgspec.json.decode(blob)

    async def aclose(self) -> None:
        with self._all_lock:
            self._closed = True
            conns, self._all = self._all, []
        with trio.CancelScope(shield=True):
            for conn in conns:
                await trio.to_thread.run_sync(conn.close)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply other nodes' changes to this node's memory as they come, until cancelled.

        A wake-up is a NOTIFY or, at the latest, ``POLL_SECONDS``; what is
        applied is always read from the changes table.
        """
        started = False
        delay = RECONNECT_MIN
        while True:
            if not started:  # open() reached the database: serve at once, also if
                task_status.started()  # the feed must wait for a reconnect
                started = True
            try:
                listener = await trio.to_thread.run_sync(self._listen_sync)
            except (psycopg.Error, RuntimeError) as exc:
                if self._closed:
                    return
                log.error("PostgreSQL change feed: cannot connect (%s); again in %g s",
                          str(exc).strip().splitlines()[0], delay)
                await trio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            delay = RECONNECT_MIN
            try:
                while True:
                    await self._catch_up()
                    await trio.to_thread.run_sync(self._wait_notify_sync, listener,
                                                  abandon_on_cancel=True)
            except (psycopg.Error, Unavailable) as exc:
                # the database went away: writes answer 503 meanwhile; once it
                # is back, the changes table brings this node up to date
                log.error("PostgreSQL change feed lost (%s): reconnecting",
                          str(exc).strip().splitlines()[0])
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_close_quietly, listener)

    def _listen_sync(self) -> psycopg.Connection[Any]:
        conn = self._connect(autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    @staticmethod
    def _wait_notify_sync(conn: psycopg.Connection[Any]) -> bool:
        for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
            return True
        return False

    async def _catch_up(self) -> None:
        """Apply every committed change past ``_applied``, in Seq order (one caller at a time)."""
        async with self._feed_lock:
            while True:
                rows, reload_needed = await self._run(self._fetch_sync, self._applied)
                if reload_needed:
                    await self._run(self._load_all)
                    return
                if not rows:
                    return
                for seq, prefix, key, data, event_blob in rows:
                    if prefix is not None:
                        self._apply(prefix, key, None if data is None else bytes(data), seq)
                    self._applied = seq
                    self.on_change(msgspec.json.decode(bytes(event_blob), type=Event))

    def _fetch_sync(self, conn: psycopg.Connection[Any], after: int) -> tuple[list[Any], bool]:
        with conn.transaction():
            # one snapshot for both reads: a commit between them is not a gap
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = conn.execute(
                "SELECT seq, prefix, key, data, event FROM drpd_changes WHERE seq > %s "
                "ORDER BY seq LIMIT 1000", (after,)).fetchall()
            if rows and rows[0][0] != after + 1:
                return [], True  # what we missed was pruned: reload everything
            # writers hold one advisory lock until they commit, so Seqs
            # become visible in order: no row past a gap can exist
            if not rows:
                seq = int(_one(conn.execute("SELECT v FROM drpd_meta WHERE k = 'seq'"))[0])
                if seq > after:
                    return [], True
        return rows, False

    async def _until_applied(self, seq: int) -> None:
        while self._applied < seq:
            await self._catch_up()

    def _apply(self, prefix: str, key: str, data: bytes | None, rev: int) -> None:
        bucket = self._data.setdefault(prefix, {})
        keys = self._keys.setdefault(prefix, [])
        self._sorted.pop(prefix, None)
        old = bucket.get(key)
        if old is not None:
            self._index_remove(prefix, key, old.obj)
        if data is None:
            if old is not None:
                del bucket[key]
                del keys[bisect.bisect_left(keys, key)]
            return
        obj = self._decode(prefix, data)
        if old is None:
            bisect.insort(keys, key)
        bucket[key] = Record(obj, rev)
        self._index_add(prefix, key, obj)

    # -- kinds -------------------------------------------------------------
    def add_kind(self, kind: Kind) -> None:
        self.kinds[kind.prefix] = kind
        self._data.setdefault(kind.prefix, {})
        self._keys.setdefault(kind.prefix, sorted(self._data[kind.prefix]))

    def stored_prefixes(self) -> list[str]:
        return sorted(p for p, bucket in self._data.items() if bucket)

    # -- reads -------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._applied

    def get(self, prefix: str, key: str) -> Record | None:
        return self._data.get(prefix, {}).get(key)

    def list(self, prefix: str) -> list[Record]:  # noqa: A003 - the Store interface
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

    # -- writes ------------------------------------------------------------
    async def create(self, prefix: str, obj: Any, *, principal: str) -> Record:
        kind = self.kinds[prefix]
        key = kind.key_of(obj)

        def plan() -> list[_Change]:
            if key in self._data[prefix]:
                raise Conflict(f"{prefix} {key} already exists", model=prefix, key=key)
            self._check_unique(kind, key, obj)
            return [_Change(prefix, key, obj, None)]

        return (await self._write(plan, principal))[0]

    async def modify(self, prefix: str, key: str, mutate: Mutator, *, principal: str,
                     if_rev: int | None = None, action: str = "update") -> Record:
        kind = self.kinds[prefix]

        def plan() -> list[_Change]:
            old = self._existing(prefix, key, if_rev)
            new = mutate(old.obj)
            if kind.key_of(new) != key:
                raise Conflict(f"the key of {prefix} {key} cannot change", model=prefix, key=key)
            self._check_unique(kind, key, new)
            return [_Change(prefix, key, new, old, action)]

        return (await self._write(plan, principal))[0]

    async def delete(self, prefix: str, key: str, *, principal: str,
                     if_rev: int | None = None) -> Record:
        def plan() -> list[_Change]:
            return [_Change(prefix, key, None, self._existing(prefix, key, if_rev))]

        old = (await self._write(plan, principal))[0]
        return old

    async def transact(self, changes: Iterable[tuple[str, str, Any | None]], *,
                       principal: str) -> builtins.list[Record]:
        wanted = list(changes)

        def plan() -> list[_Change]:
            batch = []
            for prefix, key, new in wanted:
                old = self._data.get(prefix, {}).get(key)
                if new is not None:
                    self._check_unique(self.kinds[prefix], key, new)
                elif old is None:
                    raise NotFound(f"{prefix} {key} not found", model=prefix, key=key)
                batch.append(_Change(prefix, key, new, old))
            return batch

        return await self._write(plan, principal)

    async def emit(self, event: Event) -> Event:
        """Give a Seq to an event that is not a store write; every node sees it."""
        async with self._lock:
            if not event.Time:
                event.Time = now_rfc3339()
            with trio.CancelScope(shield=True):
                seq = await self._run(self._emit_sync, event)
                await self._until_applied(seq)
            event.Seq = seq
            return event

    def _emit_sync(self, conn: psycopg.Connection[Any], event: Event) -> int:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            seq = self._next_seq(conn, 1)
            event.Seq = seq
            conn.execute("INSERT INTO drpd_changes (seq, event) VALUES (%s, %s)",
                         (seq, msgspec.json.encode(event)))
            self._notify_and_prune(conn, seq)
        return seq

    async def _write(self, plan: Any, principal: str) -> builtins.list[Record]:
        """Plan on fresh memory, commit if nothing moved meanwhile, else plan again."""
        if self._closed:
            raise RuntimeError("store is closed")
        async with self._lock:
            # plan on memory that has every change committed so far, from any
            # node: this node's feed reader may not have woken up yet
            with trio.CancelScope(shield=True):
                await self._catch_up()
            while True:
                changes: list[_Change] = plan()
                try:
                    with trio.CancelScope(shield=True):
                        last = await self._run(self._commit_sync, changes, principal)
                        await self._until_applied(last)
                except _Raced:
                    with trio.CancelScope(shield=True):
                        await self._catch_up()
                    continue
                except psycopg.errors.UniqueViolation:
                    with trio.CancelScope(shield=True):
                        await self._catch_up()
                    continue
                return [self._record_after(change, last - len(changes) + 1 + i)
                        for i, change in enumerate(changes)]

    def _record_after(self, change: _Change, rev: int) -> Record:
        if change.new is None:
            assert change.old is not None
            return change.old
        current = self._data.get(change.prefix, {}).get(change.key)
        if current is not None and current.rev == rev:
            return current
        return Record(change.new, rev)

    def _commit_sync(self, conn: psycopg.Connection[Any], changes: builtins.list[_Change],
                     principal: str) -> int:
        time = now_rfc3339()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            for change in changes:
                row = conn.execute("SELECT rev FROM drpd_objects WHERE prefix = %s AND key = %s",
                                   (change.prefix, change.key)).fetchone()
                if (row[0] if row else None) != (change.old.rev if change.old else None):
                    raise _Raced()
            first = self._next_seq(conn, len(changes))
            for offset, change in enumerate(changes):
                rev = first + offset
                kind = self.kinds.get(change.prefix)
                conn.execute("DELETE FROM drpd_uniques WHERE prefix = %s AND key = %s",
                             (change.prefix, change.key))
                if change.new is None:
                    data = None
                    conn.execute("DELETE FROM drpd_objects WHERE prefix = %s AND key = %s",
                                 (change.prefix, change.key))
                    action, obj = "delete", public_view(change.prefix, change.old.obj)  # type: ignore[union-attr]
                    original = None
                else:
                    data = msgspec.json.encode(change.new)
                    conn.execute(
                        "INSERT INTO drpd_objects (prefix, key, rev, data) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (prefix, key) DO UPDATE SET rev = EXCLUDED.rev, "
                        "data = EXCLUDED.data", (change.prefix, change.key, rev, data))
                    for field in kind.unique if kind else ():
                        value = getattr(change.new, field, None)
                        if value:
                            conn.execute(
                                "INSERT INTO drpd_uniques (prefix, field, value, key) "
                                "VALUES (%s, %s, %s, %s)",
                                (change.prefix, field, str(value), change.key))
                    action = "create" if change.old is None else change.action
                    obj = public_view(change.prefix, change.new)
                    original = None if change.old is None else public_view(change.prefix, change.old.obj)
                event = Event(Time=time, Type=change.prefix, Action=action, Key=change.key,
                              Principal=principal, Object=obj, Original=original, Seq=rev)
                conn.execute(
                    "INSERT INTO drpd_changes (seq, prefix, key, data, event) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (rev, change.prefix, change.key, data, msgspec.json.encode(event)))
            last = first + len(changes) - 1
            self._notify_and_prune(conn, last)
        return last

    @staticmethod
    def _next_seq(conn: psycopg.Connection[Any], count: int) -> int:
        row = _one(conn.execute(
            "UPDATE drpd_meta SET v = (v::bigint + %s)::text WHERE k = 'seq' RETURNING v",
            (count,)))
        return int(row[0]) - count + 1

    @staticmethod
    def _notify_and_prune(conn: psycopg.Connection[Any], last: int) -> None:
        conn.execute(f"NOTIFY {CHANNEL}")
        if last % 1000 == 0:
            conn.execute("DELETE FROM drpd_changes WHERE seq <= %s", (last - KEEP_CHANGES,))

    # -- checks (on this node's memory; the database re-checks) ----------------
    def _existing(self, prefix: str, key: str, if_rev: int | None) -> Record:
        old = self._data.get(prefix, {}).get(key)
        if old is None:
            raise NotFound(f"{prefix} {key} not found", model=prefix, key=key)
        if if_rev is not None and old.rev != if_rev:
            raise PreconditionFailed(
                f"{prefix} {key} has changed (revision {old.rev}, expected {if_rev})",
                model=prefix, key=key)
        return old

    def _check_unique(self, kind: Kind, key: str, obj: Any) -> None:
        for field in kind.unique:
            value = getattr(obj, field, None)
            if not value:
                continue
            other_key = self._unique.get((kind.prefix, field), {}).get(value)
            if other_key is not None and other_key != key:
                raise Conflict(f"{kind.prefix} {other_key} already has {field} {value!r}",
                               model=kind.prefix, key=key)

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

    # -- maintenance -------------------------------------------------------
    async def backup(self, dest: str | os.PathLike[str]) -> None:
        raise NotImplementedError(
            "back up a PostgreSQL store with PostgreSQL's own tools (pg_dump, base backups)")
