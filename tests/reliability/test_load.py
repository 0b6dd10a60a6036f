"""Many clients calling actions and CRUD while the provider keeps crashing."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import install, wait_for, wait_plugin
from .scale import seconds, size

CLIENTS = size(40, 500)
DURATION = seconds(8, 60)
CRASH_EVERY = 2.0


async def test_load_with_crashing_provider(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "sdk_echo")
    env = {"DRPD_HEALTHY_AFTER": "1", "DRPD_BACKOFF_INITIAL": "0.2", "DRPD_BACKOFF_MAX": "1",
           "DRPD_STOP_GRACE": "1", "DRPD_ACTION_TIMEOUT": "10"}
    with DrpdProcess(state, no_tls=True, env=env) as drpd:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with api_client(drpd, limits=limits, timeout=60) as api:
            r = await api.post("/plugins", json={"Name": "e", "Provider": "sdk_echo",
                                                 "Params": {"echo/greeting": "hi"}})
            assert r.json()["Available"]
            target = (await api.post("/machines", json={"Name": "target"})).json()["Uuid"]
            created: set[str] = set()
            outcomes: Counter[str] = Counter()
            unclear: list[str] = []
            crashes = 0
            stop_at = time.monotonic() + DURATION

            async def client(n: int) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    i += 1
                    if i % 3 == 0:
                        name = f"c{n}-{i}"
                        r = await api.post("/machines", json={"Name": name})
                        if r.status_code == 201:
                            created.add(name)
                    else:
                        r = await api.post(f"/machines/{target}/actions/echo")
                    outcomes[str(r.status_code)] += 1
                    if r.status_code >= 400:
                        body = r.json()
                        if not (body.get("Messages") and body.get("Code") == r.status_code):
                            unclear.append(r.text[:200])

            async def crasher() -> None:
                nonlocal crashes
                while time.monotonic() < stop_at:
                    await trio.sleep(CRASH_EVERY)
                    pid = (await api.get("/plugins/e")).json()["Runtime"]["Pid"]
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                        crashes += 1

            with trio.fail_after(DURATION + 120):  # no deadlock
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(crasher)
                    for n in range(CLIENTS):
                        nursery.start_soon(client, n)

            print(f"\nload: {CLIENTS} clients for {DURATION:g} s, {crashes} provider crashes, "
                  f"answers {dict(outcomes)}, {len(created)} machines created")
            assert crashes >= 2, crashes
            assert not unclear, unclear[:5]
            assert set(outcomes) <= {"200", "201", "502", "503"}, outcomes
            assert outcomes["200"] > 0 and outcomes["201"] > 0
            # after the storm: the instance recovers and nothing acknowledged is lost
            await wait_plugin(api, "e", lambda p: p["Available"], 30)
            stored = {m["Name"] for m in (await api.get("/machines")).json()}
            assert created <= stored, len(created - stored)
            async def echo_works() -> bool:
                return (await api.post(f"/machines/{target}/actions/echo")).status_code == 200

            await wait_for(echo_works, 30)
