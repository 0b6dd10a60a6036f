"""The unit under a real systemd: booted in a container, installed as the README says.

``systemd-analyze verify`` and a fake ``NOTIFY_SOCKET`` (tests/test_service.py)
check the parts; this boots Debian's systemd as PID 1 of a ``systemd-nspawn``
container (an overlay of ``/`` with a tmpfs upper layer, a private network,
so nothing leaves the container) and drives drpd with ``systemctl`` the way an
operator does: install steps from systemd/README.md, ``active (running)`` with
a STATUS text, ``reload`` without provider restarts, a watchdog restart after
SIGSTOP, a clean ``stop``, and journal priorities.

It needs root, overlayfs and ``systemd-nspawn`` (Debian's systemd-container,
listed in tools/system-packages.txt). Where the host cannot run a container
the test is skipped with the reason, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))
#: units of the host image that must not start inside the container
MASKED = [
    "postgresql.service",
    "getty@.service",
    "console-getty.service",
    "systemd-networkd-wait-online.service",
    "e2scrub_reap.service",
    "systemd-timesyncd.service",
    "openipmi.service",
]
API = "https://127.0.0.1:8092/api/v3"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the real-systemd test cannot run: {reason}")
    pytest.skip(reason)


def _wait(predicate: Callable[[], bool], limit: float, what: str) -> None:
    """Poll ``predicate`` (cheap, out-of-process state) until true; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.1)


class Container:
    """A booted systemd-nspawn container; ``run`` executes inside it with nsenter."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self.log: IO[bytes] | None = None

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", "--", *argv],
            capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}: "
                                 f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, unit).stdout.strip()

    def api(self, path: str, method: str = "GET", body: object | None = None) -> object:
        argv = ["curl", "-sS", "-k", "--max-time", "10", "-u", "rocketskates:r0cketsk8ts",
                "-X", method, f"{API}{path}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        out = self.run(*argv, input=None if body is None else json.dumps(body)).stdout
        return json.loads(out)


def _mount_root(base: Path) -> None:
    (base / "layer").mkdir()
    (base / "root").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(base / "layer")], check=True,
                   capture_output=True)
    (base / "layer" / "upper").mkdir()
    (base / "layer" / "work").mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/,upperdir={base}/layer/upper,workdir={base}/layer/work",
                    str(base / "root")], check=True, capture_output=True)


def _prepare(root: Path) -> None:
    """Mask host units, and lay out /opt/drpd as a venv that runs this checkout.

    The unit's ``ProtectHome=`` hides ``/root`` (where pyenv and often the
    checkout live), so the container gets Debian's ``/usr/bin/python3`` venv
    at ``/opt/drpd``, the checkout bind-mounted at ``/opt/drpd-src`` and this
    environment's site-packages at ``/opt/drpd-site`` (both read-only).
    """
    systemd_dir = root / "etc/systemd/system"
    for unit in MASKED:
        target = systemd_dir / unit
        target.unlink(missing_ok=True)
        target.symlink_to("/dev/null")
    venv = root / "opt/drpd"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python3").symlink_to("/usr/bin/python3")
    (venv / "bin/python").symlink_to("python3")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n"
                                     "version = 3.11\n")
    site = venv / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    # plain path lines: the checkout first, then the test venv's packages
    # (its own .pth files, such as the editable finder, stay unprocessed)
    (site / "drpd-container.pth").write_text("/opt/drpd-src\n/opt/drpd-site\n")
    for name in ("drpd", "drpcli"):
        script = venv / "bin" / name
        module = "drpd.daemon" if name == "drpd" else "drpd.cli.main"
        script.write_text(f"#!/opt/drpd/bin/python3\nfrom {module} import main\nmain()\n")
        script.chmod(0o755)
    for mount_point in ("opt/drpd-src", "opt/drpd-site"):
        (root / mount_point).mkdir(parents=True)


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    if os.geteuid() != 0:
        _unavailable("needs root to mount an overlay and boot a container")
    if shutil.which("systemd-nspawn") is None or shutil.which("nsenter") is None:
        _unavailable("systemd-nspawn (Debian systemd-container) is not installed")
    if not Path("/usr/bin/python3").exists():
        _unavailable("no /usr/bin/python3 to build the service's venv from")
    base = Path(tempfile.mkdtemp(prefix="drpd-nspawn-", dir="/tmp"))
    box = Container(base)
    try:
        try:
            _mount_root(base)
        except subprocess.CalledProcessError as exc:
            _unavailable(f"cannot mount an overlay of /: {exc.stderr.decode().strip()}")
        _prepare(box.root)
        log = open(base / "nspawn.log", "wb")  # noqa: SIM115 - closed in the finally below
        box.log = log
        box.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--keep-unit", "--register=no", "--private-network",
             "--console=passive", "--quiet",
             f"--bind-ro={ROOT}:/opt/drpd-src", f"--bind-ro={SITE}:/opt/drpd-site",
             "-b", "-D", str(box.root)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

        def init_pid() -> bool:
            children = Path(f"/proc/{box.nspawn.pid}/task/{box.nspawn.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids:
                box.init_pid = int(pids[0])
            return bool(pids) or box.nspawn.poll() is not None

        _wait(init_pid, 30, "the container's init")
        if box.nspawn.poll() is not None:
            output = (base / "nspawn.log").read_text(errors="replace")
            _unavailable(f"systemd-nspawn exited {box.nspawn.returncode}: {output[-500:]}")
        _wait(lambda: box.run("systemctl", "is-system-running", check=False).stdout.strip()
              in ("running", "degraded"), 60, "the container's systemd to finish booting")
        yield box
    finally:
        if box.nspawn is not None and box.nspawn.poll() is None:
            box.nspawn.send_signal(signal.SIGTERM)  # nspawn powers the container off
            try:
                box.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                box.nspawn.kill()
                box.nspawn.wait()
        if box.log is not None:
            box.log.close()
        for mount in (base / "root", base / "layer"):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _install(box: Container) -> None:
    """systemd/README.md's install steps, less the pip install (the venv is laid out)."""
    box.run("install", "-D", "-m", "0644", "/opt/drpd-src/systemd/drpd.sysusers.conf",
            "/usr/lib/sysusers.d/drpd.conf")
    box.run("systemd-sysusers")
    box.run("install", "-D", "-m", "0640", "-g", "drpd", "/opt/drpd-src/conf/drpd.toml",
            "/etc/drpd/drpd.toml")
    box.run("install", "-m", "0644", "/opt/drpd-src/systemd/drpd.service",
            "/etc/systemd/system/drpd.service")
    # a short watchdog so the SIGSTOP case ends in seconds; the rest is the unit as shipped
    box.run("mkdir", "-p", "/etc/systemd/system/drpd.service.d")
    box.run("sh", "-c", "printf '[Service]\\nWatchdogSec=3s\\n' "
            "> /etc/systemd/system/drpd.service.d/test.conf")
    box.run("systemctl", "daemon-reload")


