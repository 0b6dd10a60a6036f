"""The guard that turns drpd's un-awaited coroutines into failed tests.

CPython reports a coroutine that was created and never awaited only as a
printed RuntimeWarning when the object is freed: in a drpd child process it
never reaches pytest. ``DrpdProcess`` reads drpd's output for it; these tests
plant such a slip in a stand-in process and check the guard fires, and that a
clean process passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess, DrpdSlip, slips

_STAND_IN = r'''
import asyncio, signal, sys, threading, time
async def forgotten():
    pass
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
if sys.argv[1] == "slip":
    forgotten()  # the slip: created, never awaited, freed at once (printed now)
print("drpd: serving http://127.0.0.1:1", flush=True)
stop.wait(30)
'''


class StandIn(DrpdProcess):
    """A process that says what drpd says when it is up, then does ``mode``."""

    def __init__(self, state_dir: Path, mode: str) -> None:
        super().__init__(state_dir, start_timeout=15)
        self.mode = mode

    def command(self) -> list[str]:
        return [sys.executable, "-c", _STAND_IN, self.mode]


def test_an_unawaited_coroutine_in_the_process_fails_the_test(tmp_path: Path) -> None:
    with pytest.raises(DrpdSlip, match="forgotten' was never awaited"):
        with StandIn(tmp_path, "slip"):
            pass


def test_a_clean_process_passes(tmp_path: Path) -> None:
    with StandIn(tmp_path, "clean") as proc:
        pass
    assert proc.proc is not None and proc.proc.returncode is not None


def test_a_slip_is_found_also_after_the_process_died_on_its_own(tmp_path: Path) -> None:
    proc = StandIn(tmp_path, "slip").start()
    assert proc.proc is not None
    proc.proc.terminate()
    proc.proc.wait(10)
    with pytest.raises(DrpdSlip):
        proc.__exit__(None, None, None)


def test_slips_reads_cpythons_wording() -> None:
    line = "<stdin>:7: RuntimeWarning: coroutine 'Supervisor.set_left' was never awaited\n"
    assert slips(["ok\n", line]) == [line.rstrip()]
    assert slips(["drpd: serving https://127.0.0.1:8092\n"]) == []
