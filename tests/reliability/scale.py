"""Sizes of the reliability suite.

CI runs it scaled down to fit its time on 2 cores; ``DRPD_RELIABILITY=full``
runs every case at the issue's full figures (1,000 concurrent writes, 500
clients for 60 s, ...) for a long run.
"""

from __future__ import annotations

import os

FULL = os.environ.get("DRPD_RELIABILITY", "").lower() == "full"


def size(ci: int, full: int) -> int:
    return full if FULL else ci


def seconds(ci: float, full: float) -> float:
    return full if FULL else ci
