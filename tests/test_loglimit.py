"""The per-instance limit on provider output lines (issue 11, item 22), in-process."""

from __future__ import annotations

import pytest

from drpd.plugins.loglimit import LineSplitter, LogLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now += 0.5  # 5 tokens back
    assert sum(bucket.take() for _ in range(10)) == 5
    clock.now += 100  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(100)) == 5


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=5)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)


def test_a_limiter_counts_what_it_drops_and_reports_it_periodically() -> None:
    clock = Clock()
    limiter = LogLimiter(rate=1, burst=2, report_every=10, clock=clock)
    assert limiter.report() == 0
    allowed = [limiter.allow() for _ in range(10)]
    assert allowed == [True, True] + [False] * 8
    assert limiter.dropped == 8
    assert limiter.report() == 8  # the first drop is reported at once
    assert limiter.report() == 0
    for _ in range(1000):
        limiter.allow()
    clock.now += 5
    assert limiter.report() == 0  # not yet due
    clock.now += 5
    pending = limiter.report()
    assert pending == 1000  # the 5 tokens came back after the flood was counted
    assert limiter.dropped == 1008


def test_lines_are_split_in_one_pass_and_bounded() -> None:
    splitter = LineSplitter(max_line=16)
    assert splitter.feed(b"a\nb\r\npartial") == ["a", "b"]
    assert splitter.feed(b" line\n") == ["partial line"]
    # an overlong line: its first max_line bytes, the buffer emptied
    assert splitter.feed(b"0123456789abcdefXYZ") == ["0123456789abcdef"]
    assert splitter.feed(b"gh\n") == ["gh"]
    assert splitter.feed(b"tail") == []
    assert splitter.close() == ["tail"]
    assert splitter.close() == []


def test_many_short_lines_in_one_chunk() -> None:
    splitter = LineSplitter(max_line=16 * 1024)
    chunk = b"x" * 7 + b"\n"
    lines = splitter.feed(chunk * 100_000)
    assert len(lines) == 100_000 and lines[0] == "x" * 7
