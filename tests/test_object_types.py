"""StoreObjects types, content bundles and read-only objects, with the incrementer provider."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import wait_plugin

INCREMENTER = Path(__file__).parent.parent / "drpd" / "providers" / "incrementer.py"


@pytest.fixture
def drpd(tmp_path: Path) -> Iterator[DrpdProcess]:
    state = tmp_path / "state"
    (state / "plugins").mkdir(parents=True)
    shutil.copy(INCREMENTER, state / "plugins" / "incrementer")
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2"}) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def test_autostart_actions_and_store_objects(api: httpx.AsyncClient) -> None:
    # AutoStart made an instance named like the provider
    await wait_plugin(api, "incrementer", lambda p: p["Available"])
    m = (await api.post("/machines", json={"Name": "inc1"})).json()
    url = f"/machines/{m['Uuid']}/actions/increment"
    r = await api.post(url)
    assert r.status_code == 200, r.text
    assert r.json() == {"Parameter": "incrementer/count", "Value": 1}
    r = await api.post(url, json={"incrementer/step": 5})
    assert r.json()["Value"] == 6
    assert (await api.get(f"/machines/{m['Uuid']}/params/incrementer/count")).json() == 6
    # the provider counted its calls in its own object type, through the REST API
    counter = (await api.get("/incrementers/incrementer-count")).json()
    assert counter == {"Id": "incrementer-count", "Calls": 2, "Parameter": "incrementer/count",
                       "Type": "incrementers"}
    # and reads them back over its server socket
    status = (await api.post("/system/actions/incrstatus")).json()
    assert status["Counters"] == {"incrementer-count": 2}
    # the content bundle's profile and param schema take part
    await api.patch(f"/machines/{m['Uuid']}", json={"Profiles": ["incrementer-by-ten"]},
                    headers={"Content-Type": "application/merge-patch+json"})
    assert (await api.post(url)).json()["Value"] == 16
    r = await api.post(url, json={"incrementer/step": "lots"})
    assert r.status_code == 422 and "incrementer/step" in r.json()["Messages"][0]
    assert (await api.post(f"/machines/{m['Uuid']}/actions/reset_count")).json()["Value"] == 0


async def test_store_objects_rest_surface(api: httpx.AsyncClient) -> None:
    r = await api.post("/incrementers", json={"Id": "manual", "Calls": 3})
    assert r.status_code == 201 and r.json()["Type"] == "incrementers"
    assert (await api.post("/incrementers", json={"Id": "manual"})).status_code == 409
    r = await api.post("/incrementers", json={"Id": "bad", "Calls": -1})
    assert r.status_code == 422 and "Calls" in r.json()["Messages"][0]
    r = await api.post("/incrementers", json={"Calls": 1})
    assert r.status_code == 422 and "Id" in r.json()["Messages"][0]
    r = await api.post("/incrementers", json={"Id": "wrongtype", "Type": "other"})
    assert r.status_code == 422
    r = await api.patch("/incrementers/manual", json={"Calls": 4},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["Calls"] == 4
    r = await api.put("/incrementers/manual", json={"Id": "manual", "Calls": 7, "Extra": "ok"})
    assert r.status_code == 200 and r.json()["Extra"] == "ok"
    assert [o["Id"] for o in (await api.get("/incrementers", params={"Calls": "7"})).json()] == [
        "manual"]
    assert (await api.delete("/incrementers/manual")).json()["Calls"] == 7


async def test_content_bundle_is_read_only_and_follows_provider(api: httpx.AsyncClient,
                                                               drpd: DrpdProcess) -> None:
    summaries = (await api.get("/contents")).json()
    assert [s["meta"]["Name"] for s in summaries] == ["incrementer"]
    assert summaries[0]["Counts"] == {"params": 3, "profiles": 1}
    param = (await api.get("/params/incrementer/step")).json()
    assert param["ReadOnly"] is True and param["Bundle"] == "incrementer"
    r = await api.patch("/params/incrementer/step", json={"Description": "mine"},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 403
    assert (await api.delete("/profiles/incrementer-by-ten")).status_code == 403
    # a user bundle whose objects clash is refused with the clash named, changing nothing
    clash = {"meta": {"Name": "mine"}, "sections": {"profiles": {"incrementer-by-ten": {
        "Name": "incrementer-by-ten"}}, "tasks": {"t-mine": {"Name": "t-mine"}}}}
    r = await api.post("/contents", json=clash)
    assert r.status_code == 409 and "incrementer-by-ten" in r.json()["Messages"][0]
    assert "content bundle incrementer" in r.json()["Messages"][0]
    assert (await api.get("/tasks/t-mine")).status_code == 404
    # a user bundle installs, replaces and removes its objects atomically
    ok = {"meta": {"Name": "mine", "Version": "1"}, "sections": {"tasks": {
        "t1": {"Name": "t1"}, "t2": {"Name": "t2"}}}}
    assert (await api.post("/contents", json=ok)).status_code == 201
    assert (await api.get("/tasks/t1")).json()["ReadOnly"] is True
    ok["sections"] = {"tasks": {"t2": {"Name": "t2", "Description": "v2"}},
                      "templates": {"tm": {"ID": "tm", "Contents": "x"}}}
    assert (await api.put("/contents/mine", json=ok)).status_code == 200
    assert (await api.get("/tasks/t1")).status_code == 404
    assert (await api.get("/tasks/t2")).json()["Description"] == "v2"
    assert (await api.get("/templates/tm")).json()["Contents"] == "x"
    assert (await api.delete("/contents/mine")).status_code == 200
    assert (await api.get("/tasks/t2")).status_code == 404
    # removing the provider removes its bundle and keeps its objects, read-only
    await api.post("/incrementers", json={"Id": "kept", "Calls": 1})
    assert (await api.delete("/plugin_providers/incrementer")).status_code == 200
    assert (await api.get("/contents")).json() == []
    assert (await api.get("/params/incrementer/step")).status_code == 404
    assert (await api.get("/incrementers/kept")).json()["Calls"] == 1
    r = await api.post("/incrementers", json={"Id": "new"})
    assert r.status_code == 405
    # declared again: writable again
    r = await api.post("/plugin_providers/incrementer", content=INCREMENTER.read_bytes())
    assert r.status_code == 201, r.text
    assert (await api.post("/incrementers", json={"Id": "new"})).status_code == 201


async def test_store_objects_survive_restart_read_only_without_provider(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    await api.post("/incrementers", json={"Id": "persist", "Calls": 2})
    drpd.stop()
    (drpd.state_dir / "plugins" / "incrementer").unlink()
    drpd.start()
    async with api_client(drpd) as fresh:
        assert (await fresh.get("/incrementers/persist")).json()["Calls"] == 2
        r = await fresh.patch("/incrementers/persist", json={"Calls": 3},
                              headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 405


def test_drpcli_contents_upload(drpd: DrpdProcess, tmp_path: Path) -> None:
    import json
    import subprocess

    bundle = tmp_path / "mine.yaml"
    bundle.write_text("meta:\n  Name: mine\n  Version: '1'\nsections:\n  tasks:\n    t9:\n"
                      "      Name: t9\n")

    def drpcli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["drpcli", *args], capture_output=True, text=True,
                              env=drpd.env, timeout=60)

    first = drpcli("contents", "upload", str(bundle))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["meta"]["Name"] == "mine"
    bundle.write_text("meta:\n  Name: mine\n  Version: '2'\nsections:\n  tasks:\n    t10:\n"
                      "      Name: t10\n")
    again = drpcli("contents", "upload", str(bundle))
    assert again.returncode == 0, again.stderr
    tasks = json.loads(drpcli("tasks", "list").stdout)
    assert [t["Name"] for t in tasks] == ["t10"] and tasks[0]["ReadOnly"]
    names = json.loads(drpcli("contents", "list").stdout)
    assert "mine" in [c["meta"]["Name"] for c in names]
    gone = drpcli("contents", "destroy", "mine")
    assert gone.returncode == 0 and json.loads(drpcli("tasks", "list").stdout) == []
    bad = drpcli("contents", "upload", "-")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
