"""Where instances' sockets and scratch directories live (docs/protocol.md §5).

UNIX socket paths are limited to 107 bytes, and state directories are often
deep, so sockets live in ``$RUNTIME_DIRECTORY`` (systemd) or in a short
directory of drpd's own, ``/tmp/drpd-<uid>-<hash of the state dir>``, mode
0700 so only drpd's user can enter it. Each start of an instance gets a
numbered subdirectory with two short socket names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from ..http11 import MAX_UNIX_PATH

#: the longest suffix added under the runtime directory: "/<serial>/s.sock"
_SUFFIX = len("/4294967295/s.sock")


class RuntimeDirError(Exception):
    pass


def runtime_dir(state_dir: Path) -> Path:
    base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if base:
        path = Path(base) / "sockets"
    else:
        digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:10]
        path = Path("/tmp") / f"drpd-{os.getuid()}-{digest}"
    if len(os.fsencode(str(path))) + _SUFFIX > MAX_UNIX_PATH:
        raise RuntimeDirError(
            f"runtime directory {path} is too long for UNIX sockets "
            f"(limit {MAX_UNIX_PATH} bytes); set RUNTIME_DIRECTORY to a shorter path"
        )
    return path


def prepare(path: Path) -> Path:
    """Create ``path`` 0700, or check an existing one is ours, and empty it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise RuntimeDirError(f"cannot create runtime directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RuntimeDirError(f"runtime directory {path} is not a directory owned by this user")
    os.chmod(path, 0o700)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    return path
