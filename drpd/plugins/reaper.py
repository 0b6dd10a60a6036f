"""The reaper: a tiny process that outlives drpd only to end its providers.

drpd starts it at boot with a pipe on its stdin and writes nothing to it.
When drpd exits for any reason, SIGKILL included, the kernel closes the
pipe; the reaper sees end-of-file and kills every process carrying drpd's
run marker (see ``processes``). This is the "separate reaper" of
docs/protocol.md §5: parent-death signals follow the spawning *thread* under
trio, so they cannot do this job.

Run as ``python -m drpd.plugins.reaper <run id>``; it imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import sys

from .processes import RUN_VAR, kill_marked


def main() -> int:
    run_id = sys.argv[1]
    # Not ours to die from the terminal's Ctrl-C or drpd's group signals:
    # drpd shuts down first and closes the pipe itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    kill_marked(RUN_VAR, run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
