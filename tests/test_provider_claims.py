"""A provider's token holds what its work needs and nothing more: it may
write an object only while an action of its instance on that object is in
flight, and more only when the operator granted it on the instance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import install

pytestmark = pytest.mark.trio


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("provider-claims") / "state"
    install(state / "plugins", "sdk_prober")
    install(state / "plugins", "sdk_echo")
    with DrpdProcess(state, no_tls=True) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def _machine(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await api.post("/machines", json={"Name": name})
    assert r.status_code == 201, r.text
    return r.json()


async def _instance(api: httpx.AsyncClient, name: str, provider: str, **fields: Any) -> None:
    r = await api.post("/plugins", json={"Name": name, "Provider": provider, **fields})
    assert r.status_code == 201, r.text
    assert r.json()["Available"], r.json()


async def test_writes_only_the_object_its_action_runs_on(api: httpx.AsyncClient) -> None:
    await _instance(api, "prober", "sdk_prober")
    await _instance(api, "victim", "sdk_echo", Params={"echo/greeting": "hi"})
    m1, m2 = await _machine(api, "pm1"), await _machine(api, "pm2")
    r = await api.post(f"/machines/{m1['Uuid']}/actions/probe",
                       json={"probe/machine": m2["Uuid"]})
    assert r.status_code == 200, r.text
    assert r.json() == {
        # during the action, on its target
        "patch-target": 200, "param-target": 200, "decode-target": 200,
        # its own object type and events of its own
        "own-objects": 200, "post-event": 200,
        # reading is fine; writing anything else is not
        "read-other": 200, "patch-other": 403, "delete-target": 403,
        "create-user": 403, "list-users": 403, "token-admin": 403,
        "upload-provider": 403, "write-file": 403, "create-role": 403,
        "other-plugin": 403,
    }
    assert (await api.get(f"/machines/{m1['Uuid']}")).json()["Description"] == "probed"
    assert (await api.get(f"/machines/{m2['Uuid']}")).json()["Description"] == ""
    assert (await api.get("/plugins/victim")).status_code == 200
    assert (await api.get("/users/evil")).status_code == 404
    # outside an action on it, not even the machine it acted on before
    r = await api.post("/system/actions/probe-outside", json={"probe/machine": m1["Uuid"]})
    assert r.json() == {"patch-machine": 403}, r.text
    # the denials were counted and say who was refused
    metrics = (await api.get("/metrics")).text
    assert 'drpd_api_denied_total{action="update",scope="machines"}' in metrics


async def test_extra_claims_are_granted_by_the_operator(api: httpx.AsyncClient,
                                                        drpd: DrpdProcess) -> None:
    provider = (await api.get("/plugin_providers/sdk_prober")).json()
    assert provider["ExtraClaims"] == [{"scope": "users", "action": "list", "specific": "*"}]
    await _instance(api, "prober2", "sdk_prober",
                    ExtraClaims=[{"scope": "users", "action": "list", "specific": "*"}])
    m = await _machine(api, "pm3")
    r = await api.post(f"/machines/{m['Uuid']}/actions/probe?plugin=prober2",
                       json={"probe/machine": m["Uuid"]})
    assert r.json()["list-users"] == 200, r.text
    assert r.json()["create-user"] == 403
    # granting needs holding: a read-only operator cannot grant what it lacks
    r = await api.post("/users", json={"Name": "viewer", "Password": "viewer-pw",
                                       "Roles": ["read-only"]})
    assert r.status_code == 201, r.text
    r = await api.post("/roles", json={"Name": "plugin-admin", "Claims": [
        {"scope": "plugins", "action": "*", "specific": "*"}]})
    assert r.status_code == 201, r.text
    r = await api.patch("/users/viewer", json={"Roles": ["read-only", "plugin-admin"]})
    assert r.status_code == 200, r.text
    async with api_client(drpd, auth=("viewer", "viewer-pw")) as viewer:
        r = await viewer.patch("/plugins/prober2", json={"ExtraClaims": [
            {"scope": "*", "action": "*", "specific": "*"}]})
        assert r.status_code == 403 and "cannot grant" in r.json()["Messages"][0], r.text


async def test_a_raw_provider_token_is_least_privilege(tmp_path: Path) -> None:
    """The same bounds for a provider that speaks the protocol by hand (TLS
    on, as Go providers see drpd): reading works, writing outside an action
    on the object does not."""
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider", env={"DRPD_TEST_MODE": "token-probe"})
    with DrpdProcess(state) as drpd:
        async with api_client(drpd) as api:
            await _instance(api, "raw", "plain_provider")
            m = await _machine(api, "raw-m")
            r = await api.post("/system/actions/ping", json={"plain/machine": m["Uuid"]})
            assert r.status_code == 200, r.text
            assert r.json()["Probe"] == {"list-machines": 200, "create-user": 403,
                                         "patch-machine": 403, "token-admin": 403}
            assert (await api.get("/users/evil")).status_code == 404
