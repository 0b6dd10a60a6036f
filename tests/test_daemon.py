"""drpd as a process: start-up errors, signals, persistence, crash safety."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client


def run_drpd(*args: str, input: str | None = None, env: dict[str, str] | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    import os

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "drpd.daemon", *args], input=input,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("drpd:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_drpd("serve", "--state-dir", str(tmp_path / "s"), "--api-port", str(port),
                          "--static-port", "0")
    assert "already in use" in one_line_error(result) and str(port) in result.stderr


def test_state_dir_not_usable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_drpd("serve", "--state-dir", str(blocker / "state"), "--api-port", "0",
                      "--static-port", "0")
    assert "state directory" in one_line_error(result)


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--api-port", "70000"], {}, "api_port"),
    ([], {"DRPD_LOG_LEVEL": "loud"}, "log_level"),
    ([], {"DRPD_API_PORT": "many"}, "api_port"),
])
def test_bad_config_values(tmp_path: Path, args: list[str], env: dict[str, str],
                           needle: str) -> None:
    result = run_drpd("serve", "--state-dir", str(tmp_path / "s"), *args, env=env)
    assert needle in one_line_error(result)


def test_bad_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "drpd.toml"
    conf.write_text('api_port = "x"\n')
    result = run_drpd("serve", "--config", str(conf), "--state-dir", str(tmp_path / "s"))
    assert "api_port" in one_line_error(result) and str(conf) in result.stderr
    conf.write_text("nonsense = 1\n")
    assert "nonsense" in one_line_error(run_drpd("serve", "--config", str(conf)))


def test_shipped_config_file_loads(tmp_path: Path) -> None:
    from drpd.config import FIELDS, Settings, load_settings

    shipped = Path(__file__).parent.parent / "conf" / "drpd.toml"
    assert load_settings({}, env={}, config_file=shipped) == Settings()
    text = shipped.read_text()
    assert [f for f in FIELDS if f"# {f} = " not in text] == []


def test_config_precedence(tmp_path: Path) -> None:
    from drpd.config import load_settings

    conf = tmp_path / "drpd.toml"
    conf.write_text("api_port = 1111\nstatic_port = 2222\nbind = '127.0.0.2'\n")
    s = load_settings({"api_port": 3333}, env={"DRPD_STATIC_PORT": "4444"}, config_file=conf)
    assert (s.api_port, s.static_port, s.bind) == (3333, 4444, "127.0.0.2")


def test_refuses_non_loopback_without_admin(tmp_path: Path) -> None:
    # drpd refuses before it binds anything
    result = run_drpd("serve", "--state-dir", str(tmp_path / "s"), "--bind", "0.0.0.0",
                      "--api-port", "0", "--static-port", "0")
    assert "drpd passwd" in one_line_error(result)


async def test_passwd_then_login(tmp_path: Path) -> None:
    state = tmp_path / "s"
    result = run_drpd("passwd", "admin", "--state-dir", str(state), input="s3cret\n")
    assert result.returncode == 0, result.stderr
    with DrpdProcess(state) as drpd:
        async with api_client(drpd, auth=("admin", "s3cret")) as api:
            assert (await api.get("/users/admin")).json()["Name"] == "admin"
            assert (await api.get("/info", auth=("admin", "wrong"))).status_code == 401
        # while drpd runs, passwd says to use the API instead of forking the store
        busy = run_drpd("passwd", "admin", "--state-dir", str(state), input="x\n")
        assert busy.returncode == 1 and "drpcli users password" in busy.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_exit_zero(tmp_path: Path, signum: int) -> None:
    drpd = DrpdProcess(tmp_path / "s").start()
    assert drpd.proc is not None
    drpd.proc.send_signal(signum)
    assert drpd.proc.wait(20) == 0
    drpd.kill()


async def test_objects_survive_restart(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "s") as drpd:
        async with api_client(drpd) as api:
            m = (await api.post("/machines", json={"Name": "keep", "Params": {"a": [1, 2]}})).json()
            await api.post("/profiles", json={"Name": "p"})
            await api.delete("/profiles/p")
            seq_before = (await api.post("/events", json={"Type": "t", "Action": "a"})).json()["Seq"]
        assert drpd.stop() == 0
        drpd.start()
        async with api_client(drpd) as api:
            assert (await api.get(f"/machines/{m['Uuid']}")).json() == m
            assert (await api.get("/profiles/p")).status_code == 404
            after = (await api.post("/events", json={"Type": "t", "Action": "a"})).json()["Seq"]
            assert after > seq_before


async def test_sigkill_during_write_burst_loses_no_acknowledged_write(tmp_path: Path) -> None:
    state = tmp_path / "s"
    drpd = DrpdProcess(state, no_tls=True).start()
    acknowledged: list[str] = []
    killed = trio.Event()
    enough = trio.Event()

    async def writer(client: httpx.AsyncClient, n: int) -> None:
        for i in range(10_000):
            try:
                r = await client.post("/profiles", json={"Name": f"w{n}-{i}", "Params": {"i": i}})
            except httpx.HTTPError:
                return
            if r.status_code == 201:
                acknowledged.append(f"w{n}-{i}")
                if len(acknowledged) >= 300:
                    enough.set()
            if killed.is_set():
                return

    async with api_client(drpd) as client:
        async with trio.open_nursery() as nursery:
            for n in range(16):
                nursery.start_soon(writer, client, n)
            with trio.fail_after(60):
                await enough.wait()
            drpd.kill()
            killed.set()
    assert len(acknowledged) >= 300
    with sqlite3.connect(state / "drpd.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    drpd.start()
    try:
        async with api_client(drpd) as api:
            stored = {p["Name"]: p for p in (await api.get("/profiles")).json()
                      if p["Name"] != "global"}  # DRP's global profile always exists
        missing = [name for name in acknowledged if name not in stored]
        assert not missing, f"{len(missing)} acknowledged writes lost"
        assert all(p["Params"]["i"] == int(p["Name"].split("-")[1]) for p in stored.values())
    finally:
        drpd.stop()


def test_relative_directories_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drpd.config import load_settings

    monkeypatch.chdir(tmp_path)
    s = load_settings({"state_dir": ".state", "plugin_dir": "plugins"}, env={})
    assert s.state_dir == str(tmp_path / ".state")
    assert s.plugin_path == tmp_path / "plugins"
