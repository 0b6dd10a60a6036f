"""sushy-tools' Redfish emulator over libvirt's in-process test driver, for tests.

No libvirtd and no VM: ``test:///default`` is a fake hypervisor inside the
emulator process, with one domain whose BIOS attributes the emulator keeps
for the life of the process. Needs PyPI ``sushy-tools`` and ``libvirt-python``
(Debian ``libvirt-dev`` and ``pkg-config`` to build the latter).
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class Redfish:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def missing() -> list[str]:
    """What to install before these tests can run (empty when all is there)."""
    out = []
    for module, package in (("sushy_tools", "sushy-tools"), ("libvirt", "libvirt-python")):
        if importlib.util.find_spec(module) is None:
            out.append(f"{package} is not installed: apt-get install libvirt-dev pkg-config; "
                       f"{sys.executable} -m pip install {package}")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redfish_emulator(workdir: Path) -> Iterator[Redfish]:
    """Start ``sushy-emulator`` on 127.0.0.1 with a free port; stop it on exit."""
    problems = missing()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    port = _free_port()
    config = workdir / "sushy.conf"
    config.write_text(
        'SUSHY_EMULATOR_LIBVIRT_URI = "test:///default"\n'
        'SUSHY_EMULATOR_LISTEN_IP = "127.0.0.1"\n'
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
        'SUSHY_EMULATOR_FEATURE_SET = "full"\n')
    binary = shutil.which("sushy-emulator", path=str(Path(sys.executable).parent))
    argv = [binary] if binary else [sys.executable, "-m", "sushy_tools.emulator.main"]
    log = workdir / "sushy.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*argv, "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/redfish/v1/Systems", timeout=2,
                             trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sushy-emulator did not start: {log.read_text()[-2000:]}",
                            pytrace=False)
            time.sleep(0.1)
        yield Redfish(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