def _provider_pid(box: Container) -> int:
    runtime = box.api("/plugins/echo")
    assert isinstance(runtime, dict)
    pid = (runtime.get("Runtime") or {}).get("Pid") or 0
    return int(pid)


def test_unit_under_real_systemd(container: Container) -> None:
    box = container
    _install(box)
    box.run("systemctl", "enable", "--now", "drpd")
    assert box.show("drpd", "ActiveState") == "active"
    assert box.show("drpd", "SubState") == "running"
    _wait(lambda: box.show("drpd", "StatusText") != "", 20, "a STATUS= text")
    assert "active (running)" in box.run("systemctl", "status", "drpd", check=False).stdout
    info = box.api("/info")
    assert isinstance(info, dict)

    # a provider instance, installed the way operators drop one in
    box.run("install", "-m", "0755", "-o", "drpd", "-g", "drpd",
            "/opt/drpd-src/tests/providers/sdk_echo.py", "/var/lib/drpd/plugins/sdk_echo")
    _wait(lambda: isinstance(box.api("/plugin_providers/sdk_echo"), dict)
          and "Name" in box.api("/plugin_providers/sdk_echo"),  # type: ignore[operator]
          30, "the provider to be picked up from the plugin directory")
    box.api("/plugins?wait=true", "POST",
            {"Name": "echo", "Provider": "sdk_echo", "Params": {"echo/greeting": "hi"}})
    _wait(lambda: _provider_pid(box) > 0, 30, "the echo instance to run")
    provider = _provider_pid(box)
    main_pid = int(box.show("drpd", "MainPID"))

    # reload: SIGHUP re-reads the config, providers keep running
    box.run("systemctl", "reload", "drpd")
    assert int(box.show("drpd", "MainPID")) == main_pid
    assert _provider_pid(box) == provider
    assert box.show("drpd", "ActiveState") == "active"

    # journal: drpd's lines carry priorities (info and above)
    journal = box.run("journalctl", "-u", "drpd", "-o", "json", "--no-pager").stdout
    priorities = {json.loads(line).get("PRIORITY") for line in journal.splitlines() if line}
    assert "6" in priorities, priorities

    # watchdog: a stopped event loop is killed and restarted by systemd
    box.run("kill", "-STOP", str(main_pid))
    _wait(lambda: box.show("drpd", "MainPID") not in ("0", str(main_pid))
          and box.show("drpd", "ActiveState") == "active", 60,
          "systemd's watchdog to restart drpd")
    assert int(box.show("drpd", "NRestarts")) >= 1
    assert "watchdog" in box.run("journalctl", "-u", "drpd", "--no-pager").stdout.lower()
    _wait(lambda: _provider_pid(box) > 0, 30, "the stored instance to run again")

    # a clean stop: exit 0, no provider left behind
    box.run("systemctl", "stop", "drpd", timeout=60)
    assert box.show("drpd", "ActiveState") == "inactive"
    assert box.show("drpd", "ExecMainStatus") == "0"
    leftovers = box.run("pgrep", "-u", "drpd", check=False).stdout.split()
    assert leftovers == [], leftovers
