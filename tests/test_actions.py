"""Provider actions through the REST API, with real providers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import install, wait_plugin


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("actions") / "state"
    install(state / "plugins", "sdk_echo")
    install(state / "plugins", "plain_provider")
    with DrpdProcess(state, env={"DRPD_ACTION_TIMEOUT": "2", "DRPD_STOP_GRACE": "2",
                                 "DRPD_BACKOFF_INITIAL": "0.2"}) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def ensure_plugin(api: httpx.AsyncClient, name: str, provider: str,
                        params: dict[str, Any]) -> dict[str, Any]:
    r = await api.get(f"/plugins/{name}")
    if r.status_code == 404:
        r = await api.post("/plugins", json={"Name": name, "Provider": provider,
                                             "Params": params})
    p = r.json()
    assert p["Available"], p
    return p


@pytest.fixture
async def echo(api: httpx.AsyncClient) -> dict[str, Any]:
    return await ensure_plugin(api, "echo1", "sdk_echo", {"echo/greeting": "from-instance",
                                                           "echo/delay": 0.01})


async def machine(api: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    r = await api.post("/machines", json={"Name": name, **fields})
    assert r.status_code == 201, r.text
    return r.json()


async def test_param_precedence(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    await api.post("/params", json={"Name": "echo/delay", "Schema": {"type": "number",
                                                                     "default": 0.5}})
    await api.post("/profiles", json={"Name": "prof-a", "Params": {"echo/greeting": "from-profile-a"}})
    await api.post("/profiles", json={"Name": "prof-b", "Params": {"echo/greeting": "from-profile-b"}})
    m = await machine(api, "prec", Profiles=["prof-a", "prof-b"],
                      Params={"echo/greeting": "from-machine"})
    url = f"/machines/{m['Uuid']}/actions/echo"

    async def greeting(**posted: Any) -> Any:
        r = await api.post(url, json=posted)
        assert r.status_code == 200, r.text
        return r.json()["Params"]["echo/greeting"]

    assert await greeting(**{"echo/greeting": "from-call"}) == "from-call"
    assert await greeting() == "from-machine"
    await api.delete(f"/machines/{m['Uuid']}/params/echo/greeting")
    assert await greeting() == "from-profile-a"
    await api.patch(f"/machines/{m['Uuid']}", json={"Profiles": ["prof-b"]},
                    headers={"Content-Type": "application/merge-patch+json"})
    assert await greeting() == "from-profile-b"
    await api.patch(f"/machines/{m['Uuid']}", json={"Profiles": []},
                    headers={"Content-Type": "application/merge-patch+json"})
    assert await greeting() == "from-instance"
    # an optional param nobody sets comes from the schema default ... unless the instance has it
    r = await api.post(url, json={})
    assert r.json()["Params"]["echo/delay"] == 0.01
    # the provider got the whole machine and the call's identity
    body = r.json()
    assert body["Model"]["Uuid"] == m["Uuid"]


async def test_schema_default_and_required(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    await ensure_plugin(api, "echo-bare", "sdk_echo", {"echo/greeting": "x"})
    m = await machine(api, "req")
    # two instances offer echo: the caller must choose
    r = await api.post(f"/machines/{m['Uuid']}/actions/echo", json={})
    assert r.status_code == 409 and "echo-bare" in r.json()["Messages"][0]
    r = await api.post(f"/machines/{m['Uuid']}/actions/echo?plugin=echo-bare", json={})
    assert r.status_code == 200, r.text
    # instance echo-bare has no echo/delay: the schema default fills it
    await api.post("/params", json={"Name": "echo/delay", "Schema": {"type": "number",
                                                                     "default": 0.5}})
    r = await api.post(f"/machines/{m['Uuid']}/actions/echo?plugin=echo-bare", json={})
    assert r.json()["Params"]["echo/delay"] == 0.5
    await api.delete("/plugins/echo-bare")


async def test_stdlib_provider_system_action(api: httpx.AsyncClient) -> None:
    await ensure_plugin(api, "plain1", "plain_provider", {})
    r = await api.post("/system/actions/ping", json={"plain/delay": 0})
    assert r.status_code == 200 and r.json()["Pong"] is True
    assert r.json()["Name"] == "plain1"


async def test_missing_required_is_422(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    m = await machine(api, "missing")
    r = await api.post(f"/machines/{m['Uuid']}/actions/target", json={})
    assert r.status_code == 422 and "echo/target" in r.json()["Messages"][0]
    r = await api.post(f"/machines/{m['Uuid']}/actions/target", json={"echo/target": "t"})
    assert r.status_code == 200 and r.json()["Params"] == {"echo/target": "t"}


async def test_schema_failure_refused(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    await api.post("/params", json={"Name": "echo/target",
                                     "Schema": {"type": "string", "maxLength": 20}})
    m = await machine(api, "schema")
    r = await api.post(f"/machines/{m['Uuid']}/actions/target",
                       json={"echo/target": "x" * 50})
    assert r.status_code == 422 and "echo/target" in r.json()["Messages"][0]
    # and a machine cannot store such a value either
    r = await api.post(f"/machines/{m['Uuid']}/params/echo/target", json="x" * 50)
    assert r.status_code == 422


async def test_listing_and_show(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    m = await machine(api, "listing")
    listed = (await api.get(f"/machines/{m['Uuid']}/actions")).json()
    commands = {(a["Provider"], a["Command"]) for a in listed}
    assert {("sdk_echo", "echo"), ("sdk_echo", "sleep"), ("sdk_echo", "fail")} <= commands
    assert all(a["Model"] == "machines" for a in listed)
    one = (await api.get(f"/machines/{m['Uuid']}/actions/sdk_echo:echo")).json()
    assert one["Command"] == "echo" and one["RequiredParams"] == ["echo/greeting"]
    assert (await api.get(f"/machines/{m['Uuid']}/actions/nope")).status_code == 404
    system = (await api.get("/system/actions")).json()
    assert ("sdk_echo", "status") in {(a["Provider"], a["Command"]) for a in system}
    own = (await api.get("/plugins/echo1/actions")).json()
    assert [a["Command"] for a in own] == ["whoami"]


async def test_plugin_and_system_actions(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    r = await api.post("/plugins/echo1/actions/whoami")
    assert r.status_code == 200 and r.json() == {"Name": "echo1", "Plugin": "echo1",
                                                 "CommandSet": "sdk_echo"}
    r = await api.post("/system/actions/sdk_echo:status")
    assert r.status_code == 200 and "Objects" in r.json()


async def test_errors_404_503_504_and_provider_error(api: httpx.AsyncClient,
                                                     echo: dict[str, Any]) -> None:
    m = await machine(api, "errors")
    base = f"/machines/{m['Uuid']}/actions"
    r = await api.post(f"{base}/no-such-command")
    assert r.status_code == 404 and r.json()["Code"] == 404
    r = await api.post(f"{base}/fail")
    assert r.status_code == 418 and r.json()["Messages"] == ["I'm a teapot"]
    r = await api.post(f"{base}/sleep", json={"echo/delay": 5})
    assert r.status_code == 504 and "within 2 s" in r.json()["Messages"][0]
    # the slow call did not block others
    r = await api.post(f"{base}/echo")
    assert r.status_code == 200
    # an instance that is not available answers 503
    await api.post("/plugins", json={"Name": "down", "Provider": "sdk_echo"})
    r = await api.post(f"{base}/echo?plugin=down")
    assert r.status_code == 503 and "not available" in r.json()["Messages"][0]
    await api.delete("/plugins/down")
    r = await api.post(f"{base}/echo", content=b"[1,2]")
    assert r.status_code == 400


async def test_hundred_concurrent_actions(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    m = await machine(api, "concurrent")
    url = f"/machines/{m['Uuid']}/actions/sleep"
    statuses: list[int] = []

    async def one() -> None:
        r = await api.post(url, json={"echo/delay": 0.5})
        statuses.append(r.status_code)

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(one)
    elapsed = time.monotonic() - started
    assert statuses == [200] * 100
    # one sleep, not a hundred: generous for a loaded 2-core machine
    assert elapsed < 0.5 * 10, elapsed


async def test_crash_during_action_is_503_then_recovers(api: httpx.AsyncClient,
                                                       echo: dict[str, Any]) -> None:
    m = await machine(api, "crash")
    r = await api.post(f"/machines/{m['Uuid']}/actions/crash")
    assert r.status_code == 503
    p = await wait_plugin(api, "echo1", lambda p: p["Available"] and
                          p["Runtime"]["Pid"] != echo["Runtime"]["Pid"])
    assert any("exit status 3" in e for e in p["PluginErrors"])


async def test_actions_finish_during_restart(api: httpx.AsyncClient, echo: dict[str, Any]) -> None:
    """An action in flight when its instance restarts gets the grace period to finish."""
    m = await machine(api, "grace")
    results: list[int] = []

    async def slow() -> None:
        r = await api.post(f"/machines/{m['Uuid']}/actions/sleep", json={"echo/delay": 0.8})
        results.append(r.status_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow)
        await wait_plugin(api, "echo1", lambda p: p["Runtime"]["InFlight"] == 1)
        r = await api.post("/plugins/echo1/restart")
        assert r.status_code == 200
    assert results == [200]


async def test_secure_params(api: httpx.AsyncClient, drpd: DrpdProcess,
                             echo: dict[str, Any]) -> None:
    await api.post("/params", json={"Name": "echo/secret", "Secure": True,
                                    "Schema": {"type": "string", "minLength": 4}})
    m = await machine(api, "secure", Params={"echo/secret": "hunter22"})
    sealed = m["Params"]["echo/secret"]
    assert set(sealed) == {"SecureData"} and "hunter22" not in str(sealed)
    shown = (await api.get(f"/machines/{m['Uuid']}", params={"decode": "true"})).json()
    assert shown["Params"]["echo/secret"] == "hunter22"
    assert (await api.get(f"/machines/{m['Uuid']}/params/echo/secret",
                          params={"decode": "true"})).json() == "hunter22"
    # the schema applies to the clear value
    r = await api.post(f"/machines/{m['Uuid']}/params/echo/secret", json="abc")
    assert r.status_code == 422
    # an object read and written back keeps its secret
    plain = (await api.get(f"/machines/{m['Uuid']}")).json()
    assert (await api.put(f"/machines/{m['Uuid']}", json=plain)).status_code == 200
    # never in clear on disk
    db = (drpd.state_dir / "drpd.db").read_bytes() + (drpd.state_dir / "drpd.db-wal").read_bytes()
    assert b"hunter22" not in db
    # providers get clear text in the action's Model (the machine as a provider sees it)
    r = await api.post(f"/machines/{m['Uuid']}/actions/echo")
    assert r.json()["Model"]["Params"]["echo/secret"] == "hunter22"
