"""Listening UNIX sockets with the standard library only.

Both sides of the provider protocol bind UNIX sockets: drpd (drpd.http11)
and the SDK, which binds its plugin socket and prints ``READY!`` before it
imports trio and h11 (a provider is ready, in the protocol's sense, once
its socket accepts connections: they wait in the backlog meanwhile). This
module therefore imports nothing but the standard library.
"""

from __future__ import annotations

import os
import socket
import stat

#: sun_path holds 108 bytes on Linux, one of them the terminating NUL
MAX_UNIX_PATH = 107


def check_unix_path(path: str) -> None:
    """Fail clearly on a path the kernel would truncate or refuse with a vague error."""
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise ValueError(
            f"UNIX socket path is {size} bytes, the limit is {MAX_UNIX_PATH}: {path!r}"
        )


def remove_stale(path: str) -> None:
    """Remove a socket file left at ``path``; any other kind of file is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    os.unlink(path)


def bind_unix(path: str, *, backlog: int = 512,
              mode: int | None = None) -> tuple[socket.socket, int]:
    """A socket listening on ``path``, and the inode of its file (to remove
    only our own file later). A stale socket file there is replaced."""
    check_unix_path(path)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        remove_stale(path)
        raw.bind(path)
        if mode is not None:  # who may connect: the directory around it decides
            os.chmod(path, mode)
        raw.listen(backlog)
        return raw, os.stat(path).st_ino
    except BaseException:
        raw.close()
        raise


def check_connect(path: str, timeout: float = 5.0) -> None:
    """Raise OSError unless something accepts connections on ``path``."""
    check_unix_path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        probe.connect(path)
