"""``drpd backup`` and ``drpd restore``: copies of the store, taken and put back safely.

Backup works while drpd runs, from a separate process, without talking to
the daemon: the store is SQLite in WAL mode, where a reader never blocks
the writer, and ``sqlite3.Connection.backup`` copies every page under one
read transaction, so the copy is the store as of one commit. The copy is
written beside the target, checked, made a single self-contained file
(journal mode DELETE), fsynced and renamed into place: a failed backup
never leaves a half-written file under the name given.

Restore refuses while a drpd runs on the state directory (it would fork the
store: drpd keeps every object in memory), and takes drpd's lock itself so
none can start halfway. It checks the file before touching anything:
``PRAGMA integrity_check``, that it is a drpd store, that its schema is not
newer than this drpd's, and that every object decodes (by opening it as a
store, which also migrates an older schema). The store it replaces is kept
as ``drpd.db.pre-restore``.

Only the store is copied. The token key, the TLS certificate, the secure
params key and the file space are ordinary files in the state directory:
back them up with the usual tools (README, "Backup and restore").

Everything here blocks: the command line runs it in a worker thread or
before any trio loop.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from .store.sqlite import SCHEMA_VERSION

#: the store file's name in the state directory (``daemon.StateDir.db``)
DB_NAME = "drpd.db"
KEEP_SUFFIX = ".pre-restore"


class BackupError(Exception):
    """Why a backup or restore was refused or failed, as one line."""


def backup(db: Path, dest: Path) -> int:
    """Copy the store ``db`` to ``dest`` consistently; returns the objects copied."""
    try:
        return _backup(db, dest)
    except OSError as exc:
        raise BackupError(f"cannot back up {db} to {dest}: {exc.strerror or exc}") from None


def _backup(db: Path, dest: Path) -> int:
    if not db.exists():
        raise BackupError(f"no store at {db}")
    dest = dest.absolute()
    tmp = _temp_beside(dest)
    try:
        source = sqlite3.connect(db, timeout=30)
        try:
            source.execute("PRAGMA query_only=1")
            target = sqlite3.connect(tmp)
            try:
                # pages=-1: everything in one step, under one read transaction
                source.backup(target, pages=-1)
                target.execute("PRAGMA journal_mode=DELETE")
                count = check_store(target, str(dest))
            finally:
                target.close()
        finally:
            source.close()
            _give_back_sidecars(db)
        _fsync(tmp)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {db}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return count


def check_store(conn: sqlite3.Connection, what: str) -> int:
    """Refuse a file that is damaged, not a drpd store, or newer than this drpd."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is not a usable SQLite database: {exc}") from None
    if problems != ["ok"]:
        raise BackupError(f"{what} is damaged: {'; '.join(problems[:3])}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{what} has store schema version {version}, newer than this drpd's "
            f"({SCHEMA_VERSION}): restore it with a newer drpd")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version < 1 or not {"meta", "objects"} <= tables:
        raise BackupError(f"{what} is not a drpd store")
    return int(conn.execute("SELECT count(*) FROM objects").fetchone()[0])


def restore(source: Path, state_root: Path) -> int:
    """Put the store copy ``source`` into the stopped drpd's ``state_root``.

    Returns the objects restored. The caller holds drpd's state-directory
    lock (``daemon.lock_state_dir``) for the whole call.
    """
    try:
        return _restore(source, state_root)
    except OSError as exc:
        raise BackupError(f"cannot restore {source}: {exc.strerror or exc}") from None


def _restore(source: Path, state_root: Path) -> int:
    from .store import SQLiteStore

    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    db = state_root / DB_NAME
    staged = _temp_beside(db)
    try:
        # copy through SQLite, so a source in WAL mode with its -wal file
        # (a raw copy of a state directory) comes over whole
        try:
            src = sqlite3.connect(f"file:{source.absolute()}?mode=ro", uri=True)
            try:
                check_store(src, str(source))
                dst = sqlite3.connect(staged)
                try:
                    src.backup(dst, pages=-1)
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read {source}: {exc}") from None
        # every object must decode (and an older schema is migrated) before
        # the running store is touched
        try:
            import trio

            async def load() -> int:
                store = SQLiteStore(staged)
                await store.open()
                try:
                    return sum(len(store.list(prefix)) for prefix in store.kinds)
                finally:
                    await store.aclose()

            count = trio.run(load)
        except Exception as exc:
            raise BackupError(f"{source} does not load as a drpd store: {exc}") from None
        match_owner(staged, db if db.exists() else state_root)
        _fsync(staged)
        if db.exists():
            _keep_old(db)
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.replace(staged, db)
        _fsync_dir(state_root)
    finally:
        staged.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)
    return count


def _keep_old(db: Path) -> None:
    """Save the store being replaced as ``drpd.db.pre-restore``, its WAL folded in.

    A store too damaged to copy is a reason to restore, not to refuse: it is
    then moved aside as it is, with its ``-wal`` and ``-shm`` files.
    """
    keep = db.with_name(db.name + KEEP_SUFFIX)
    keep.unlink(missing_ok=True)
    try:
        old = sqlite3.connect(db)
        try:
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            os.close(os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            kept = sqlite3.connect(keep)
            try:
                old.backup(kept, pages=-1)
                kept.execute("PRAGMA journal_mode=DELETE")
            finally:
                kept.close()
        finally:
            old.close()
    except sqlite3.Error:
        keep.unlink(missing_ok=True)
        os.replace(db, keep)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{db}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{keep}{suffix}"))
        return
    match_owner(keep, db)


def _temp_beside(path: Path) -> Path:
    """An empty 0600 file beside ``path``: SQLite fills it, and the files it
    adds beside it take its mode, so no copy of the store is ever readable
    by others, whatever the umask."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def match_owner(path: Path, like: Path) -> None:
    """Run as root on drpd's state directory, leave files drpd's user can write."""
    if os.geteuid() != 0:
        return
    st = like.stat()
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, 0o600)


def _give_back_sidecars(db: Path) -> None:
    """A backup run as root may create ``-wal``/``-shm`` files; hand them to the store's owner."""
    if os.geteuid() != 0:
        return
    st = db.stat()
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        try:
            if side.stat().st_uid != st.st_uid:
                os.chown(side, st.st_uid, st.st_gid)
        except FileNotFoundError:
            pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
