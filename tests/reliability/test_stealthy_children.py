"""A provider's child that sheds both process group and environment marker
(``setsid`` + ``env -i``) is still ended: by ``destroy``, and by the reaper
when drpd is SIGKILLed (issue 11, item 24). drpd finds it by ancestry: it is
the child subreaper of its providers, and remembers (pid, start time) of
every descendant of each start (``drpd/plugins/lineage.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import alive, install, wait_for


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


async def start_with_child(drpd: DrpdProcess, api, name: str) -> int:  # noqa: ANN001
    r = await api.post("/plugins", json={"Name": name, "Provider": "plain_provider"})
    assert r.status_code == 201 and r.json()["Available"], r.text
    lines = await wait_for(lambda: [x for x in drpd.output if "CHILD " in x], 10)
    child = int(lines[0].split("CHILD ")[1].split()[0])
    # the escape is real: no marker (once env -i has run), a session of its own
    await wait_for(lambda: b"DRPD_RUN" not in environ_of(child), 10)
    assert os.getsid(child) == child
    return child


#: (mode, cgroups): without a cgroup, a child orphaned at once (its parent
#: gone before drpd's next look) cannot be told from another process: only
#: the cgroup holds it (docs/protocol.md §5)
CASES = [("stealthy-child", "true"), ("stealthy-orphan", "true"), ("stealthy-child", "false")]


@pytest.mark.parametrize(("mode", "cgroups"), CASES)
async def test_destroy_ends_a_child_that_shed_group_and_marker(
        tmp_path: Path, mode: str, cgroups: str) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": mode})
    env = {"DRPD_STOP_GRACE": "1", "DRPD_PROVIDER_CGROUPS": cgroups}
    with DrpdProcess(state, env=env) as drpd:
        async with api_client(drpd) as api:
            child = await start_with_child(drpd, api, "s")
            r = await api.delete("/plugins/s")
            assert r.status_code == 200
            await wait_for(lambda: not alive(child), 10)


@pytest.mark.parametrize(("mode", "cgroups"), CASES)
async def test_the_reaper_ends_it_when_drpd_is_killed(
        tmp_path: Path, mode: str, cgroups: str) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": mode})
    env = {"DRPD_STOP_GRACE": "1", "DRPD_LOG_LEVEL": "debug", "DRPD_PROVIDER_CGROUPS": cgroups}
    with DrpdProcess(state, env=env) as drpd:
        async with api_client(drpd) as api:
            child = await start_with_child(drpd, api, "s")
            provider = (await api.get("/plugins/s")).json()["Runtime"]["Pid"]
        if cgroups == "true":  # the reaper knows the cgroup from the start
            assert "/drpd-" in cgroup_of(child)
        else:
            # drpd tells its reaper what descends from each start once a second
            # (and says so in its debug log): wait for the child to be told
            await wait_for(lambda: any("the reaper knows of processes" in line
                                       and str(child) in line.split()
                                       for line in drpd.output), 10)
        drpd.kill()
        await wait_for(lambda: not alive(child) and not alive(provider), 10)
