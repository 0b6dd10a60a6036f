"""drpd as a system service: sd_notify, signals, shutdown bound, journald logs, the unit."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from drpd.config import Settings
from drpd.logs import JournalFormatter, stderr_is_journal
from drpd.notify import Notifier, monotonic_usec, watchdog_interval
from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import alive, install, wait_for

ROOT = Path(__file__).parent.parent
FAST = {"DRPD_PLUGIN_DIR_POLL": "0.2", "DRPD_STOP_GRACE": "2", "DRPD_BACKOFF_INITIAL": "1"}


class NotifyListener:
    """A fake ``$NOTIFY_SOCKET``: an abstract datagram socket that keeps every message."""

    def __init__(self) -> None:
        self.name = f"drpd-test-{uuid.uuid4().hex[:12]}"
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.messages: list[dict[str, str]] = []

    async def __aenter__(self) -> NotifyListener:
        await self.sock.bind("\0" + self.name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def address(self) -> str:
        return "@" + self.name

    async def expect(self, predicate: Callable[[dict[str, str]], bool],
                     limit: float = 20.0) -> dict[str, str]:
        """Read messages until one matches; fail after ``limit`` seconds."""
        with trio.fail_after(limit):
            while True:
                raw = (await self.sock.recv(65536)).decode()
                message = dict(line.split("=", 1) for line in raw.split("\n") if line)
                self.messages.append(message)
                if predicate(message):
                    return message

    def drain(self) -> None:
        """Take what is queued now, without waiting."""
        while True:
            try:
                raw = self.sock._sock.recv(65536, socket.MSG_DONTWAIT).decode()
            except BlockingIOError:
                return
            self.messages.append(dict(line.split("=", 1) for line in raw.split("\n") if line))

    def kinds(self) -> list[str]:
        """The messages as their first key (READY, STATUS, WATCHDOG, ...), in order."""
        return [next(iter(m)) for m in self.messages]


def has(key: str, value: str | None = None) -> Callable[[dict[str, str]], bool]:
    return lambda m: key in m and (value is None or value in m[key])


async def create_many(api: httpx.AsyncClient, count: int, provider: str) -> dict[str, int]:
    """Create ``count`` instances concurrently; returns name -> provider pid."""
    pids: dict[str, int] = {}

    async def one(i: int) -> None:
        r = await api.post("/plugins", json={"Name": f"p{i}", "Provider": provider})
        assert r.status_code == 201 and r.json()["Available"], r.text
        pids[f"p{i}"] = r.json()["Runtime"]["Pid"]

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return pids


async def current_pids(api: httpx.AsyncClient) -> dict[str, int]:
    return {p["Name"]: p["Runtime"]["Pid"] for p in (await api.get("/plugins")).json()}


async def wait_exit(drpd: DrpdProcess, limit: float) -> int:
    assert drpd.proc is not None
    return await trio.to_thread.run_sync(drpd.proc.wait, limit)


async def wait_output(drpd: DrpdProcess, needle: str, limit: float = 10.0) -> None:
    try:
        await wait_for(lambda: needle in drpd.log_text(), limit)
    except trio.TooSlowError:
        raise AssertionError(f"{needle!r} never logged:\n{drpd.log_text()[-3000:]}") from None


# -- the notify protocol, in-process ------------------------------------------------
@pytest.mark.parametrize("abstract", [True, False])
async def test_notifier_sends_datagrams(short_tmp: Path, abstract: bool) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = f"@drpd-unit-{uuid.uuid4().hex[:8]}" if abstract else str(short_tmp / "notify")
    receiver.bind("\0" + address[1:] if abstract else address)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
        assert notifier.enabled
        assert notifier.ready("3 of 4 available\nmore")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=3 of 4 available more"
        before = monotonic_usec()
        assert notifier.reloading()
        fields = dict(line.split("=") for line in receiver.recv(4096).decode().split("\n"))
        assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) >= before
        notifier.close()
    finally:
        receiver.close()


def test_notifier_without_systemd_is_silent(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier.from_env({}).notify(READY=1)
    assert not Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    # systemd gone: a warning once, never an exception
    gone = Notifier.from_env({"NOTIFY_SOCKET": str(short_tmp / "nobody")})
    caplog.clear()
    with caplog.at_level(logging.WARNING, "drpd.notify"):
        assert not gone.notify(WATCHDOG=1) and not gone.notify(WATCHDOG=1)
    gone.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot notify systemd at {short_tmp / 'nobody'}: No such file or directory"]


def test_start_failure_is_reported_as_status(short_tmp: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(short_tmp / "notify"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "drpd.daemon", "serve", "--state-dir", str(short_tmp / "s"),
             "--api-port", "70000"], capture_output=True, text=True, timeout=60,
            env=dict(os.environ, NOTIFY_SOCKET=str(short_tmp / "notify")))
        assert result.returncode == 1
        receiver.settimeout(5)
        message = receiver.recv(4096).decode()
    finally:
        receiver.close()
    assert message.startswith("STATUS=cannot start: ") and "api_port" in message


def test_watchdog_enabled_semantics() -> None:
    me = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, me) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(me)}, me) == 15.0
    # systemd meant another process (an inherited environment): no watchdog here
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(me + 1)}, me) is None
    for bad in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "x"},
                {"WATCHDOG_USEC": "100", "WATCHDOG_PID": "x"}):
        assert watchdog_interval(bad, me) is None


# -- the lifecycle, with real providers ------------------------------------------------
async def test_notify_sighup_sigterm_with_20_providers(tmp_path: Path) -> None:
    """READY, STATUS and WATCHDOG; SIGHUP changes the log level and keeps every
    provider; a bad config is ignored; SIGTERM stops all 20 and exits 0."""
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider")
    conf = tmp_path / "drpd.toml"
    conf.write_text('log_level = "info"\n')
    async with NotifyListener() as notify:
        drpd = DrpdProcess(state, "--config", str(conf), env={
            **FAST, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"})
        drpd.start()
        try:
            ready = await notify.expect(has("READY"))
            assert "0 of 0 instance(s) available" in ready["STATUS"]
            async with api_client(drpd) as api:
                pids = await create_many(api, 20, "plain_provider")
                assert len(set(pids.values())) == 20
                await notify.expect(has("STATUS", "20 of 20 instance(s) available, 0 failing"))

                conf.write_text('log_level = "debug"\n')
                drpd.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                reloading = await notify.expect(has("RELOADING"))
                assert int(reloading["MONOTONIC_USEC"]) > 0
                assert "20 of 20" in (await notify.expect(has("READY")))["STATUS"]
                await wait_output(drpd, "configuration reloaded: log_level 'info' -> 'debug'")
                await wait_output(drpd, "DEBUG drpd: effective configuration")
                assert await current_pids(api) == pids

                # a bad file: logged, ignored, the running configuration stays
                conf.write_text("log_level = [\n")
                drpd.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                await notify.expect(has("RELOADING"))
                await notify.expect(has("READY"))
                await wait_output(drpd, "configuration not reloaded, the running one stays")
                assert (await api.get("/healthz")).status_code == 200
                assert await current_pids(api) == pids

            drpd.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            stopping = await notify.expect(has("STOPPING"))
            assert stopping["STATUS"] == "stopping 20 provider(s)"
            assert await wait_exit(drpd, 25) == 0
            await notify.expect(has("STATUS", "stopped"))
        finally:
            drpd.kill()
        assert not [pid for pid in pids.values() if alive(pid)]
        notify.drain()
        kinds = notify.kinds()
        first_ready = kinds.index("READY")
        assert "WATCHDOG" not in kinds[:first_ready], kinds[:first_ready + 1]
        pings = [i for i, kind in enumerate(kinds) if kind == "WATCHDOG"]
        assert len(pings) >= 3, kinds
        assert kinds.index("STOPPING") > max(i for i, k in enumerate(kinds) if k == "READY")


async def test_ready_after_stored_instances_then_sigkill_leaves_no_provider(
        tmp_path: Path) -> None:
    """READY=1 comes once the stored instances have been started; SIGKILL of
    drpd itself leaves none of 20 providers behind."""
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider")
    with DrpdProcess(state, env=FAST) as first:
        async with api_client(first) as api:
            await create_many(api, 20, "plain_provider")
    async with NotifyListener() as notify:
        drpd = DrpdProcess(state, env={**FAST, "NOTIFY_SOCKET": notify.address})
        drpd.start()
        try:
            ready = await notify.expect(has("READY"))
            assert "of 20 instance(s)" in ready["STATUS"], ready
            async with api_client(drpd) as api:
                async def all_up() -> bool:
                    plugins = (await api.get("/plugins")).json()
                    return all(p["Available"] for p in plugins)

                await wait_for(all_up, 30)
                pids = list((await current_pids(api)).values())
            assert len(pids) == 20 and all(alive(pid) for pid in pids)
        finally:
            drpd.kill()
    await wait_for(lambda: not any(alive(pid) for pid in pids), 10)


async def test_sigterm_is_bounded_by_shutdown_timeout(tmp_path: Path) -> None:
    """A provider that ignores /stop and SIGTERM cannot hold drpd past shutdown_timeout."""
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": "ignore-sigterm"})
    drpd = DrpdProcess(state, env={**FAST, "DRPD_STOP_GRACE": "30",
                                   "DRPD_SHUTDOWN_TIMEOUT": "3"}).start()
    try:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "stubborn", "Provider": "plain_provider"})
            assert r.json()["Available"], r.text
            pid = r.json()["Runtime"]["Pid"]
        started = trio.current_time()
        drpd.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await wait_exit(drpd, 10) == 0
        assert trio.current_time() - started < 5
        assert not alive(pid)
        assert "had not stopped in time: killed" in drpd.log_text()
    finally:
        drpd.kill()


async def test_plugin_log_has_stdout_stderr_and_log_lines(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": "noise-before-ready"})
    with DrpdProcess(state, env=FAST) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "chatty", "Provider": "plain_provider"})
            assert r.json()["Available"], r.text

            async def lines() -> list[str]:
                got = (await api.get("/plugins/chatty/log", params={"lines": 50})).json()
                sources = {line.split(" ", 2)[1] for line in got}
                return got if {"stdout:", "stderr:", "log:"} <= sources else []

            got = await wait_for(lines, 10)
            text = "\n".join(got)
            assert "stdout: plain_provider: warming up" in text
            assert "log: plain_provider configured as chatty" in text
            assert re.search(r"stderr: plain_provider: .*POST /api-plugin/v4/config", text)
            assert len((await api.get("/plugins/chatty/log", params={"lines": 2})).json()) == 2
        # the same lines reach drpd's own log, tagged with the instance
        assert "drpd.plugin.chatty: plain_provider configured as chatty" in drpd.log_text()


# -- process set-up: journald format, open-file limit --------------------------------
def test_journal_format_and_open_file_limit(tmp_path: Path) -> None:
    """With stderr as the journal stream: <N> priorities, no timestamps; and the
    soft RLIMIT_NOFILE raised to the hard one."""
    import resource

    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    low = 256

    proc = subprocess.Popen(
        ["sh", "-c", f'ulimit -S -n {low} && exec "$@"', "sh",
         sys.executable, "-m", "drpd.daemon", "serve", "--state-dir", str(tmp_path / "s"),
         "--api-port", "0", "--static-port", "0", "--no-tls"],
        stdout=write_end, stderr=write_end, env=env)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as out:
            lines = []
            for line in out:
                lines.append(line)
                if line.startswith("drpd: serving"):
                    break
            limits = Path(f"/proc/{proc.pid}/limits").read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            lines += out.readlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logged = [line for line in lines if not line.startswith("drpd: serving")]
    assert logged and all(re.match(r"<[2-7]>[a-z][\w.]*: ", line) for line in logged), lines
    assert any(line.startswith("<6>drpd: serving http://") for line in logged)
    assert any(line.startswith("<6>drpd: received SIGTERM") for line in logged)
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    expected = (Path("/proc/sys/fs/nr_open").read_text().strip()
                if hard == resource.RLIM_INFINITY else str(hard))
    assert row.split()[3] == expected != str(low), row


def test_journal_formatter_and_stream_check() -> None:
    record = logging.LogRecord("drpd.plugin.x", logging.WARNING, __file__, 1,
                               "first\nsecond", None, None)
    assert JournalFormatter().format(record) == "<4>drpd.plugin.x: first\n<4>drpd.plugin.x: second"
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "w", closefd=False) as stream:
            st = os.fstat(write_end)
            assert stderr_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
            # inherited by a process whose stderr is somewhere else
            assert not stderr_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
            assert not stderr_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
            assert not stderr_is_journal(stream, {})
    finally:
        os.close(read_end)
        os.close(write_end)


# -- SIGHUP: what applies live --------------------------------------------------------
def test_apply_settings_live_and_restart_only(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from drpd.daemon import Daemon

    daemon = Daemon(Settings(state_dir=str(tmp_path / "s"), api_port=0, static_port=0))
    shared = daemon.settings
    new = Settings(state_dir=str(tmp_path / "s"), api_port=1234, static_port=0,
                   log_level="debug", catalog_url="https://example.invalid/catalog.json",
                   action_timeout=5.0, event_queue=7)
    root = logging.getLogger()
    level = root.level
    try:
        with caplog.at_level(logging.INFO):
            daemon.apply_settings(new)
            assert root.level == logging.DEBUG
        # the parts share one Settings object: changed in place, not replaced
        assert daemon.settings is shared
        assert (shared.log_level, shared.catalog_url, shared.action_timeout) == (
            "debug", "https://example.invalid/catalog.json", 5.0)
        assert daemon.bus.queue_size == 7
        assert shared.api_port == 0
        assert "api_port changed (0 -> 1234): takes effect when drpd restarts" in caplog.text
    finally:
        root.setLevel(level)


def test_flags_given_at_start_win_on_reload(tmp_path: Path) -> None:
    from drpd.daemon import _settings_from

    conf = tmp_path / "drpd.toml"
    conf.write_text('log_level = "debug"\ncatalog_url = "file:///a"\n')
    args = argparse.Namespace(command="serve", config=str(conf), state_dir=str(tmp_path),
                              log_level="warning", api_port=None, static_port=None, bind=None,
                              plugin_dir=None, no_tls=None)
    first = _settings_from(args)
    conf.write_text('log_level = "error"\ncatalog_url = "file:///b"\n')
    again = _settings_from(args)
    assert (first.log_level, first.catalog_url) == ("warning", "file:///a")
    assert (again.log_level, again.catalog_url) == ("warning", "file:///b")


# -- the unit file -------------------------------------------------------------------
UNIT = ROOT / "systemd" / "drpd.service"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: .ci/run installs the systemd package for it")
        pytest.skip(f"{name} is not installed here (CI installs it)")
    return path


def test_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` is clean on the unit, pointed at this environment's drpd."""
    drpd = Path(sys.executable).with_name("drpd")
    assert drpd.exists(), drpd
    text = UNIT.read_text()
    assert text.count("ExecStart=/opt/drpd/bin/drpd ") == 1
    unit = tmp_path / "drpd.service"
    unit.write_text(text.replace("ExecStart=/opt/drpd/bin/drpd ", f"ExecStart={drpd} "))
    result = subprocess.run([_tool("systemd-analyze"), "verify", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)


def test_unit_has_what_the_service_needs() -> None:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    expected = {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure",
                "KillMode": "mixed", "User": "drpd", "StateDirectory": "drpd",
                "RuntimeDirectory": "drpd", "NoNewPrivileges": "yes",
                "ProtectSystem": "strict", "PrivateTmp": "yes"}
    assert {k: settings.get(k, [""])[-1] for k in expected} == expected
    assert settings["WatchdogSec"] and settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # the stop timeout leaves room for drpd's own bound
    stop = int(settings["TimeoutStopSec"][-1].rstrip("s"))
    assert stop > Settings().shutdown_timeout


def test_sysusers_file_parses(tmp_path: Path) -> None:
    result = subprocess.run(
        [_tool("systemd-sysusers"), f"--root={tmp_path}", "--dry-run",
         str(ROOT / "systemd" / "drpd.sysusers.conf")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Creating user 'drpd'" in result.stdout + result.stderr
