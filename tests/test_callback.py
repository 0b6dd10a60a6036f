"""The callback provider against a real local receiver: send, template, auth, retries, events."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from .e2e.test_walkthrough import Receiver
from .helpers import api_client, serving
from .plugin_helpers import wait_for

CALLBACK = Path(__file__).parent.parent / "drpd" / "providers" / "callback.py"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as server:
        yield server


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


# -- upstream's callbackDo: named callbacks and auths, data-override templates,
# response shapes, retries, the taskcomplete hook and its guard (issue 14) ------
class Hook(http.server.ThreadingHTTPServer):
    """Records every request; ``/token`` hands out numbered tokens."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.tokens = 0
        self.fail_next = 0
        self.fail_status = 500
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/token"):
                    hook.tokens += 1
                    self._send(200, {"token": f"tok-{hook.tokens}", "expires": 3600})
                    return
                if hook.fail_next > 0:
                    hook.fail_next -= 1
                    self._send(hook.fail_status, {"error": "not now"})
                    return
                hook.seen.append((self.command, self.path, dict(self.headers), body))
                self._send(200, {"got": len(body)})

            do_POST = do_PUT = do_GET = _any  # noqa: N815

            def _send(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    with serving(Hook()) as server:
        yield server


async def named(api: httpx.AsyncClient, name: str, callbacks: dict[str, Any],
                auths: dict[str, Any] | None = None) -> None:
    await api.delete(f"/plugins/{name}")
    params: dict[str, Any] = {"callback/callbacks": callbacks}
    if auths:
        params["callback/auths"] = auths
    r = await api.post("/plugins", json={"Name": name, "Provider": "callback", "Params": params})
    assert r.status_code == 201 and r.json()["Available"], r.text


async def do(api: httpx.AsyncClient, uuid: str, plugin: str, **params: Any) -> httpx.Response:
    return await api.post(f"/machines/{uuid}/actions/callbackDo?plugin={plugin}", json=params)


async def test_basic_auth_aggregate_exclude_and_json_response(
        api: httpx.AsyncClient, hook: Hook) -> None:
    await api.post("/profiles", json={"Name": "cbd-prof", "Params": {"from/profile": "p"}})
    await named(api, "cbd1", {"built": {
        "Url": f"{hook.url}/built", "Method": "PUT", "Auth": "me", "Aggregate": True,
        "ExcludeParams": ["secret/thing"], "JsonResponse": True,
        "Headers": {"X-Site": "lab"}}},
        auths={"me": {"AuthType": "basic", "Username": "u", "Password": "p w"}})
    m = (await api.post("/machines", json={
        "Name": "cbd-m1", "Profiles": ["cbd-prof"],
        "Params": {"own/param": 1, "secret/thing": "hide"}})).json()
    r = await do(api, m["Uuid"], "cbd1", **{"callback/action": "built"})
    assert r.status_code == 200, r.text
    method, path, headers, body = hook.seen[-1]
    assert (method, path) == ("PUT", "/built")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p w").decode()
    assert headers["X-Site"] == "lab" and headers["Content-Type"].startswith("application/json")
    sent = json.loads(body)
    assert sent["Uuid"] == m["Uuid"] and sent["Name"] == "cbd-m1"
    assert sent["Params"]["own/param"] == 1 and sent["Params"]["from/profile"] == "p"
    assert "secret/thing" not in sent["Params"]
    assert r.json() == {"got": len(body)}  # JsonResponse: the answer parsed


async def test_json_token_is_fetched_once_and_answers_shapes(
        api: httpx.AsyncClient, hook: Hook) -> None:
    await named(api, "cbd2", {
        "text": {"Url": f"{hook.url}/t", "Auth": "tok", "StringResponse": True},
        "bytes": {"Url": f"{hook.url}/b", "Auth": "tok"}},
        auths={"tok": {"AuthType": "json-token", "Url": f"{hook.url}/token",
                       "TokenField": "token", "DurationField": "expires"}})
    m = (await api.post("/machines", json={"Name": "cbd-m2"})).json()
    r = await do(api, m["Uuid"], "cbd2", **{"callback/action": "text"})
    assert r.status_code == 200 and r.json().startswith('{"got": '), r.text
    assert hook.seen[-1][2]["Authorization"] == "Bearer tok-1"
    r = await do(api, m["Uuid"], "cbd2", **{"callback/action": "bytes"})
    # neither JsonResponse nor StringResponse: the bytes as Go's encoder writes them
    assert json.loads(base64.b64decode(r.json()))["got"] > 0
    assert hook.tokens == 1 and hook.seen[-1][2]["Authorization"] == "Bearer tok-1"


async def test_data_override_templates(api: httpx.AsyncClient, hook: Hook) -> None:
    await named(api, "cbd3", {"json": {"Url": f"{hook.url}/j"},
                                 "raw": {"Url": f"{hook.url}/r", "RawBody": True},
                                 "none": {"Url": f"{hook.url}/n", "NoBody": True}})
    m = (await api.post("/machines", json={"Name": "cbd-m3.lab", "Params": {"x": [1, 2]}})).json()
    template = ('{"name": "{{.Machine.ShortName}}", "id": "{{.Machine.UUID}}", '
                '"x": {{.ParamAsJSON "x"}}, "files": "{{.ProvisionerURL}}"}')
    r = await do(api, m["Uuid"], "cbd3", **{"callback/action": "json",
                                            "callback/data-override": template})
    assert r.status_code == 200, r.text
    sent = json.loads(hook.seen[-1][3])
    assert sent["name"] == "cbd-m3" and sent["id"] == m["Uuid"] and sent["x"] == [1, 2]
    assert sent["files"].startswith("http://") and sent["files"].split(":")[-1] != "0"
    r = await do(api, m["Uuid"], "cbd3", **{"callback/action": "raw",
                                            "callback/data-override": "host={{.Machine.Name}}"})
    assert hook.seen[-1][3] == b"host=cbd-m3.lab"
    r = await do(api, m["Uuid"], "cbd3", **{"callback/action": "json",
                                            "callback/data-override": {"fixed": True}})
    assert json.loads(hook.seen[-1][3]) == {"fixed": True}
    r = await do(api, m["Uuid"], "cbd3", **{"callback/action": "none"})
    assert r.status_code == 200 and hook.seen[-1][3] == b""
    r = await do(api, m["Uuid"], "cbd3", **{"callback/action": "json",
                                            "callback/data-override": "{{.Env.HOME}}"})
    assert r.status_code == 422 and "not supported" in r.json()["Messages"][0]


async def test_unknown_action_retries_and_failures(api: httpx.AsyncClient, hook: Hook) -> None:
    await named(api, "cbd4", {"flaky": {"Url": f"{hook.url}/f", "Retry": 2},
                                 "once": {"Url": f"{hook.url}/o"}})
    m = (await api.post("/machines", json={"Name": "cbd-m4"})).json()
    r = await do(api, m["Uuid"], "cbd4", **{"callback/action": "nope"})
    assert r.status_code == 200
    assert r.json() == "Callback attempted, but skipped because action unknown: nope"
    hook.fail_next = 2
    r = await do(api, m["Uuid"], "cbd4", **{"callback/action": "flaky"})
    assert r.status_code == 200 and hook.seen[-1][1] == "/f"
    hook.fail_next, hook.fail_status = 1, 404
    r = await do(api, m["Uuid"], "cbd4", **{"callback/action": "once"})
    assert r.status_code == 404 and "Callback API returned 404" in r.json()["Messages"][0]
    r = await api.post(f"/machines/{m['Uuid']}/actions/callbackDo?plugin=cbd4")
    assert r.status_code == 422 and "callback/action" in r.json()["Messages"][0]


async def test_instance_needs_url_or_callbacks(api: httpx.AsyncClient) -> None:
    r = await api.post("/plugins", json={"Name": "cbd5", "Provider": "callback"})
    assert not r.json()["Available"]
    assert "callback/url or callback/callbacks" in " ".join(r.json()["Errors"])
    r = await api.post("/plugins", json={"Name": "cbd6", "Provider": "callback", "Params": {
        "callback/callbacks": {"a": {"Url": "ftp://x"}}}})
    assert not r.json()["Available"] and "http(s)" in " ".join(r.json()["Errors"])


async def test_taskcomplete_fires_only_for_machines_with_tasks(
        api: httpx.AsyncClient, hook: Hook) -> None:
    await named(api, "cbd7", {"taskcomplete": {"Url": f"{hook.url}/done"}})
    idle = (await api.post("/machines", json={"Name": "cbd-idle"})).json()
    busy = (await api.post("/machines", json={"Name": "cbd-busy", "Tasks": ["a", "b"],
                                              "CurrentTask": 1})).json()
    await api.patch(f"/machines/{idle['Uuid']}", json={"Description": "no tasks, none done"})
    await api.patch(f"/machines/{busy['Uuid']}", json={"CurrentTask": 2})

    def done() -> list[str]:
        return [json.loads(b)["Name"] for _, p, _, b in hook.seen if p == "/done"]

    # events reach the provider in order: once the busy machine's arrived,
    # the idle one's update (made before) was looked at and skipped
    await wait_for(lambda: "cbd-busy" in done(), 10)
    assert done() == ["cbd-busy"]
