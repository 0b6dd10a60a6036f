"""The README's "First steps" block, read from the README and typed as written.

The receiver line is the README's own (``python -m drpd.tools.receiver``),
run with this interpreter and a free port instead of 8000; each drpcli line
is run through a shell with 8000 replaced by that port. So a README that
tells users to type something that fails fails here.
"""

from __future__ import annotations

import json
import select
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess

README = Path(__file__).parents[2] / "README.md"
RECEIVER = "python -m drpd.tools.receiver --port 8000"


def first_steps() -> list[str]:
    """The indented command lines of the README's "First steps" section, in order."""
    text = README.read_text()
    section = text.split("## First steps", 1)[1].split("\n## ", 1)[0]
    return [line[4:] for line in section.splitlines() if line.startswith("    ") and line.strip()]


class Receiver:
    """The README's receiver as a process; its stdout lines are the requests it got."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def next_request(self, limit: float = 10) -> dict[str, object]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], limit)
        assert ready, "the receiver printed nothing"
        return dict(json.loads(self.proc.stdout.readline()))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    lines = first_steps()
    assert lines[0] == RECEIVER, lines[:2]
    argv = shlex.split(lines[0].replace("--port 8000", "--port 0"))
    assert argv[0] == "python"
    proc = subprocess.Popen([sys.executable, *argv[1:]], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        first = proc.stdout.readline() if ready else ""
        assert first.startswith("listening on http://127.0.0.1:"), first
        yield Receiver(proc, int(first.rsplit(":", 1)[1]))
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def sh(drpd: DrpdProcess, command: str) -> str:
    result = subprocess.run(command, shell=True, capture_output=True, text=True,
                            env=drpd.env, timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_readme_first_steps_with_the_shipped_receiver(tmp_path: Path, receiver: Receiver) -> None:
    with DrpdProcess(tmp_path / "state", env={"DRPD_STOP_GRACE": "2"}) as drpd:
        # the machine the README's earlier section creates
        sh(drpd, "drpcli machines create '{\"Name\":\"m1\"}'")
        for line in first_steps()[1:]:
            out = sh(drpd, line.replace("127.0.0.1:8000", f"127.0.0.1:{receiver.port}"))
            if "callbackDo" in line:  # upstream's action: the receiver's answer, parsed
                assert json.loads(out) == {"ok": True}, out
                got = receiver.next_request()
                assert got["Method"] == "POST" and got["Path"] == "/built", got
                assert got["Body"]["Name"] == "m1" and isinstance(got["Body"]["Params"], dict)
            elif "runaction" in line:
                answer = json.loads(out)
                assert answer["Status"] == 200 and answer["Body"] == {"ok": True}, answer
                got = receiver.next_request()
                assert got["Method"] == "POST" and got["Path"] == "/apac", got
                assert isinstance(got["Body"], dict) and got["Body"]["Name"] == "m1"
