"""Run a real drpd inside a test: a separate process on port 0.

    with DrpdProcess(tmp_path / "state") as drpd:
        httpx.get(drpd.endpoint + "/api/v3/info", auth=drpd.auth, verify=drpd.ca_cert)

This module is one of drpd's two library faces (with ``drpd.sdk``): keep it
small, and keep its names stable.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

DEFAULT_AUTH = ("rocketskates", "r0cketsk8ts")

#: what CPython prints when a coroutine is created and dropped un-awaited
#: (a warning that cannot be raised: it is emitted when the object is freed)
_SLIPS = ("was never awaited",)


class DrpdSlip(AssertionError):
    """drpd printed evidence of a programming slip (an un-awaited coroutine)."""


def slips(lines: Sequence[str]) -> list[str]:
    """The lines of a process's output that show an un-awaited coroutine."""
    return [line.rstrip() for line in lines if any(s in line for s in _SLIPS)]


class DrpdProcess:
    """A drpd child process, started in ``start`` and ended in ``stop``.

    Its stdout and stderr are collected in ``output`` (a list of lines) by a
    reader thread, so a chatty drpd never blocks on a full pipe.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *args: str,
        env: dict[str, str] | None = None,
        no_tls: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.args: Sequence[str] = args
        self.extra_env = env or {}
        self.no_tls = no_tls
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.output: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._checked = 0

    # -- what tests use ------------------------------------------------------
    @property
    def auth(self) -> tuple[str, str]:
        return DEFAULT_AUTH

    @property
    def ca_cert(self) -> str:
        return str(self.state_dir / "tls" / "server.crt")

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What to give httpx's ``verify``: drpd's own certificate as the CA."""
        return False if self.no_tls else ssl.create_default_context(cafile=self.ca_cert)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def env(self) -> dict[str, str]:
        """Environment for drpcli subprocesses pointed at this drpd."""
        env = dict(os.environ)
        env.update(
            RS_ENDPOINT=self.endpoint,
            RS_KEY=":".join(DEFAULT_AUTH),
            PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        )
        env.pop("RS_TOKEN", None)
        if not self.no_tls:
            env["RS_CA_CERT"] = self.ca_cert
        return env

    def log_text(self) -> str:
        return "".join(self.output)

    # -- lifecycle -----------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "drpd.daemon", "serve", "--state-dir", str(self.state_dir),
               "--api-port", "0", "--static-port", "0", "--bind", "127.0.0.1"]
        if self.no_tls:
            cmd.append("--no-tls")
        return cmd + list(self.args)

    def start(self) -> DrpdProcess:
        env = dict(os.environ)
        env.update(self.extra_env)
        self._ready.clear()
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        if not self._ready.wait(self.start_timeout) or not self.endpoint:
            try:
                code: int | None = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            raise RuntimeError(
                f"drpd did not start (exit {code}):\n{self.log_text()[-4000:]}"
            )
        return self

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.output.append(line)
            if line.startswith("drpd: serving "):
                self.endpoint = line.split()[-1]
                self._ready.set()
        self._ready.set()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"drpd did not stop within {timeout} s") from None
        self._close_pipe()
        self.check_output()
        return code

    def kill(self) -> None:
        """SIGKILL drpd itself (not its process group: providers must notice)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_pipe()
        self.check_output()

    def check_output(self) -> None:
        """Fail when drpd's output (since the last check) shows an un-awaited
        coroutine: such a slip only prints, so a test would pass over it."""
        new, self._checked = self.output[self._checked:], len(self.output)
        found = slips(new)
        if found:
            raise DrpdSlip("drpd left a coroutine un-awaited:\n" + "\n".join(found[:10]))

    def _close_pipe(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self) -> DrpdProcess:
        self.stop()
        self.endpoint = ""
        return self.start()

    def __enter__(self) -> DrpdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.stop()
            finally:
                self.kill()
        else:
            self._close_pipe()
            self.check_output()


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` (a callable) until true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)
