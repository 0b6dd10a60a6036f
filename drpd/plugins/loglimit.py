"""Provider output into drpd's log, bounded per instance (issue 11, item 22).

A provider that floods stdout/stderr must not make drpd log megabytes a
second. Each instance gets a :class:`LogLimiter`: a token bucket allowing
``rate`` lines a second with bursts of ``burst``; lines beyond it are
counted, not logged. The first drop, and then at most every
``report_every`` seconds (on the next line, logged or not) the count since,
is handed back once, for one log line saying how many were dropped. While
lines are being dropped, the reader pauses between chunks (``THROTTLE``).

:class:`LineSplitter` cuts a byte stream into lines in one pass per chunk
(the naive ``buffer.split(b"\\n", 1)`` loop copies the rest of the buffer for
every line: quadratic in a chunk of many short lines).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["THROTTLE", "LineSplitter", "LogLimiter", "TokenBucket"]

#: seconds the reader of a flooding instance's output pauses after each chunk
#: (64 KiB): reading, splitting and counting lines costs CPU too, so while
#: lines are dropped drpd reads at most ~1.3 MB/s and a provider writing
#: faster waits on its full pipe, as it would on a slow terminal
THROTTLE = 0.05


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class LogLimiter:
    """Which of one instance's output lines get logged, and how many did not."""

    def __init__(self, rate: float, burst: float, *, report_every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket = TokenBucket(rate, burst, clock)
        self.report_every = report_every
        self._clock = clock
        #: lines dropped since the last report
        self.pending = 0
        #: lines dropped in this limiter's life
        self.dropped = 0
        #: the last line was dropped: the reader pauses (THROTTLE) before reading on
        self.flooding = False
        #: the first drop is reported at once, later ones every report_every
        self._reported: float | None = None

    def allow(self) -> bool:
        """True if this line may be logged; otherwise it is counted as dropped."""
        if self.bucket.take():
            self.flooding = False
            return True
        self.flooding = True
        self.pending += 1
        self.dropped += 1
        return False

    def report(self) -> int:
        """Lines dropped since the last report, if a report is due (else 0)."""
        if not self.pending:
            return 0
        if self._reported is not None and self._clock() - self._reported < self.report_every:
            return 0
        count, self.pending = self.pending, 0
        self._reported = self._clock()
        return count


class LineSplitter:
    """Feed chunks of bytes, get complete lines (without ``\\n`` or ``\\r``).

    Of a line longer than ``max_line`` bytes the first ``max_line`` are
    kept and what was buffered past them is dropped, so the buffer stays
    bounded (the line's remainder, arriving later, becomes a line of its own).
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._rest = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._rest + chunk if self._rest else chunk
        parts = data.split(b"\n")
        self._rest = parts.pop()
        lines = [p[:self.max_line].decode(errors="replace").rstrip("\r") for p in parts]
        if len(self._rest) > self.max_line:
            lines.append(self._rest[:self.max_line].decode(errors="replace"))
            self._rest = b""
        return lines

    def close(self) -> list[str]:
        """What is left at the end of the stream."""
        rest, self._rest = self._rest, b""
        return [rest.decode(errors="replace")] if rest else []
