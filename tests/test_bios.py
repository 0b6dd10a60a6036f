"""The bios provider under a real drpd against sushy-tools' Redfish emulator."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client
from .redfish_sim import Redfish, redfish_emulator

BIOS = Path(__file__).parent.parent / "drpd" / "providers" / "bios.py"


@pytest.fixture(scope="module")
def redfish(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redfish]:
    with redfish_emulator(tmp_path_factory.mktemp("sushy")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("bios") / "state"
    (state / "plugins").mkdir(parents=True)
    shutil.copy(BIOS, state / "plugins" / "bios")
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2"}) as proc:
        with httpx.Client(base_url=proc.endpoint + "/api/v3", auth=proc.auth,
                          verify=proc.verify, timeout=60) as client:
            deadline = time.monotonic() + 30
            while True:  # AutoStart: installing it created the instance
                r = client.get("/plugins/bios")
                if r.status_code == 200 and r.json().get("Available"):
                    break
                assert time.monotonic() < deadline, f"no available bios instance: {r.text}"
                time.sleep(0.1)
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def new_machine(api: httpx.AsyncClient, redfish: Redfish, **params: Any) -> str:
    values = {"ipmi/address": "127.0.0.1", "ipmi/port-redfish": redfish.port,
              "ipmi/redfish-scheme": "http", "ipmi/username": "admin",
              "ipmi/password": "password", **params}
    r = await api.post("/machines", json={"Name": f"m-{uuid.uuid4().hex[:10]}",
                                          "Params": values})
    assert r.status_code == 201, r.text
    return str(r.json()["Uuid"])


async def act(api: httpx.AsyncClient, machine: str, command: str, **params: Any) -> httpx.Response:
    return await api.post(f"/machines/{machine}/actions/{command}", json=params)


async def param(api: httpx.AsyncClient, machine: str, name: str) -> Any:
    r = await api.get(f"/machines/{machine}/params/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def emulator_bios(redfish: Redfish) -> dict[str, Any]:
    systems = httpx.get(redfish.url + "/redfish/v1/Systems", trust_env=False).json()
    system = systems["Members"][0]["@odata.id"]
    return dict(httpx.get(redfish.url + system + "/BIOS", trust_env=False).json()["Attributes"])


async def test_read_test_apply_and_loop_guard(api: httpx.AsyncClient, redfish: Redfish) -> None:
    m = await new_machine(api, redfish)
    r = await act(api, m, "bios-current-config")
    assert r.status_code == 200, r.text
    current = r.json()
    assert current == emulator_bios(redfish) and current
    assert await param(api, m, "bios-current-configuration") == current

    # nothing to change: bios-test answers {}
    same = {k: current[k] for k in list(current)[:2]}
    r = await act(api, m, "bios-test", **{"bios-target-configuration": same})
    assert r.status_code == 200 and r.json() == {}, r.text

    name = next(k for k, v in current.items() if isinstance(v, str))
    wanted = {**same, name: current[name] + "-x"}
    r = await act(api, m, "bios-test", **{"bios-target-configuration": wanted})
    assert r.status_code == 200 and r.json() == {name: current[name] + "-x"}, r.text

    # the loop guard: the same change was attempted before and did not stick
    change = {name: current[name] + "-x"}
    r = await act(api, m, "bios-apply", **{"bios-target-configuration": wanted,
                                           "bios-last-attempted-configuration": change})
    assert r.status_code == 409, r.text
    assert "loop guard" in "; ".join(r.json()["Messages"])
    assert f"127.0.0.1:{redfish.port}" in "; ".join(r.json()["Messages"])
    assert emulator_bios(redfish)[name] == current[name]

    r = await act(api, m, "bios-apply", **{"bios-target-configuration": wanted})
    assert r.status_code == 200, r.text
    assert r.json() == {"Applied": change, "RebootNeeded": False}
    assert emulator_bios(redfish)[name] == current[name] + "-x"
    assert await param(api, m, "bios-last-attempted-configuration") == change
    # applied: nothing left to do, so the guard does not trip
    r = await act(api, m, "bios-apply", **{"bios-target-configuration": wanted})
    assert r.status_code == 200 and r.json() == {"Applied": {}, "RebootNeeded": False}, r.text

    r = await act(api, m, "bios-reset-defaults")
    assert r.status_code == 200, r.text


async def test_unreachable_bmc_is_named(api: httpx.AsyncClient, redfish: Redfish) -> None:
    m = await new_machine(api, redfish, **{"ipmi/port-redfish": 1})
    r = await act(api, m, "bios-current-config")
    assert r.status_code == 502, r.text
    assert "BMC http://127.0.0.1:1 unreachable" in "; ".join(r.json()["Messages"])


async def test_ipmi_redfish_mode(tmp_path: Path, redfish: Redfish) -> None:
    # the ipmi provider with ipmi/mode redfish: power and next boot over Redfish
    state = tmp_path / "state"
    (state / "plugins").mkdir(parents=True)
    shutil.copy(BIOS.parent / "ipmi.py", state / "plugins" / "ipmi")
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2"}) as proc:
        async with api_client(proc) as client, httpx.AsyncClient(trust_env=False) as rf:
            m = await new_machine(client, redfish, **{"ipmi/mode": "redfish"})
            deadline = time.monotonic() + 30
            while (await client.get("/plugins/ipmi")).json().get("Available") is not True:
                assert time.monotonic() < deadline
                await trio.sleep(0.1)
            systems = (await rf.get(redfish.url + "/redfish/v1/Systems")).json()
            system = redfish.url + systems["Members"][0]["@odata.id"]
            r = await act(client, m, "poweroff")
            assert r.status_code == 200, r.text
            assert (await rf.get(system)).json()["PowerState"] == "Off"
            assert (await act(client, m, "powerstatus")).json() == {"Power": "off"}
            r = await act(client, m, "power-on")
            assert r.status_code == 200 and r.json()["Power"] == "on", r.text
            assert (await rf.get(system)).json()["PowerState"] == "On"
            r = await act(client, m, "nextbootpxe")
            assert r.status_code == 200, r.text
            boot = (await rf.get(system)).json()["Boot"]
            assert boot["BootSourceOverrideTarget"] == "Pxe"
            r = await act(client, m, "nextbootdisk")
            assert r.status_code == 200, r.text
            assert (await rf.get(system)).json()["Boot"][
                "BootSourceOverrideTarget"] == "Hdd"
