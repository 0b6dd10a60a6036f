"""DRP compatibility of the REST surface: what a Go client and Go-written content send.

DRP's Go client (``CreateModel``, ``PutModel``) and ``drpcli contents bundle``
write every field of a struct, with ``null`` for nil slices and maps, and
fields drpd has no use for. These tests send exactly that to a real drpd and
read back what a Go client would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from . import ws_helpers
from .helpers import api_client

ZERO_UUID_FIELDS = {"CurrentJob": "", "Address": ""}

#: a machine as Go's encoder writes a ``models.Machine`` with Name and Uuid set
GO_MACHINE: dict[str, Any] = {
    "Validated": False, "Available": False, "Errors": None, "ReadOnly": False,
    "Meta": None, "Endpoint": "", "Bundle": "", "Partial": False,
    "Name": "go-m1", "Description": "", "Uuid": "3e2b6d4c-5f1a-4c8e-9d7b-0a1b2c3d4e5f",
    "CurrentJob": "", "Address": "", "Stage": "", "BootEnv": "", "Profiles": None,
    "Params": None, "Tasks": None, "CurrentTask": 0, "RetryTaskAttempt": 0,
    "TaskErrorStacks": None, "Runnable": False, "Secret": "", "OS": "",
    "HardwareAddrs": None, "Workflow": "", "Arch": "", "Locked": False, "Context": "",
    "Fingerprint": {"SSNHash": None, "CSNHash": None, "CloudInstanceID": "", "SystemUUID": "",
                    "MemoryIds": None},
    "Pool": "", "PoolAllocated": False, "PoolStatus": "", "WorkflowComplete": False,
    "FieldOfANewerDRP": {"x": 1},
}

#: one object per kind, Go-shaped: null lists and maps, Endpoint/Bundle/Partial, an unknown field
GO_OBJECTS: dict[str, tuple[str, dict[str, Any]]] = {
    "profiles": ("go-p", {"Name": "go-p", "Partial": False, "Params": None, "Profiles": None,
                          "Documentation": "", "Endpoint": "", "Bundle": "", "Meta": None}),
    "params": ("go-param", {"Name": "go-param", "Schema": None, "Secure": False, "Endpoint": "",
                            "Bundle": "", "Errors": None}),
    "tasks": ("go-t", {"Name": "go-t", "Templates": [{"Name": "x", "Path": "", "Link": "",
                                                        "ID": "", "Contents": "echo", "Meta": None}],
                       "RequiredParams": None, "OptionalParams": None, "Prerequisites": None,
                       "ExtraClaims": [{"scope": "machines", "action": "get", "specific": "*"}],
                       "ExtraRoles": ["r"], "Endpoint": "", "Bundle": ""}),
    "stages": ("go-s", {"Name": "go-s", "Partial": False, "Tasks": None, "Templates": None,
                        "Params": None, "Profiles": None, "BootEnv": "", "RunnerWait": True}),
    "bootenvs": ("go-b", {"Name": "go-b", "OS": {"Name": "x", "SupportedArchitectures": None},
                          "Loaders": {"amd64-uefi": "shim"}, "Initrds": None,
                          "Templates": None}),
    "templates": ("go-tm", {"ID": "go-tm", "Contents": "{{.Machine.Name}}", "Endpoint": "",
                            "Bundle": ""}),
    "workflows": ("go-w", {"Name": "go-w", "Stages": ["go-s"], "Endpoint": "", "Bundle": ""}),
    "users": ("go-u", {"Name": "go-u", "Roles": None, "Secret": "", "Password": "pw1"}),
    "plugins": ("go-pl", {"Name": "go-pl", "Provider": "absent", "Params": None,
                          "PluginErrors": None, "Partial": False}),
}


@pytest.fixture
async def api(shared_drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared_drpd) as client:
        yield client


async def test_go_machine_is_accepted_and_put_back_unchanged(api: httpx.AsyncClient) -> None:
    r = await api.post("/machines", json=GO_MACHINE)
    assert r.status_code == 201, r.text
    machine = r.json()
    assert "FieldOfANewerDRP" not in machine
    # every field of DRP's Machine is there with its zero value, lists empty not null
    for field in ("Tasks", "HardwareAddrs", "Profiles", "TaskErrorStacks"):
        assert machine[field] == []
    assert machine["Params"] == {} and machine["Meta"] == {}
    assert machine["Fingerprint"]["CloudInstanceID"] == ""
    for field, zero in ZERO_UUID_FIELDS.items():
        assert machine[field] == zero
    # a Go client PUTs the whole struct back, server-owned fields included
    again = await api.put(f"/machines/{machine['Uuid']}", json=machine)
    assert again.status_code == 200, again.text
    assert {k: v for k, v in again.json().items()} == machine
    # server-owned fields a client sends are ignored
    claimed = dict(machine, Bundle="someone", ReadOnly=True, Errors=["x"], Partial=True)
    shown = (await api.put(f"/machines/{machine['Uuid']}", json=claimed)).json()
    assert shown["Bundle"] == "" and shown["ReadOnly"] is False and shown["Errors"] == []
    # wrong types are still refused
    r = await api.put(f"/machines/{machine['Uuid']}", json=dict(machine, Tasks="x"))
    assert r.status_code == 400 and "$.Tasks" in r.json()["Messages"][0]


@pytest.mark.parametrize("prefix", sorted(GO_OBJECTS))
async def test_go_objects_of_every_kind_round_trip(api: httpx.AsyncClient, prefix: str) -> None:
    key, obj = GO_OBJECTS[prefix]
    r = await api.post(f"/{prefix}", json=dict(obj, UnknownToDrpd=True))
    assert r.status_code == 201, r.text
    created = r.json()
    assert "UnknownToDrpd" not in created and created["Endpoint"] == ""
    assert not [k for k, v in created.items() if v is None and k != "Runtime"], created
    r = await api.put(f"/{prefix}/{key}", json=created)
    assert r.status_code == 200, r.text
    back = r.json()
    for field in set(created) - {"Runtime", "Available", "Errors", "PluginErrors"}:
        assert back[field] == created[field], field


async def test_locked_machine_refuses_changes_except_unlocking(api: httpx.AsyncClient) -> None:
    m = (await api.post("/machines", json={"Name": "locked1", "Locked": True})).json()
    uuid = m["Uuid"]
    r = await api.put(f"/machines/{uuid}", json=dict(m, Description="no"))
    assert r.status_code == 403 and "locked" in r.json()["Messages"][0]
    assert (await api.post(f"/machines/{uuid}/params/p", json=1)).status_code == 403
    assert (await api.delete(f"/machines/{uuid}")).status_code == 403
    assert (await api.get(f"/machines/{uuid}")).json()["Description"] == ""
    r = await api.patch(f"/machines/{uuid}", content=json.dumps({"Locked": False}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["Locked"] is False
    assert (await api.delete(f"/machines/{uuid}")).status_code == 200


async def test_machine_references_are_checked(api: httpx.AsyncClient) -> None:
    for field in ("Stage", "Workflow", "BootEnv"):
        r = await api.post("/machines", json={"Name": f"ref-{field.lower()}", field: "absent"})
        assert r.status_code == 422 and field in r.json()["Messages"][0], r.text
    await api.post("/bootenvs", json={"Name": "ref-be"})
    await api.post("/stages", json={"Name": "ref-st"})
    await api.post("/workflows", json={"Name": "ref-wf", "Stages": ["ref-st"]})
    r = await api.post("/machines", json={"Name": "ref-ok", "Stage": "ref-st",
                                          "Workflow": "ref-wf", "BootEnv": "ref-be"})
    assert r.status_code == 201, r.text


async def test_params_unset_null_aggregate_and_global(api: httpx.AsyncClient) -> None:
    assert (await api.get("/profiles/global")).status_code == 200
    assert (await api.delete("/profiles/global")).status_code == 403
    await api.post("/params", json={"Name": "agg/default", "Schema": {"type": "integer",
                                                                      "default": 7}})
    await api.post("/profiles", json={"Name": "agg-p", "Params": {"agg/profile": "p"}})
    await api.post("/profiles/global/params/agg/global", json="g")
    m = (await api.post("/machines", json={"Name": "agg-m", "Profiles": ["agg-p"],
                                           "Params": {"agg/own": 1}})).json()
    base = f"/machines/{m['Uuid']}/params"
    r = await api.get(f"{base}/agg/nothing")
    assert r.status_code == 200 and r.json() is None
    assert (await api.get(f"{base}/agg/profile")).json() is None
    aggregate = {"aggregate": "true"}
    assert (await api.get(f"{base}/agg/own", params=aggregate)).json() == 1
    assert (await api.get(f"{base}/agg/profile", params=aggregate)).json() == "p"
    assert (await api.get(f"{base}/agg/global", params=aggregate)).json() == "g"
    assert (await api.get(f"{base}/agg/default", params=aggregate)).json() == 7
    assert (await api.get(f"{base}/agg/nothing", params=aggregate)).json() is None
    every = (await api.get(base, params=aggregate)).json()
    assert every["agg/own"] == 1 and every["agg/profile"] == "p" and every["agg/global"] == "g"
    shown = (await api.get(f"/machines/{m['Uuid']}", params=aggregate)).json()
    assert shown["Params"] == every
    listed = (await api.get("/machines", params={"Name": "agg-m", "aggregate": "true"})).json()
    assert [m["Params"] for m in listed] == [every]
    assert (await api.get(f"/machines/{m['Uuid']}")).json()["Params"] == {"agg/own": 1}


async def test_put_publishes_save_patch_update(shared_drpd: DrpdProcess,
                                               api: httpx.AsyncClient) -> None:
    p = (await api.post("/profiles", json={"Name": "ev-p"})).json()
    # DRP's websocket auth form: ?token=<user>:<password>
    async with ws_helpers.connect(shared_drpd, "?token=rocketskates:r0cketsk8ts",
                                  headers=[]) as ws:
        await ws.ws.send_message("register profiles.*.ev-p")
        assert (await ws.next())["Action"] == "register"
        await api.put("/profiles/ev-p", json=dict(p, Description="put"))
        await api.patch("/profiles/ev-p", content=json.dumps({"Description": "patch"}),
                        headers={"Content-Type": "application/merge-patch+json"})
        with trio.fail_after(10):
            assert (await ws.next())["Action"] == "save"
            assert (await ws.next())["Action"] == "update"


async def test_info_in_drp_names(api: httpx.AsyncClient, shared_drpd: DrpdProcess) -> None:
    info = (await api.get("/info")).json()
    assert info["address"] == "127.0.0.1"
    assert info["api_port"] == int(shared_drpd.endpoint.rsplit(":", 1)[1])
    assert info["file_port"] > 0 and info["dhcp_enabled"] is False
    assert {"secure-param-upgrade", "api-v3"} <= set(info["features"])
    # what a Go-SDK provider builds from it: ProvisionerURL
    provisioner = f"http://{info['address']}:{info['file_port']}"
    r = await api.get(f"{provisioner}/files/")
    assert r.status_code in (200, 403, 404)


async def test_go_written_content_bundle_installs(api: httpx.AsyncClient) -> None:
    """``drpcli contents bundle`` output: every field, Endpoint/Bundle/Partial, typos, workflows."""
    common = {"Validated": True, "Available": True, "Errors": None, "ReadOnly": True,
              "Meta": {"color": "blue"}, "Endpoint": "", "Bundle": "go-pack"}
    bundle = {
        "meta": {"Name": "go-pack", "Version": "v1.2.3", "DisplayName": "Go pack",
                 "Icon": "cog", "RequiredFeatures": "", "Writable": False,
                 "Overwritable": False, "Documentaiton": "typo"},
        "sections": {
            "profiles": {"gp-prof": dict(common, Name="gp-prof", Partial=False, Params=None,
                                         Profiles=None)},
            "stages": {"gp-stage": dict(common, Name="gp-stage", Partial=False, Tasks=["gp-task"],
                                        Templates=None, BootEnv="local")},
            "tasks": {"gp-task": dict(common, Name="gp-task", ExtraClaims=None,
                                      ExtraRoles=None, Templates=[{"ID": "gp-tmpl",
                                                                   "Name": "t"}])},
            "templates": {"gp-tmpl": dict(common, ID="gp-tmpl", Contents="hi")},
            "bootenvs": {"gp-be": dict(common, Name="gp-be", Loaders={"x": "y"}, OS={})},
            "workflows": {"gp-wf": dict(common, Name="gp-wf", Stages=["gp-stage"])},
            "roles": {"gp-role": {"Name": "gp-role", "Claims": []}},
            "params": None,
        },
    }
    r = await api.post("/contents", json=bundle)
    assert r.status_code == 201, r.text
    wf = (await api.get("/workflows/gp-wf")).json()
    assert wf["Stages"] == ["gp-stage"] and wf["ReadOnly"] is True and wf["Bundle"] == "go-pack"
    assert (await api.get("/templates/gp-tmpl")).json()["ID"] == "gp-tmpl"
    assert (await api.get("/bootenvs/gp-be")).json()["Loaders"] == {"x": "y"}
    summary = [s for s in (await api.get("/contents")).json() if s["meta"]["Name"] == "go-pack"]
    assert summary[0]["meta"]["DisplayName"] == "Go pack"
    assert (await api.delete("/workflows/gp-wf")).status_code == 403
    assert (await api.delete("/contents/go-pack")).status_code == 200
    assert (await api.get("/workflows/gp-wf")).status_code == 404


async def test_no_tls_says_why_go_event_streams_fail(tmp_path: Any) -> None:
    with DrpdProcess(tmp_path / "state", no_tls=True) as plain:
        async with api_client(plain) as client:
            errors = (await client.get("/info")).json()["errors"]
    assert any("wss://" in e and "Go" in e for e in errors), errors


def test_event_patterns_take_drp_escapes() -> None:
    """DRP's Go client escapes a dot, comma or asterisk in a value as \\1, \\2, \\3."""
    from drpd.patterns import Pattern

    pattern = Pattern(r"machines,odd\2type.save.m1\1example\1com,star\3")
    assert pattern.matches("machines", "save", "m1.example.com")
    assert pattern.matches("odd,type", "save", "star*")
    assert not pattern.matches("machines", "save", "m1")
    assert Pattern("machines.*.*").matches("machines", "anything", "k")
