"""Logging to stderr in a shape journald reads well.

Under systemd, when stderr *is* the journal stream (``$JOURNAL_STREAM``
names stderr's device and inode), each line starts with a ``<N>`` syslog
priority, which journald turns into the entry's priority, and carries no
timestamp, since the journal adds its own. Elsewhere (a terminal, a file, a
test) each line has a timestamp and a level name. ``JOURNAL_STREAM`` alone
is not enough: a shell started from a unit inherits it with stderr pointed
elsewhere, which is why the device and inode are compared.

Every line names its component, the logger: ``drpd.plugins`` (supervisors),
``drpd.plugin.<instance>`` (what one instance's provider wrote on stdout,
stderr or ``/log``), ``drpd`` (the daemon), ``drpd.notify``, ...; journald
keeps one entry per line, so each line of a multi-line message (a
traceback) gets the priority and the name again.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


class JournalFormatter(logging.Formatter):
    """``<prio>name: message``, one such prefix on every line."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelname, 6)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        prefix = f"<{prio}>{record.name}: "
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class TerminalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def stderr_is_journal(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd connected."""
    env = os.environ if env is None else env
    raw = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in raw.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str, stream: TextIO | None = None,
                  env: Mapping[str, str] | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if stderr_is_journal(stream, env):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(TerminalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    """Set drpd's log level; the daemon calls it again on SIGHUP."""
    logging.getLogger().setLevel(level.upper())
    # hypercorn's per-request lines are noise at info
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
