"""A provider flooding stderr: drpd logs a bounded number of its lines a second,
counts the rest and says so (issue 11, item 22)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import install, wait_for, wait_plugin

RATE, BURST = 20, 50


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood_lines(drpd: DrpdProcess) -> int:
    return sum(1 for line in list(drpd.output) if "drpd.plugin.flood: plain_provider: flooding"
               in line)


async def test_a_flooding_provider_is_rate_limited_in_the_log(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", "flood",
            env={"DRPD_TEST_NAME": "flood", "DRPD_TEST_MODE": "flood-stderr"})
    env = {"DRPD_PROVIDER_LOG_RATE": str(RATE), "DRPD_PROVIDER_LOG_BURST": str(BURST)}
    with DrpdProcess(state, env=env, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins?wait=false", json={"Name": "flood", "Provider": "flood"})
            assert r.status_code == 201, r.text
            await wait_plugin(api, "flood", lambda p: p["Available"])
            # the first drop is said at once, with how many
            await wait_for(lambda: "output line(s) of this instance dropped" in drpd.log_text())
            before, cpu_before, started = flood_lines(drpd), cpu_seconds(drpd.pid), time.monotonic()
            await trio.sleep(3)  # a window to count in, not a synchronisation
            after, cpu_after = flood_lines(drpd), cpu_seconds(drpd.pid)
            elapsed = time.monotonic() - started
            logged = after - before
            # the bucket's bound: the rate over the window plus at most one burst
            assert logged <= RATE * (elapsed + 1) + BURST, (logged, elapsed)
            print(f"flood: {logged} lines logged in {elapsed:.1f} s; drpd used "
                  f"{100 * (cpu_after - cpu_before) / elapsed:.0f}% of a core")
            assert (await api.get("/info")).status_code == 200
            log = (await api.get("/plugins/flood/log", params={"lines": 500})).json()
            assert any("dropped" in line for line in log)
