"""One cgroup (v2) per provider start, where drpd may make them.

A process cannot leave its cgroup (only a process allowed to write the
``cgroup.procs`` of both cgroups can move it), so a provider start's cgroup
holds every process it made: children that called ``setsid``, cleared their
environment and lost their parent included. Stopping a start writes ``1`` to
its ``cgroup.kill`` (Linux 5.14; older kernels: SIGKILL each pid listed,
until none is left) and removes the directory.

drpd makes ``drpd-<run id>/`` inside its own cgroup (``/proc/self/cgroup``,
on the cgroup2 mount), which needs write access there: root outside a
service manager, or a systemd unit with ``Delegate=yes``. Where it cannot,
``CgroupTree.create`` answers None and drpd falls back to ancestry
(``lineage``). A provider is moved into its cgroup by a ``/bin/sh``
trampoline before it execs, so it never runs a single instruction outside.
Blocking: call from worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("drpd.plugins")

#: argv prefix that moves the shell into the cgroup ``$1`` then execs the rest
TRAMPOLINE = ["/bin/sh", "-c", 'echo $$ > "$1/cgroup.procs" || exit 125; shift; exec "$@"',
              "drpd-cgroup"]


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split()[4])
    return None


def _own_cgroup() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


class CgroupTree:
    """The cgroups of one drpd run: ``<own cgroup>/drpd-<run id>/<start>``."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def create(cls, run_id: str) -> CgroupTree | None:
        mount, own = _cgroup2_mount(), _own_cgroup()
        if mount is None or own is None or not os.path.exists("/bin/sh"):
            return None
        base = mount / own.lstrip("/") / f"drpd-{run_id}"
        try:
            base.mkdir(mode=0o755)
            probe = base / "probe"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            log.info("no cgroup of its own per provider start (%s): processes are "
                     "found by ancestry and environment instead", exc.strerror or exc)
            with contextlib.suppress(OSError):
                base.rmdir()
            return None
        return cls(base)

    def make(self, name: str) -> Path:
        """A new cgroup for one start (``name``: its marker, made path-safe)."""
        path = self.base / name.replace("/", "-")
        path.mkdir(mode=0o755, exist_ok=True)
        return path

    @staticmethod
    def pids(path: Path) -> list[int]:
        try:
            return [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self, path: Path, *, timeout: float = 5.0, remove: bool = True) -> int:
        """End every process in the cgroup, wait until it is empty and (with
        ``remove``) remove it; how many processes there were."""
        found = self.pids(path)
        if not found and not path.exists():
            return 0
        try:
            (path / "cgroup.kill").write_text("1")
        except OSError:  # before Linux 5.14: one by one, until none is left
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not remove:
                    if self.pids(path):
                        raise OSError("not empty yet")
                    break
                path.rmdir()  # only an empty cgroup can go
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    log.error("cgroup %s still holds processes %s", path, self.pids(path))
                    break
                for pid in self.pids(path):  # forked while being killed
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
        return len(found)

    def remove_all(self) -> int:
        killed = 0
        with contextlib.suppress(OSError):
            for child in self.base.iterdir():
                if child.is_dir():
                    killed += self.kill(child)
        with contextlib.suppress(OSError):
            self.base.rmdir()
        return killed


def kill_tree(base: Path) -> int:
    """The reaper's sweep: every cgroup under ``base``, then ``base`` itself."""
    return CgroupTree(base).remove_all() if base.is_dir() else 0
