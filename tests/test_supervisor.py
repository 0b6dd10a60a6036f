"""Plugin providers and supervised instances, with real provider executables."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import (
    PROVIDERS,
    alive,
    install,
    plugin,
    proc_cmdline,
    proc_environ,
    wait_for,
    wait_plugin,
    wrapper_bytes,
)

FAST = {"DRPD_PLUGIN_DIR_POLL": "0.2", "DRPD_STOP_GRACE": "2", "DRPD_BACKOFF_INITIAL": "1"}


def start_drpd(state: Path, **env: str) -> DrpdProcess:
    return DrpdProcess(state, env={**FAST, **env}).start()


@pytest.fixture
def drpd(tmp_path: Path) -> Iterator[DrpdProcess]:
    state = tmp_path / "state"
    install(state / "plugins", "sdk_echo")
    install(state / "plugins", "plain_provider")
    install(state / "plugins", "listen_only")
    proc = start_drpd(state)
    try:
        yield proc
    finally:
        proc.stop()
        proc.kill()


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def create(api: httpx.AsyncClient, name: str, provider: str, **params: object) -> dict:
    r = await api.post("/plugins", json={"Name": name, "Provider": provider, "Params": params})
    assert r.status_code == 201, r.text
    return r.json()


async def test_providers_found_at_start(api: httpx.AsyncClient) -> None:
    providers = {p["Name"]: p for p in (await api.get("/plugin_providers")).json()}
    assert set(providers) == {"sdk_echo", "plain_provider", "listen_only"}
    echo = providers["sdk_echo"]
    assert echo["Size"] == (PROVIDERS / "sdk_echo.py").stat().st_size
    assert len(echo["Sha256"]) == 64
    assert "echo" in [a["Command"] for a in echo["AvailableActions"]]
    assert all(a["Provider"] == "sdk_echo" for a in echo["AvailableActions"])


async def test_create_update_noop_destroy(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    created = await create(api, "e1", "sdk_echo", **{"echo/greeting": "hi",
                                                       "echo/publish-on-config": True})
    # the write settled: the answer already says Available
    assert created["Available"] is True and created["Errors"] == []
    pid = created["Runtime"]["Pid"]
    assert alive(pid) and created["Runtime"]["State"] == "running"
    log = (await api.get("/plugins/e1/log")).json()
    assert any("configured e1" in line for line in log)
    # a change of Params restarts it, and the new process gets the new Params
    r = await api.patch("/plugins/e1", json={"Params": {"echo/greeting": "yo",
                                                        "echo/publish-on-config": True}},
                        headers={"Content-Type": "application/merge-patch+json"})
    updated = r.json()
    assert r.status_code == 200 and updated["Available"] is True
    new_pid = updated["Runtime"]["Pid"]
    assert new_pid != pid and not alive(pid) and alive(new_pid)
    assert updated["Runtime"]["Restarts"] == 1
    # any other update restarts nothing
    r = await api.patch("/plugins/e1", json={"Description": "same process"},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.json()["Runtime"]["Pid"] == new_pid and r.json()["Description"] == "same process"
    # restart without an edit
    r = await api.post("/plugins/e1/restart")
    assert r.status_code == 200 and r.json()["Available"]
    restarted = r.json()["Runtime"]["Pid"]
    assert restarted != new_pid and not alive(new_pid)
    # destroy returns once the process is gone; the provider stays installed
    r = await api.delete("/plugins/e1")
    assert r.status_code == 200 and not alive(restarted)
    names = [p["Name"] for p in (await api.get("/plugin_providers")).json()]
    assert "sdk_echo" in names


async def test_missing_param_then_fixed(api: httpx.AsyncClient) -> None:
    created = await create(api, "e2", "sdk_echo")
    assert created["Available"] is False
    assert created["Errors"] == ["missing required param: echo/greeting"]
    assert created["Runtime"]["State"] == "waiting"
    r = await api.post("/plugins/e2/params/echo/greeting", json="now set")
    assert r.status_code == 200
    await wait_plugin(api, "e2", lambda p: p["Available"])


async def test_param_schema_failure(api: httpx.AsyncClient) -> None:
    await api.post("/params", json={"Name": "echo/greeting", "Schema": {"type": "string",
                                                                          "minLength": 3}})
    # DRP refuses an invalid value (issue 11.16): nothing stored, nothing started
    r = await api.post("/plugins", json={"Name": "e3", "Provider": "sdk_echo",
                                         "Params": {"echo/greeting": "x"}})
    assert r.status_code == 422 and "echo/greeting" in r.json()["Messages"][0], r.text
    assert (await api.get("/plugins/e3")).status_code == 404
    # a schema default satisfies a required param
    await api.put("/params/echo/greeting", json={"Name": "echo/greeting", "Schema": {
        "type": "string", "default": "from-default"}})
    created = await create(api, "e3", "sdk_echo")
    assert created["Available"] is True, created
    # a value stored before its schema got stricter keeps the instance waiting
    await api.put("/plugins/e3", json={"Name": "e3", "Provider": "sdk_echo",
                                       "Params": {"echo/greeting": "ok"}})
    await api.put("/params/echo/greeting", json={"Name": "echo/greeting", "Schema": {
        "type": "string", "minLength": 3}})
    r = await api.post("/plugins/e3/restart")
    assert r.json()["Available"] is False and "too short" in r.json()["Errors"][0], r.json()


async def test_unknown_provider_starts_once_installed(api: httpx.AsyncClient,
                                                      drpd: DrpdProcess) -> None:
    created = await create(api, "late", "late_provider")
    assert not created["Available"] and "not installed" in created["Errors"][0]
    body = wrapper_bytes("plain_provider", {"DRPD_TEST_NAME": "late_provider"})
    r = await api.post("/plugin_providers/late_provider", content=body)
    assert r.status_code == 201, r.text
    await wait_plugin(api, "late", lambda p: p["Available"])


async def test_a_put_with_new_params_restarts_the_instance(api: httpx.AsyncClient) -> None:
    """PUT publishes ``save`` (DRP), not ``update``: the controller follows it too."""
    created = await create(api, "p1", "sdk_echo", **{"echo/greeting": "hi"})
    pid = created["Runtime"]["Pid"]
    whole = dict(created, Params={"echo/greeting": "put"})
    r = await api.put("/plugins/p1", json=whole)
    assert r.status_code == 200, r.text
    p = await wait_plugin(api, "p1", lambda p: p["Available"] and p["Runtime"]["Pid"] != pid)
    assert p["Runtime"]["Restarts"] == 1 and not alive(pid)


async def test_listen_only_provider(api: httpx.AsyncClient) -> None:
    created = await create(api, "lo", "listen_only")
    assert created["Available"] is True, created
    # the verb is remembered: a restart goes straight to listen
    r = await api.post("/plugins/lo/restart")
    assert r.json()["Available"] is True


async def test_the_verb_that_worked_survives_a_drpd_restart(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    """A Go provider knows only ``listen``: its first start costs one refused
    ``serve``; the verb is stored with the provider, so after a drpd restart
    the first start uses ``listen`` at once (issue 12.8, 11.26)."""
    await create(api, "lo", "listen_only")
    log = (await api.get("/plugins/lo/log")).json()
    assert any("unknown command 'serve'" in line for line in log), log

    async def stored_verb() -> str | None:
        r = await api.get("/plugin_providers/listen_only")
        return r.json().get("Verb") or None

    assert await wait_for(stored_verb, 10) == "listen"
    drpd.restart()
    async with api_client(drpd) as again:
        p = await wait_plugin(again, "lo", lambda p: p["Available"])
        assert p["Runtime"]["Restarts"] == 0
        log = (await again.get("/plugins/lo/log")).json()
        assert not any("unknown command" in line for line in log), log
        assert (await again.get("/plugin_providers/listen_only")).json()["Verb"] == "listen"


async def test_crash_restart_then_backoff(api: httpx.AsyncClient) -> None:
    created = await create(api, "c1", "plain_provider")
    pid = created["Runtime"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    # restarted at once after the first crash
    p = await wait_plugin(api, "c1", lambda p: p["Available"] and p["Runtime"]["Pid"] != pid, 10)
    assert any("killed by SIGKILL" in e for e in p["PluginErrors"])
    second = p["Runtime"]["Pid"]
    os.kill(second, signal.SIGKILL)
    # a quick second crash backs off (1 s here) before the next start
    p = await wait_plugin(api, "c1", lambda p: p["Runtime"]["State"] == "backoff", 5)
    assert not p["Available"] and "crashed" in p["Errors"][0]
    p = await wait_plugin(api, "c1", lambda p: p["Available"], 10)
    assert p["Runtime"]["Restarts"] >= 2 and len(p["PluginErrors"]) >= 2


async def test_upload_replace_and_destroy(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    plugin_dir = drpd.state_dir / "plugins"
    body = (PROVIDERS / "sdk_echo.py").read_bytes()
    # the same bytes again change nothing
    created = await create(api, "u1", "sdk_echo", **{"echo/greeting": "hi"})
    r = await api.post("/plugin_providers/sdk_echo", content=body)
    assert r.status_code == 200
    assert (await plugin(api, "u1"))["Runtime"]["Pid"] == created["Runtime"]["Pid"]
    # different bytes restart its instances
    v2 = body + b"\n# v2\n"
    r = await api.post("/plugin_providers/sdk_echo", content=v2)
    assert r.status_code == 200 and r.json()["Size"] == len(v2)
    p = await wait_plugin(api, "u1", lambda p: p["Available"] and
                          p["Runtime"]["Pid"] != created["Runtime"]["Pid"])
    assert not alive(created["Runtime"]["Pid"])
    # download gives the installed bytes back
    r = await api.get("/plugin_providers/sdk_echo/binary")
    assert r.content == v2
    # destroy stops its instances and removes the file
    r = await api.delete("/plugin_providers/sdk_echo")
    assert r.status_code == 200
    assert not (plugin_dir / "sdk_echo").exists()
    assert not alive(p["Runtime"]["Pid"])
    p = await plugin(api, "u1")
    assert not p["Available"] and "not installed" in p["Errors"][0]
    assert (await api.get("/plugin_providers/sdk_echo")).status_code == 404


@pytest.mark.parametrize(("mode", "needle"), [
    ("define-exit-1", "exit status 1"),
    ("bad-define-json", "not a PluginProvider JSON"),
    ("define-not-object", "not a PluginProvider JSON"),
    ("define-hang", "no answer within"),
])
async def test_bad_uploads_change_nothing(tmp_path: Path, mode: str, needle: str) -> None:
    state = tmp_path / "state"
    original = install(state / "plugins", "plain_provider").read_bytes()
    with DrpdProcess(state, env={**FAST, "DRPD_DEFINE_TIMEOUT": "1"}) as drpd:
        async with api_client(drpd) as api:
            body = wrapper_bytes("plain_provider", {"DRPD_TEST_MODE": mode})
            r = await api.post("/plugin_providers/plain_provider", content=body)
            assert r.status_code == 422, r.text
            assert needle in r.json()["Messages"][0]
            assert (state / "plugins" / "plain_provider").read_bytes() == original
            assert not [f for f in os.listdir(state / "plugins") if f.startswith(".")]
            listed = (await api.get("/plugin_providers/plain_provider")).json()
            assert listed["Sha256"] and listed["Size"] == len(original)
            # a name that does not match the definition is refused too
            r = await api.post("/plugin_providers/other",
                               content=(PROVIDERS / "plain_provider.py").read_bytes())
            assert r.status_code == 422 and "not 'other'" in r.json()["Messages"][0]
            assert (await api.get("/plugin_providers/other")).status_code == 404


async def test_plugin_dir_is_watched(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    plugin_dir = drpd.state_dir / "plugins"
    install(plugin_dir, "plain_provider", "watched", env={"DRPD_TEST_NAME": "watched"})

    async def listed() -> bool:
        return (await api.get("/plugin_providers/watched")).status_code == 200

    await wait_for(listed, 10)
    created = await create(api, "w1", "watched")
    assert created["Available"]
    (plugin_dir / "watched").unlink()

    async def gone() -> bool:
        return (await api.get("/plugin_providers/watched")).status_code == 404

    await wait_for(gone, 10)
    await wait_plugin(api, "w1", lambda p: not p["Available"] and not alive(created["Runtime"]["Pid"]))


async def test_fifty_instances(api: httpx.AsyncClient) -> None:
    async def one(i: int) -> None:
        r = await api.post("/plugins", json={"Name": f"many{i}", "Provider": "sdk_echo",
                                             "Params": {"echo/greeting": f"g{i}"}})
        assert r.status_code == 201 and r.json()["Available"], r.text

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
    plugins = (await api.get("/plugins")).json()
    pids = {p["Runtime"]["Pid"] for p in plugins if p["Name"].startswith("many")}
    assert len(pids) == 50 and all(alive(pid) for pid in pids)


async def test_leaving_keeps_it_stopped_across_restart(api: httpx.AsyncClient,
                                                      drpd: DrpdProcess) -> None:
    await create(api, "bye", "sdk_echo", **{"echo/greeting": "hi", "echo/leave-on-config": True})
    p = await wait_plugin(api, "bye", lambda p: p["Runtime"]["State"] == "left")
    assert not p["Available"] and p["Runtime"]["Pid"] == 0
    drpd.restart()
    async with api_client(drpd) as fresh:
        p = await plugin(fresh, "bye")
        assert p["Runtime"]["State"] == "left"
        # an update brings it back (and here it leaves again on config)
        await fresh.patch("/plugins/bye", json={"Params": {"echo/greeting": "back"}},
                          headers={"Content-Type": "application/merge-patch+json"})
        p = await wait_plugin(fresh, "bye", lambda p: p["Runtime"]["Restarts"] >= 0 and
                              p["Runtime"]["State"] in ("left", "running"))


async def test_restart_restores_instances(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    a = await create(api, "keep-a", "sdk_echo", **{"echo/greeting": "a"})
    b = await create(api, "keep-b", "plain_provider")
    assert drpd.stop() == 0
    # no provider outlives a clean shutdown
    assert not alive(a["Runtime"]["Pid"]) and not alive(b["Runtime"]["Pid"])
    drpd.start()
    async with api_client(drpd) as fresh:
        for name in ("keep-a", "keep-b"):
            await wait_plugin(fresh, name, lambda p: p["Available"])


async def test_sigkill_drpd_leaves_no_provider(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    pids = [(await create(api, f"k{i}", "sdk_echo", **{"echo/greeting": "x"}))["Runtime"]["Pid"]
            for i in range(3)]
    pids.append((await create(api, "kp", "plain_provider"))["Runtime"]["Pid"])
    assert all(alive(pid) for pid in pids)
    drpd.kill()
    await wait_for(lambda: not any(alive(pid) for pid in pids), 10)


@pytest.mark.parametrize("mode", ["never-ready", "exit-before-ready", "fail-config"])
async def test_start_failures(tmp_path: Path, mode: str) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": mode})
    with DrpdProcess(state, env={**FAST, "DRPD_READY_TIMEOUT": "1"}) as drpd:
        async with api_client(drpd) as api:
            created = await create(api, "f1", "plain_provider")
            assert not created["Available"]
            expected = {"never-ready": "no READY! within 1 s",
                        "exit-before-ready": "before READY!",
                        "fail-config": "config refused (422)"}[mode]
            assert expected in created["Errors"][0], created
            assert expected in created["PluginErrors"][-1]


async def test_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": "ignore-sigterm"})
    with DrpdProcess(state, env={**FAST, "DRPD_STOP_GRACE": "0.5"}) as drpd:
        async with api_client(drpd) as api:
            pid = (await create(api, "stubborn", "plain_provider"))["Runtime"]["Pid"]
            with trio.fail_after(10):
                r = await api.delete("/plugins/stubborn")
            assert r.status_code == 200 and not alive(pid)


async def test_forked_child_is_ended(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": "fork-child-and-exit"})
    with DrpdProcess(state, env={**FAST, "DRPD_BACKOFF_INITIAL": "5"}) as drpd:
        async with api_client(drpd) as api:
            await create(api, "forker", "plain_provider")
            log = await wait_for(lambda: [line for line in drpd.output if "CHILD " in line], 10)
            child = int(log[0].rsplit("CHILD ", 1)[1].split()[0])
            await wait_for(lambda: not alive(child), 10)


async def test_long_state_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100) / ("e" * 100) / "state"
    install(deep / "plugins", "sdk_echo")
    with DrpdProcess(deep, env=FAST) as drpd:
        async with api_client(drpd) as api:
            created = await create(api, "deep", "sdk_echo", **{"echo/greeting": "hi"})
            assert created["Available"], created


async def test_autostart_provider(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", "auto",
            env={"DRPD_TEST_NAME": "auto", "DRPD_TEST_AUTOSTART": "1"})
    with DrpdProcess(state, env=FAST) as drpd:
        async with api_client(drpd) as api:
            await wait_plugin(api, "auto", lambda p: p["Available"])


async def test_provider_environment_sockets_and_token(api: httpx.AsyncClient,
                                                      drpd: DrpdProcess) -> None:
    import stat
    import sys

    p = await create(api, "env1", "sdk_echo", **{"echo/greeting": "hi"})
    pid = p["Runtime"]["Pid"]
    environ = proc_environ(pid)
    assert environ["RS_ENDPOINT"] == drpd.endpoint
    assert environ["RS_CA_CERT"] == drpd.ca_cert
    assert environ["RS_WEBROOT"] == str(drpd.state_dir / "files")
    info = (await api.get("/info")).json()
    assert environ["RS_FILESERVER"] == f"http://127.0.0.1:{info['file_port']}"
    assert environ["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    # the working directory is a private scratch directory
    cwd = os.readlink(f"/proc/{pid}/cwd")
    assert os.path.basename(cwd) == "env1" and stat.S_IMODE(os.stat(cwd).st_mode) == 0o700
    # both sockets live in a directory only drpd's user can enter
    argv = proc_cmdline(pid)
    plugin_sock = Path(argv[-2])
    assert argv[-3] == "serve"
    assert stat.S_IMODE(os.stat(plugin_sock.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(plugin_sock.parent.parent).st_mode) == 0o700
    assert len(str(plugin_sock)) < 107
    # the instance's token works until the instance is destroyed
    token = {"Authorization": f"Bearer {environ['RS_TOKEN']}"}
    async with api_client(drpd, auth=None) as anon:
        assert (await anon.get("/info", headers=token)).status_code == 200
        await api.delete("/plugins/env1")
        r = await anon.get("/info", headers=token)
        assert r.status_code == 401 and "revoked" in r.json()["Messages"][0]


async def test_unpack_into_file_space(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    unpacked = drpd.state_dir / "files" / "plugin_providers" / "sdk_echo"
    assert (unpacked / "echo-helper.sh").read_text().startswith("#!/bin/sh")
    info = (await api.get("/info")).json()
    async with httpx.AsyncClient() as plain:
        r = await plain.get(f"http://127.0.0.1:{info['file_port']}"
                            "/files/plugin_providers/sdk_echo/data/readme.txt")
        assert r.status_code == 200 and r.text == "sdk_echo assets\n"


async def test_provider_logs_are_tagged(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    await create(api, "talker", "plain_provider")
    lines = await wait_for(lambda: [line for line in drpd.output
                                    if "plain_provider configured as talker" in line], 10)
    assert "drpd.plugin.talker" in lines[0]
    log = (await api.get("/plugins/talker/log", params={"lines": 50})).json()
    assert any("configured as talker" in line for line in log)


async def test_restart_after_leaving_is_durable(api: httpx.AsyncClient,
                                                drpd: DrpdProcess) -> None:
    """Issue 11.15: a restart through the API clears "left" on disk, not only in memory."""
    # the instance leaves on config through a param default, which the test can change
    await api.post("/params", json={"Name": "echo/leave-on-config",
                                    "Schema": {"type": "boolean", "default": True}})
    await create(api, "back", "sdk_echo", **{"echo/greeting": "hi"})
    await wait_plugin(api, "back", lambda p: p["Runtime"]["State"] == "left")
    r = await api.put("/params/echo/leave-on-config", json={
        "Name": "echo/leave-on-config", "Schema": {"type": "boolean", "default": False}})
    assert r.status_code == 200, r.text
    # a params change does not bring back an instance that left
    assert (await plugin(api, "back"))["Runtime"]["State"] == "left"
    r = await api.post("/plugins/back/restart")
    assert r.status_code == 200 and r.json()["Available"], r.text
    drpd.restart()
    async with api_client(drpd) as fresh:
        p = await wait_plugin(fresh, "back", lambda p: p["Runtime"]["State"] != "stopped")
        assert p["Runtime"]["State"] != "left"
        await wait_plugin(fresh, "back", lambda p: p["Available"])


async def test_param_from_a_content_bundle_wakes_a_waiting_instance(
        api: httpx.AsyncClient) -> None:
    """Instances follow the store's change feed, not the API handler that wrote."""
    created = await create(api, "cb1", "sdk_echo")
    assert created["Runtime"]["State"] == "waiting"
    assert created["Errors"] == ["missing required param: echo/greeting"]
    bundle = {"meta": {"Name": "echo-defaults", "Version": "1"}, "sections": {"params": {
        "echo/greeting": {"Name": "echo/greeting",
                          "Schema": {"type": "string", "default": "from a bundle"}}}}}
    r = await api.post("/contents", json=bundle)
    assert r.status_code == 201, r.text
    p = await wait_plugin(api, "cb1", lambda p: p["Available"])
    assert p["Errors"] == []
    r = await api.post("/machines", json={"Name": "cbm"})
    assert r.status_code == 201
    r = await api.post("/machines/Name:cbm/actions/echo", params={"plugin": "cb1"})
    assert r.status_code == 200 and r.json()["Config"]["echo/greeting"] == "from a bundle"
    # removing the bundle takes the default away again: the running process stays
    # (a Params change restarts; a default applies at the next start)
    assert (await api.delete("/contents/echo-defaults")).status_code == 200


async def test_destroy_removes_the_scratch_directory(api: httpx.AsyncClient,
                                                     drpd: DrpdProcess) -> None:
    """Issue 11.17: scratch/<instance> goes with the instance, not to the next of that name."""
    created = await create(api, "scr", "sdk_echo", **{"echo/greeting": "hi"})
    scratch = drpd.state_dir / "scratch" / "scr"
    cwd = Path(os.readlink(f"/proc/{created['Runtime']['Pid']}/cwd"))
    assert cwd == scratch.resolve()
    (scratch / "left-over").write_text("from the first instance")
    assert (await api.delete("/plugins/scr")).status_code == 200
    assert not scratch.exists()
    again = await create(api, "scr", "sdk_echo", **{"echo/greeting": "hi"})
    assert again["Available"] and not (scratch / "left-over").exists()
