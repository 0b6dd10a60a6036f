"""A provider shaped like an upstream Go-SDK provider, end to end under a real drpd.

``providers/go_shaped.js`` (Node.js, standard library) speaks what DRP's Go
SDK speaks: ``listen`` only, every field Go's encoder writes, chunked answers
over 2 KB, a config that needs ``secure-param-upgrade`` from ``/info``, an
action that reads a param that is not set and creates it, and an event
selection over ``wss://``. The test uploads it, creates an instance, runs its
actions and reads everything back as a Go client would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import PROVIDERS, wait_for, wait_plugin

GO_SHAPED = PROVIDERS / "go_shaped.js"


@pytest.fixture
def drpd(tmp_path: Path) -> Iterator[DrpdProcess]:
    with DrpdProcess(tmp_path / "state", env={"DRPD_STOP_GRACE": "2"}) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def _action(api: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    r = await api.post(path, json=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_go_shaped_provider_installs_runs_and_round_trips(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    r = await api.post("/plugin_providers/go_shaped", content=GO_SHAPED.read_bytes())
    assert r.status_code == 201, r.text
    uploaded = r.json()
    # DRP's upload answer (Go's UploadPlugin reads path and size)
    assert uploaded["path"] == "/plugin_providers/go_shaped"
    assert uploaded["size"] == len(GO_SHAPED.read_bytes())
    # define ran with a token (docs/protocol.md), and so did unpack
    assert uploaded["Documentation"] == "define had RS_TOKEN"
    info = (await api.get("/info")).json()
    token_file = f"http://127.0.0.1:{info['file_port']}/files/plugin_providers/go_shaped/token.txt"
    assert (await api.get(token_file)).text == "yes"

    # presented as DRP: Meta from the content meta, Content only on request, Model "" kept
    shown = (await api.get("/plugin_providers/go_shaped")).json()
    assert shown["Content"] == ""
    assert shown["Meta"]["DisplayName"] == "Go Shaped" and shown["Meta"]["Type"] == "plugin"
    full = (await api.get("/plugin_providers/go_shaped", params={"content": "true"})).json()
    assert '"go-workflow"' in full["Content"]
    listed = (await api.get("/plugin_providers")).json()
    assert [p["Content"] for p in listed] == [""]
    models = {a["Command"]: a["Model"] for a in shown["AvailableActions"]}
    assert models == {"count": "machines", "events": ""}

    # its content: Go fields and unknown fields ignored, workflows and StoreObjects installed
    assert (await api.get("/workflows/go-workflow")).json()["Stages"] == ["go-stage"]
    assert (await api.get("/stages/go-stage")).json()["RunnerWait"] is True
    cow = (await api.get("/go-cows/bessie")).json()
    assert cow["Moo"] == 3 and cow["ReadOnly"] is True and cow["Bundle"] == "go_shaped"
    assert (await api.get("/params/go/counter")).json()["Bundle"] == "go_shaped"

    # an instance starts with `listen` after `serve` is refused, config reads /info
    r = await api.post("/plugins", json={"Name": "go1", "Provider": "go_shaped", "Params": None,
                                        "PluginErrors": None, "Meta": None, "Partial": False})
    assert r.status_code == 201, r.text
    plugin = await wait_plugin(api, "go1", lambda p: p["Available"])
    assert plugin["Errors"] == []

    machine = (await api.post("/machines", json={"Name": "gm1"})).json()
    uuid = machine["Uuid"]
    # the action reads a param that is not set (null) and creates it; chunked > 2 KB answers
    first = await _action(api, f"/machines/{uuid}/actions/count")
    assert first["Counter"] == 1 and first["WasNull"] is True and len(first["Padding"]) == 3000
    assert first["ProvisionerURL"] == f"http://{info['address']}:{info['file_port']}"
    second = await _action(api, f"/machines/{uuid}/actions/count")
    assert second["Counter"] == 2 and second["WasNull"] is False

    # the event selection over wss:// sees a PUT as `save`
    await wait_for(lambda: _ready(api))
    machine = (await api.get(f"/machines/{uuid}")).json()
    r = await api.put(f"/machines/{uuid}", json=dict(machine, Description="saved"))
    assert r.status_code == 200, r.text

    async def saw_save() -> bool:
        events = (await _action(api, "/system/actions/events"))["Events"]
        return {"Type": "machines", "Action": "save", "Key": uuid} in events

    await wait_for(saw_save)

    # read back as a Go client, PUT back unchanged: plugin, provider's objects, machine
    for path in (f"/machines/{uuid}", "/plugins/go1", "/profiles/go-profile"):
        current = (await api.get(path)).json()
        if path.startswith("/profiles"):
            r = await api.put(path, json=current)
            assert r.status_code == 403  # a content object is read-only, as in DRP
            continue
        r = await api.put(path, json=current)
        assert r.status_code == 200, (path, r.text)
        back = r.json()
        for field in set(current) - {"Runtime"}:
            assert back[field] == current[field], (path, field)
    with trio.fail_after(30):
        await wait_plugin(api, "go1", lambda p: p["Available"])


async def _ready(api: httpx.AsyncClient) -> bool:
    return bool((await _action(api, "/system/actions/events"))["Ready"])


async def test_without_tls_the_failing_instance_says_why(tmp_path: Path) -> None:
    """DRP's Go client dials wss:// for events: under --no-tls drpd says so."""
    with DrpdProcess(tmp_path / "state", no_tls=True, env={"DRPD_STOP_GRACE": "2"}) as plain:
        async with api_client(plain) as api:
            r = await api.post("/plugin_providers/go_shaped", content=GO_SHAPED.read_bytes())
            assert r.status_code == 201, r.text
            r = await api.post("/plugins", json={"Name": "go-plain", "Provider": "go_shaped"})
            assert r.status_code == 201, r.text
            plugin = await wait_plugin(api, "go-plain", lambda p: p["Errors"])
    assert plugin["Available"] is False
    assert any("event stream" in e for e in plugin["Errors"]), plugin["Errors"]
    assert any("wss://" in e and "--no-tls" in e for e in plugin["Errors"]), plugin["Errors"]
