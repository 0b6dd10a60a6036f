"""Providers that misbehave: drpd stays up, the API answers, Errors says what went wrong."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import alive, install, wait_for, wait_plugin

MODES = {
    "noisy": "noise-before-ready",
    "mute": "hang-config",
    "flood": "flood-stderr",
    "forker": "fork-child-and-exit",
    "badjson": "bad-action-json",
    "hangup": "close-mid-action",
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_hostile_providers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for name, mode in MODES.items():
        install(state / "plugins", "plain_provider", name,
                env={"DRPD_TEST_NAME": name, "DRPD_TEST_MODE": mode})
    env = {"DRPD_CONFIG_TIMEOUT": "2", "DRPD_ACTION_TIMEOUT": "3", "DRPD_STOP_GRACE": "1",
           "DRPD_BACKOFF_INITIAL": "1", "DRPD_BACKOFF_MAX": "2"}
    with DrpdProcess(state, env=env) as drpd:
        async with api_client(drpd) as api:
            for name in MODES:
                r = await api.post("/plugins?wait=false", json={"Name": name, "Provider": name})
                assert r.status_code == 201, r.text

            # garbage before READY! is logged and the instance comes up
            await wait_plugin(api, "noisy", lambda p: p["Available"])
            log = (await api.get("/plugins/noisy/log")).json()
            assert any("READY? not yet" in line for line in log)
            # a provider that never answers config fails within the config deadline
            p = await wait_plugin(api, "mute", lambda p: p["PluginErrors"])
            assert "config not answered within 2 s" in p["PluginErrors"][0]
            # forking children and exiting: a crash, and the child is ended too
            p = await wait_plugin(api, "forker", lambda p: any(
                "crashed" in e or "before READY" in e or "during config" in e
                for e in p["PluginErrors"]))
            # invalid JSON from an action is a 502 naming it, recorded for the instance
            await wait_plugin(api, "badjson", lambda p: p["Available"])
            r = await api.post("/system/actions/ping?plugin=badjson")
            assert r.status_code == 502 and "invalid JSON" in r.json()["Messages"][0]
            p = (await api.get("/plugins/badjson")).json()
            assert any("invalid JSON" in e for e in p["PluginErrors"])
            # a provider that hangs up mid-answer: 502, and it keeps serving
            await wait_plugin(api, "hangup", lambda p: p["Available"])
            r = await api.post("/system/actions/ping?plugin=hangup")
            assert r.status_code == 502 and "hangup" in r.json()["Messages"][0]
            # a stderr flood: drpd's memory stays bounded while the API answers
            await wait_plugin(api, "flood", lambda p: p["Available"])
            before = rss_kib(drpd.pid)
            deadline = time.monotonic() + 5
            latencies = []
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert (await api.get("/info")).status_code == 200
                latencies.append(time.monotonic() - started)
                await trio.sleep(0.1)
            after = rss_kib(drpd.pid)
            assert after - before < 64 * 1024, (before, after)
            assert sorted(latencies)[len(latencies) // 2] < 1.0
            log = (await api.get("/plugins/flood/log", params={"lines": 1000})).json()
            assert 0 < len(log) <= 500
        # drpd stayed up through all of it and stops cleanly
        assert drpd.proc is not None and drpd.proc.poll() is None


async def test_forked_children_do_not_survive(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": "fork-child"})
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "1"}) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "f", "Provider": "plain_provider"})
            assert r.json()["Available"]
            line = await wait_for(lambda: [x for x in drpd.output if "CHILD " in x], 10)
            child = int(line[0].split("CHILD ")[1].split()[0])
            assert alive(child)
            await api.delete("/plugins/f")
            await wait_for(lambda: not alive(child), 10)


