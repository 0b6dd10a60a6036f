"""Finding and ending provider processes, including those that escaped.

Every provider process drpd starts carries two environment markers:
``DRPD_RUN=<run id>`` (this drpd process) and ``DRPD_INSTANCE=<run id>/<n>``
(one start of one instance). A provider's children inherit them even when
they leave its process group or session, so scanning ``/proc/*/environ``
finds every process a provider left behind. The reaper uses the run marker
when drpd itself dies; a supervisor uses the instance marker on each stop.
"""

from __future__ import annotations

import os
import signal
import time

RUN_VAR = "DRPD_RUN"
INSTANCE_VAR = "DRPD_INSTANCE"


def pids_with_marker(var: str, value: str) -> list[int]:
    needle = f"{var}={value}".encode() + b"\0"
    me = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read() + b"\0"
        except OSError:
            continue
        if b"\0" + needle in b"\0" + environ:
            found.append(int(entry))
    return found


def kill_marked(var: str, value: str, *, rounds: int = 10, pause: float = 0.05) -> int:
    """SIGKILL every process carrying the marker, until none is left.

    Repeats because a process may fork while it is being killed. Returns how
    many were signalled. Blocking: call it from a worker thread.
    """
    killed = 0
    for _ in range(rounds):
        pids = [pid for pid in pids_with_marker(var, value) if not _is_zombie(pid)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(pause)
    return killed


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
