"""Every process a provider start made, found by ancestry, not by marker.

A provider's child can leave its process group (``setsid``) and clear its
environment (``env -i``), shedding both ways drpd used to find it
(``processes``). What it cannot shed is its ancestry: while its parent
lives it descends from the provider, and once drpd is a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``) an orphan is re-parented to drpd, not to
init, so it stays in drpd's tree. :class:`Lineage` walks ``/proc`` (one pass
over ``stat``: parent pid and start time), remembers which start each
descendant came from, and kills by start. Pids are remembered with their
start time, so a recycled pid is never mistaken for a provider's child.

drpd updates the lineage every second and at the start of each stop; the
reaper (``reaper.py``) keeps its own for the case that drpd is SIGKILLed.
Orphans that exit become drpd's zombies: :meth:`Lineage.reap` collects
those that drpd did not spawn itself. Blocking: call from worker threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping

log = logging.getLogger("drpd.plugins")

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Proc:
    __slots__ = ("ppid", "start", "zombie")

    def __init__(self, ppid: int, start: int, zombie: bool) -> None:
        self.ppid, self.start, self.zombie = ppid, start, zombie


def scan() -> dict[int, Proc]:
    """Every process: its parent, start time (clock ticks) and zombie state."""
    table: dict[int, Proc] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after it
        fields = raw[raw.rfind(b")") + 2:].split()
        try:
            table[int(entry)] = Proc(int(fields[1]), int(fields[19]), fields[0] == b"Z")
        except (IndexError, ValueError):
            continue
    return table


def _children(table: Mapping[int, Proc]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid, proc in table.items():
        kids.setdefault(proc.ppid, []).append(pid)
    return kids


class Lineage:
    """Which provider start each living descendant came from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: root pid (a provider process) -> its start's marker
        self._roots: dict[int, str] = {}
        #: pid -> (start time, marker) of every descendant seen
        self._known: dict[int, tuple[int, str]] = {}
        #: zombies seen at the previous reap that drpd did not spawn
        self._zombies: set[int] = set()
        #: processes drpd spawned and waits for itself (never reaped here)
        self.own: set[int] = set()
        #: (pid, start time) already handed out by :meth:`fresh`
        self._told: set[tuple[int, int]] = set()

    def add_root(self, pid: int, marker: str) -> None:
        with self._lock:
            self._roots[pid] = marker
            self.own.add(pid)

    def update(self, table: Mapping[int, Proc] | None = None) -> None:
        """Remember every descendant of every root and of every process known."""
        table = scan() if table is None else table
        kids = _children(table)
        with self._lock:
            known = {pid: entry for pid, entry in self._known.items()
                     if pid in table and table[pid].start == entry[0]}
            for pid, marker in self._roots.items():
                if pid in table and pid not in known:
                    known[pid] = (table[pid].start, marker)
            stack = [(pid, entry[1]) for pid, entry in known.items()]
            while stack:
                pid, marker = stack.pop()
                for kid in kids.get(pid, ()):
                    if kid not in known:
                        known[kid] = (table[kid].start, marker)
                        stack.append((kid, marker))
            self._known = known

    def fresh(self) -> list[tuple[int, int]]:
        """(pid, start time) of the descendants learnt since the last call (for
        the reaper, which must know them if drpd is SIGKILLed)."""
        with self._lock:
            now = {(pid, entry[0]) for pid, entry in self._known.items()}
            new = sorted(now - self._told)
            self._told = now
        return new

    def kill(self, marker: str, *, rounds: int = 10, pause: float = 0.05) -> int:
        """SIGKILL every remembered descendant of the start ``marker`` (and what
        they fork meanwhile); forget the start. Returns how many were signalled."""
        killed = 0
        for _ in range(rounds):
            table = scan()
            self.update(table)
            with self._lock:
                targets = [pid for pid, (start, m) in self._known.items()
                           if m == marker and pid in table and table[pid].start == start
                           and not table[pid].zombie]
            if not targets:
                break
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(pause)
        with self._lock:
            gone = {p for p, m in self._roots.items() if m == marker}
            self._roots = {p: m for p, m in self._roots.items() if m != marker}
            self.own -= gone
        return killed

    def kill_all(self) -> int:
        with self._lock:
            markers = {m for _, m in self._known.values()} | set(self._roots.values())
        return sum(self.kill(marker) for marker in sorted(markers))

    def reap(self, table: Mapping[int, Proc] | None = None) -> int:
        """Collect drpd's zombie children that it did not spawn (orphans it
        inherited as subreaper). A zombie is reaped only when seen twice, so
        a child of drpd's own that exited a moment ago is left to its waiter."""
        table = scan() if table is None else table
        me = os.getpid()
        with self._lock:
            own = set(self.own)
        zombies = {pid for pid, proc in table.items()
                   if proc.ppid == me and proc.zombie and pid not in own}
        reaped = 0
        for pid in zombies & self._zombies:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
        self._zombies = zombies - self._zombies
        return reaped


def descendants_of(root: int, table: Mapping[int, Proc] | None = None) -> dict[int, int]:
    """pid -> start time of every descendant of ``root`` now."""
    table = scan() if table is None else table
    kids = _children(table)
    found: dict[int, int] = {}
    stack = [root]
    while stack:
        for kid in kids.get(stack.pop(), ()):
            if kid not in found:
                found[kid] = table[kid].start
                stack.append(kid)
    return found


def kill_remembered(remembered: Iterable[tuple[int, int]]) -> int:
    """SIGKILL each (pid, start time) still alive with that start time."""
    table = scan()
    killed = 0
    for pid, start in remembered:
        proc = table.get(pid)
        if proc is not None and proc.start == start and not proc.zombie:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed
