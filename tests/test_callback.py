"""The callback provider against a real local receiver: send, template, auth, retries, events."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .e2e.test_walkthrough import Receiver
from .helpers import api_client
from .plugin_helpers import wait_for

CALLBACK = Path(__file__).parent.parent / "drpd" / "providers" / "callback.py"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    import threading

    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("callback") / "state"
    (state / "plugins").mkdir(parents=True)
    shutil.copy(CALLBACK, state / "plugins" / "callback")
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2"}) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def instance(api: httpx.AsyncClient, name: str, **params: object) -> None:
    await api.delete(f"/plugins/{name}")
    r = await api.post("/plugins", json={"Name": name, "Provider": "callback", "Params": params})
    assert r.json()["Available"], r.text


async def test_send_template_and_auth(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await instance(api, "cb1", **{"callback/url": f"{receiver.url}/hook",
                                  "callback/auth": {"Type": "bearer", "Token": "s3cret"}})
    m = (await api.post("/machines", json={"Name": "cbm", "Address": "10.1.2.3"})).json()
    r = await api.post(f"/machines/{m['Uuid']}/actions/send?plugin=cb1")
    assert r.status_code == 200 and r.json()["Status"] == 200
    path, body = receiver.posts[-1]
    assert path == "/hook" and body["Uuid"] == m["Uuid"]
    assert receiver.headers[-1]["Authorization"] == "Bearer s3cret"
    # the secure auth param is not shown in clear
    shown = (await api.get("/plugins/cb1")).json()["Params"]["callback/auth"]
    assert "s3cret" not in str(shown)
    r = await api.post(f"/machines/{m['Uuid']}/actions/send?plugin=cb1",
                       json={"callback/template": {"host": "{{.Name}}", "ip": "{{.Address}}",
                                                   "fixed": 1}})
    assert receiver.posts[-1][1] == {"host": "cbm", "ip": "10.1.2.3", "fixed": 1}


async def test_retries_then_reports(api: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.fail_next = 2
    await instance(api, "cb2", **{"callback/url": f"{receiver.url}/flaky",
                                  "callback/retries": 3})
    m = (await api.post("/machines", json={"Name": "cbr"})).json()
    r = await api.post(f"/machines/{m['Uuid']}/actions/send?plugin=cb2")
    assert r.status_code == 200 and r.json()["Attempts"] == 3
    await instance(api, "cb3", **{"callback/url": "http://127.0.0.1:9/nothing-listens",
                                  "callback/retries": 1, "callback/timeout": 1})
    r = await api.post(f"/machines/{m['Uuid']}/actions/send?plugin=cb3")
    assert r.status_code == 502 and "after 2 attempts" in r.json()["Messages"][0]


async def test_selected_events_are_posted(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await instance(api, "cb4", **{"callback/url": f"{receiver.url}/events",
                                  "callback/events": ["profiles.create.*"]})
    await api.post("/machines", json={"Name": "not-forwarded"})
    await api.post("/profiles", json={"Name": "forwarded"})

    def arrived() -> bool:
        return any(p == "/events" and b.get("Key") == "forwarded" for p, b in receiver.posts)

    await wait_for(arrived, 10)
    events = [b for p, b in receiver.posts if p == "/events"]
    assert all(e["Type"] == "profiles" for e in events)
    r = await api.post("/plugins", json={"Name": "cb5", "Provider": "callback", "Params": {
        "callback/url": receiver.url, "callback/events": ["not a pattern"]}})
    assert not r.json()["Available"]
    await trio.lowlevel.checkpoint()
