"""The reaper: a tiny process that outlives drpd only to end its providers.

drpd starts it at boot with a pipe on its stdin. Through it drpd tells the
reaper the cgroup its provider starts live in (``cgroups``), when it has
one, and each second the processes it learnt descend from provider starts
(``lineage``: ``<pid> <start time>`` lines), and nothing else. When drpd
exits for any reason, SIGKILL included, the kernel closes the pipe; the
reaper sees end-of-file and kills every process carrying drpd's run marker
(``processes``) and every process it was told of, or saw descending from
one, that still lives with the same start time. A child that called
``setsid`` and cleared its environment carries no marker, but it cannot
shed its ancestry. This is the "separate reaper" of docs/protocol.md §5:
parent-death signals follow the spawning *thread* under trio, so they
cannot do this job.

Run as ``python -m drpd.plugins.reaper <run id>``; it imports nothing heavy.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path

from .cgroups import kill_tree
from .lineage import descendants_of, kill_remembered, scan
from .processes import RUN_VAR, kill_marked

#: seconds between two looks at the descendants of what drpd told
PERIOD = 0.5
#: a line longer than this is not drpd's: the rest of it is dropped
MAX_LINE = 4096


def _follow(seen: dict[int, int]) -> None:
    """Add what the remembered processes forked, drop what died."""
    table = scan()
    for pid, start in list(seen.items()):
        proc = table.get(pid)
        if proc is None or proc.start != start:
            del seen[pid]
        else:
            seen.update(descendants_of(pid, table))


def main() -> int:
    run_id = sys.argv[1]
    # Not ours to die from the terminal's Ctrl-C or drpd's group signals:
    # drpd shuts down first and closes the pipe itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    seen: dict[int, int] = {}
    groups: list[str] = []
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], PERIOD)
        if readable:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            pending = pending[-MAX_LINE:]
            for line in lines:
                if line.startswith(b"cgroup "):
                    groups.append(os.fsdecode(line[7:]))
                    continue
                try:
                    pid, start = (int(word) for word in line.split())
                except ValueError:
                    continue
                seen[pid] = start
        if seen:
            _follow(seen)
    for group in groups:  # drpd's cgroups hold everything its providers made
        kill_tree(Path(group))
    kill_marked(RUN_VAR, run_id)
    for _ in range(5):  # what they fork while dying is theirs too
        _follow(seen)
        if not kill_remembered(seen.items()):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
