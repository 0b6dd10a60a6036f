"""A full disk, told apart from other failures and answered as 507.

When the filesystem holding drpd's state is full, every write fails and
nothing else is wrong: reads (answered from memory), actions and events go
on, and writes work again once space is freed. Each way a write can fail
(SQLite's ``SQLITE_FULL``, ``ENOSPC`` / ``EDQUOT`` from a file write, an
SQLite I/O error on a filesystem with no space left) becomes one
:class:`~drpd.models.InsufficientStorage` naming the directory, logged as
one line, without a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

from .models import InsufficientStorage

log = logging.getLogger("drpd.storage")

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13
SQLITE_IOERR = 10
#: below this many free bytes an I/O error is taken for a full disk
NEARLY_FULL = 1 << 20


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_no_space(exc: BaseException, directory: str | os.PathLike[str] | None = None) -> bool:
    """True when ``exc`` says the disk (of ``directory``) is full."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == SQLITE_FULL or "disk is full" in str(exc):
            return True
        if primary == SQLITE_IOERR and directory is not None:
            free = free_bytes(directory)
            return free is not None and free < NEARLY_FULL
    return False


def insufficient_storage(directory: str | os.PathLike[str], what: str, *, model: str = "",
                         key: str = "") -> InsufficientStorage:
    """The 507 for a write of ``what`` that found no space in ``directory``; logged once."""
    where = Path(directory)
    log.warning("no space left in %s: %s not written", where, what)
    return InsufficientStorage(
        f"no space left on the device holding drpd's state ({where}): {what} was not "
        "written; reads go on, and writes work again once space is freed",
        model=model, key=key)
