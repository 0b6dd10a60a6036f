"""The ipmi provider under a real drpd, driving real ipmitool against a simulated BMC.

Needs Debian's ``ipmitool`` on PATH and ``pyghmi`` in the test environment
(``tests/bmc_sim.py`` is built on it); without them these tests fail and
say what to install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import wait_for, wait_plugin

IPMI = Path(__file__).parent.parent / "drpd" / "providers" / "ipmi.py"
SIM = Path(__file__).parent / "bmc_sim.py"
USER = "admin"
PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module", autouse=True)
def requirements() -> None:
    missing = []
    if shutil.which("ipmitool") is None:
        missing.append("ipmitool is not installed: apt-get install ipmitool")
    if importlib.util.find_spec("pyghmi") is None:
        missing.append(f"pyghmi is not installed: {sys.executable} -m pip install pyghmi")
    if missing:
        pytest.fail("; ".join(missing), pytrace=False)


def install_ipmi(state: Path) -> None:
    (state / "plugins").mkdir(parents=True)
    shutil.copy(IPMI, state / "plugins" / "ipmi")


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory, requirements: None) -> Iterator[DrpdProcess]:
    """One drpd for the module; its auto-created ``ipmi`` instance gets the BMC username."""
    state = tmp_path_factory.mktemp("ipmi") / "state"
    install_ipmi(state)
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2"}) as proc:
        with httpx.Client(base_url=proc.endpoint + "/api/v3", auth=proc.auth,
                          verify=proc.verify, timeout=60) as client:
            # AutoStart: installing the provider created the instance, with no params
            deadline = time.monotonic() + 30
            while True:
                r = client.get("/plugins/ipmi")
                if r.status_code == 200 and r.json().get("Available"):
                    break
                assert time.monotonic() < deadline, f"no available ipmi instance: {r.text}"
                time.sleep(0.1)
            assert r.json()["Provider"] == "ipmi" and not r.json().get("Params"), r.text
            r = client.patch("/plugins/ipmi", json={"Params": {"ipmi/username": USER}},
                             headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


@dataclass
class Bmc:
    port: int
    state_file: Path

    def state(self) -> dict[str, Any]:
        """The simulated machine as the BMC left it (written before it answered)."""
        return json.loads(self.state_file.read_text())


@pytest.fixture
def bmc(tmp_path: Path, requirements: None) -> Iterator[Bmc]:
    """A simulated BMC on a free UDP port of 127.0.0.1, its machine powered off."""
    state, errors = tmp_path / "bmc.json", tmp_path / "bmc.err"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(SIM), "--port", "0", "--user", USER, "--password", PASSWORD,
             "--state", str(state)], stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            proc.kill()
            proc.wait()
            pytest.fail(f"bmc_sim did not start: {errors.read_text()[-2000:]}")
        yield Bmc(int(line.split()[1]), state)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


async def new_machine(api: httpx.AsyncClient, port: int, **params: Any) -> str:
    """A machine whose params point at the BMC on ``port`` (``None`` drops one)."""
    values = {"ipmi/address": "127.0.0.1", "ipmi/port": port, "ipmi/password": PASSWORD}
    values.update(params)
    body = {"Name": f"m-{uuid.uuid4().hex[:10]}",
            "Params": {k: v for k, v in values.items() if v is not None}}
    r = await api.post("/machines", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["Uuid"])


async def act(api: httpx.AsyncClient, machine: str, command: str,
              **params: Any) -> httpx.Response:
    return await api.post(f"/machines/{machine}/actions/{command}", json=params)


def message(r: httpx.Response) -> str:
    return "; ".join(r.json()["Messages"])


async def test_power_on_off_and_status(api: httpx.AsyncClient, bmc: Bmc) -> None:
    m = await new_machine(api, bmc.port)
    r = await act(api, m, "power-status")
    assert r.status_code == 200, r.text
    assert r.json() == {"Power": "off"}
    r = await act(api, m, "power-on")
    assert r.status_code == 200, r.text
    assert r.json() == {"Power": "on", "Result": "Chassis Power Control: Up/On"}
    assert bmc.state()["Power"] == "on"
    assert (await act(api, m, "power-status")).json() == {"Power": "on"}
    r = await act(api, m, "power-off")
    assert r.status_code == 200 and r.json()["Power"] == "off", r.text
    assert bmc.state() == {"Power": "off", "BootDevice": "default",
                           "Events": ["power_on", "power_off"]}
    assert (await act(api, m, "power-status")).json() == {"Power": "off"}


async def test_power_cycle(api: httpx.AsyncClient, bmc: Bmc) -> None:
    m = await new_machine(api, bmc.port)
    assert (await act(api, m, "power-on")).status_code == 200
    r = await act(api, m, "power-cycle")
    assert r.status_code == 200, r.text
    assert r.json() == {"Power": "on", "Result": "Chassis Power Control: Cycle"}
    assert bmc.state()["Events"] == ["power_on", "power_cycle"]
    # a BMC refuses to cycle a machine that is off: the refusal is passed on
    assert (await act(api, m, "power-off")).status_code == 200
    r = await act(api, m, "power-cycle")
    assert r.status_code == 409, r.text
    text = message(r)
    assert f"127.0.0.1:{bmc.port}" in text and "chassis power cycle" in text
    assert "ipmitool exit status 1" in text and "not supported in present state" in text
    assert bmc.state()["Events"] == ["power_on", "power_cycle", "power_off"]


async def test_set_boot_order(api: httpx.AsyncClient, bmc: Bmc) -> None:
    m = await new_machine(api, bmc.port, **{"ipmi/boot-device": "pxe"})
    r = await act(api, m, "set-boot-order")
    assert r.status_code == 200, r.text
    assert r.json() == {"BootDevice": "pxe", "Result": "Set Boot Device to pxe"}
    assert bmc.state()["BootDevice"] == "network"  # pyghmi's name for PXE
    # a value given with the call wins over the machine's
    r = await act(api, m, "set-boot-order", **{"ipmi/boot-device": "disk"})
    assert r.status_code == 200, r.text
    assert bmc.state()["BootDevice"] == "hd"
    # the content bundle's enum: drpd refuses, the BMC never hears of it
    r = await act(api, m, "set-boot-order", **{"ipmi/boot-device": "usb-stick"})
    assert r.status_code == 422 and "ipmi/boot-device" in message(r), r.text
    # a device this BMC does not support: ipmitool exits 0, the provider still fails
    r = await act(api, m, "set-boot-order", **{"ipmi/boot-device": "diag"})
    assert r.status_code == 409, r.text
    assert "chassis bootdev diag" in message(r) and "Invalid data field" in message(r)
    assert bmc.state()["Events"] == ["set_boot_device network", "set_boot_device hd"]


async def test_secure_password_from_a_profile(api: httpx.AsyncClient, bmc: Bmc) -> None:
    # ipmi/password is Secure: stored sealed, given to the provider in clear
    r = await api.post("/profiles", json={"Name": f"bmc-{bmc.port}",
                                          "Params": {"ipmi/password": PASSWORD}})
    assert r.status_code == 201, r.text
    assert PASSWORD not in r.text
    m = await new_machine(api, bmc.port, **{"ipmi/password": None})
    r = await api.patch(f"/machines/{m}", json={"Profiles": [f"bmc-{bmc.port}"]},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    r = await act(api, m, "power-on")
    assert r.status_code == 200, r.text
    assert bmc.state()["Power"] == "on"


async def test_wrong_password(api: httpx.AsyncClient, bmc: Bmc) -> None:
    bad = "Not-The-Pw-42"
    m = await new_machine(api, bmc.port, **{"ipmi/password": bad})
    r = await act(api, m, "power-on")
    assert r.status_code == 502, r.text
    text = message(r)
    assert f"no IPMI session with BMC 127.0.0.1:{bmc.port}" in text
    assert "ipmi/password is wrong" in text and "ipmitool exit status 1" in text
    assert "Unable to establish IPMI v2 / RMCP+ session" in text
    assert bad not in r.text and PASSWORD not in r.text
    assert bmc.state()["Events"] == []


def ipmitool_cmdlines(port: int) -> list[list[str]]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if argv and argv[0].endswith("ipmitool") and str(port) in argv:
                found.append(argv)
    return found


async def test_unreachable_bmc_fails_within_the_deadline(api: httpx.AsyncClient) -> None:
    # a UDP port that takes ipmitool's packets and never answers
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        m = await new_machine(api, port)
        result: list[httpx.Response] = []

        async def call() -> None:
            result.append(await act(api, m, "power-status", **{"ipmi/timeout": 3}))

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            # meanwhile ipmitool runs: the password is not on its command line
            argv = (await wait_for(lambda: ipmitool_cmdlines(port), 3))[0]
        elapsed = time.monotonic() - started
        assert "-E" in argv and PASSWORD not in " ".join(argv), argv
        assert argv[argv.index("-U") + 1] == USER  # from the plugin instance's Params
        silent.setblocking(False)
        assert silent.recv(512)  # ipmitool really knocked
    r = result[0]
    assert r.status_code == 504, r.text
    assert f"BMC 127.0.0.1:{port} did not answer chassis power status within 3 s" in message(r)
    assert 3 <= elapsed < 9, elapsed
    # and the provider ended its ipmitool
    assert ipmitool_cmdlines(port) == []


async def test_missing_and_invalid_params(api: httpx.AsyncClient, bmc: Bmc) -> None:
    m = await new_machine(api, bmc.port, **{"ipmi/address": None})
    r = await act(api, m, "power-on")
    assert r.status_code == 422 and "ipmi/address" in message(r), r.text
    r = await act(api, m, "power-on", **{"ipmi/address": "127.0.0.1", "ipmi/port": "623x"})
    assert r.status_code == 422 and "ipmi/port" in message(r), r.text
    m2 = await new_machine(api, bmc.port)
    r = await act(api, m2, "set-boot-order")
    assert r.status_code == 422 and "ipmi/boot-device" in message(r), r.text
    # a host name ipmitool would read as an option: the provider refuses it
    r = await act(api, m2, "power-on", **{"ipmi/address": "-o"})
    assert r.status_code == 422 and "ipmi/address" in message(r), r.text
    assert bmc.state()["Events"] == []


async def test_missing_ipmitool_leaves_the_instance_unavailable(tmp_path: Path) -> None:
    # drpd puts its interpreter's directory first on the provider's PATH, so
    # python3 still resolves; nothing else on PATH, so no ipmitool
    bindir = os.path.dirname(sys.executable)
    if shutil.which("ipmitool", path=bindir):
        pytest.fail(f"{bindir} holds an ipmitool: run the tests from a venv without one")
    state = tmp_path / "state"
    install_ipmi(state)
    with DrpdProcess(state, env={"PATH": bindir, "DRPD_STOP_GRACE": "2"}) as proc:
        async with api_client(proc) as client:
            # AutoStart created the instance; it cannot start without ipmitool
            p = await wait_plugin(client, "ipmi", lambda p: not p["Available"] and p["Errors"])
            text = " ".join(p["Errors"])
            assert "ipmitool is not installed" in text and "apt-get install ipmitool" in text


async def test_upstream_power_names(api: httpx.AsyncClient, bmc: Bmc) -> None:
    # upstream's params: ipmi/port-ipmitool instead of drpd's ipmi/port
    m = await new_machine(api, bmc.port, **{"ipmi/port": None, "ipmi/port-ipmitool": bmc.port})
    for name in ("powerstatus", "status"):
        r = await act(api, m, name)
        assert r.status_code == 200 and r.json() == {"Power": "off"}, r.text
    assert (await act(api, m, "poweron")).json()["Power"] == "on"
    r = await act(api, m, "powercycle")
    assert r.status_code == 200 and r.json()["Power"] == "on", r.text
    r = await act(api, m, "poweroff")
    assert r.status_code == 200 and r.json()["Power"] == "off", r.text
    assert bmc.state()["Events"] == ["power_on", "power_cycle", "power_off"]
    # a BMC that refuses: a DRP Error naming the BMC and ipmitool's message
    r = await act(api, m, "powercycle")
    assert r.status_code == 409, r.text
    assert r.json()["Model"] and f"BMC 127.0.0.1:{bmc.port}" in message(r)
    assert "not supported in present state" in message(r)


async def test_upstream_boot_names(api: httpx.AsyncClient, bmc: Bmc) -> None:
    m = await new_machine(api, bmc.port)
    r = await act(api, m, "nextbootdisk")
    assert r.status_code == 200, r.text
    assert r.json() == {"BootDevice": "disk", "Uefi": False, "Result": "Set Boot Device to disk"}
    assert bmc.state()["BootDevice"] == "hd"
    assert (await act(api, m, "nextbootpxe")).status_code == 200
    assert bmc.state()["BootDevice"] == "network"
    # forceboot: next boot, then start the machine (it is off: power on)
    r = await act(api, m, "forcebootdisk")
    assert r.status_code == 200 and r.json()["Power"] == "on", r.text
    assert bmc.state()["BootDevice"] == "hd" and bmc.state()["Power"] == "on"
    # it is on now: cycle
    r = await act(api, m, "forcebootpxe")
    assert r.status_code == 200, r.text
    assert bmc.state()["Events"][-2:] == ["set_boot_device network", "power_cycle"]
    # UEFI machines (detected-bios-mode) boot with options=efiboot
    r = await act(api, m, "nextbootpxe", **{"detected-bios-mode": "uefi"})
    assert r.status_code == 200 and r.json()["Uefi"] is True, r.text


async def test_upstream_get_info_and_mode(api: httpx.AsyncClient, bmc: Bmc) -> None:
    m = await new_machine(api, bmc.port)
    r = await act(api, m, "getInfo")
    assert r.status_code == 200, r.text
    assert "Device ID" in r.json() and "IPMI Version" in r.json(), r.text
    r = await act(api, m, "poweron", **{"ipmi/mode": "carrier-pigeon"})
    assert r.status_code == 422 and "ipmi/mode" in message(r), r.text
    r = await act(api, m, "identify", **{"ipmi/identify-duration": 5})
    # the simulated BMC may not implement chassis identify: either it lights, or it refuses by name
    assert r.status_code in (200, 409), r.text
    if r.status_code == 409:
        assert f"BMC 127.0.0.1:{bmc.port} refused chassis identify 5" in message(r)
