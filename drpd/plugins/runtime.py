"""Where instances' sockets and scratch directories live (docs/protocol.md §5).

UNIX socket paths are limited to 107 bytes, and state directories are often
deep, so sockets live in a short directory only drpd's user can create:
``$RUNTIME_DIRECTORY/sockets`` under systemd, else
``$XDG_RUNTIME_DIR/drpd-<hash of the state dir>`` when that directory is
drpd's user's own and private, else a fresh ``mkdtemp`` directory in /tmp
(a random name: another local user cannot create it first to keep drpd
from starting). An existing directory is used only when it is a directory
(not a link) owned by drpd's user and writable by nobody else. Each start
of an instance gets a numbered subdirectory with two short socket names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ..http11 import MAX_UNIX_PATH

#: the longest suffix added under the runtime directory: "/<serial>/s.sock"
_SUFFIX = len("/4294967295/s.sock")


class RuntimeDirError(Exception):
    pass


def _private_dir(path: str) -> bool:
    """True for a real directory of this user that no one else can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def runtime_dir(state_dir: Path, *, for_others: bool = False) -> Path:
    """Where the sockets of provider starts go. ``for_others``: providers run
    as another user (``provider_user``), who must traverse the path, so a
    private ``XDG_RUNTIME_DIR`` (0700) will not do."""
    base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    xdg = "" if for_others else os.environ.get("XDG_RUNTIME_DIR", "")
    digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:10]
    if base:
        path = Path(base) / "sockets"
    elif xdg and os.path.isabs(xdg) and _private_dir(xdg):
        path = Path(xdg) / f"drpd-{digest}"
    else:
        path = Path(tempfile.mkdtemp(prefix=f"drpd-{os.getuid()}-{digest}-", dir="/tmp"))
    if len(os.fsencode(str(path))) + _SUFFIX > MAX_UNIX_PATH:
        raise RuntimeDirError(
            f"runtime directory {path} is too long for UNIX sockets "
            f"(limit {MAX_UNIX_PATH} bytes); set RUNTIME_DIRECTORY to a shorter path"
        )
    return path


def prepare(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` (``mode``: 0700, or 0711 when providers run as another
    user), or check an existing one is ours, and empty it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise RuntimeDirError(f"cannot create runtime directory {path}: {exc.strerror}") from None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        raise RuntimeDirError(f"runtime directory {path} is not a directory owned by this user "
                              "and writable by it alone")
    os.chmod(path, mode)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    return path
