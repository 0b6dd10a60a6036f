"""Roles and claims on a real drpd: every described route asks for a claim,
the claim it names is enough, and nobody can widen their own rights."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drpd.api.openapi import build
from drpd.models import KINDS
from drpd.testing import DrpdProcess
from tests.helpers import api_client

pytestmark = pytest.mark.trio

M1 = str(uuid.uuid4())
#: routes any authenticated principal may use (they show no stored data)
ANYONE = {("get", "/openapi.json"), ("get", "/indexes"), ("get", "/indexes/{prefix}"),
          ("get", "/healthz")}
#: what each path parameter is filled with
KEYS = {"machines": M1, "profiles": "p1", "params": "color", "users": "carol",
        "roles": "r1", "plugins": "nope", "plugin_providers": "nope",
        "contents": "nope", "tasks": "t1", "stages": "s1", "bootenvs": "b1",
        "templates": "tm1", "workflows": "w1"}
CLAIM = re.compile(r"needs claim scope=(\S+) action=(\S+) specific=(\S+)")


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    with DrpdProcess(tmp_path_factory.mktemp("roles") / "state", no_tls=True) as d:
        yield d


@pytest.fixture
async def admin(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


async def _user(admin: httpx.AsyncClient, name: str, roles: list[str]) -> None:
    r = await admin.get(f"/users/{name}")
    if r.status_code == 404:
        r = await admin.post("/users", json={"Name": name, "Password": f"{name}-pw",
                                              "Roles": roles})
        assert r.status_code == 201, r.text
    else:
        r = await admin.patch(f"/users/{name}", json={"Roles": roles})
        assert r.status_code == 200, r.text


async def _role(admin: httpx.AsyncClient, name: str, claims: list[dict[str, str]]) -> None:
    r = await admin.put(f"/roles/{name}", json={"Name": name, "Claims": claims})
    if r.status_code == 404:
        r = await admin.post("/roles", json={"Name": name, "Claims": claims})
    assert r.status_code in (200, 201), r.text


async def _seed(admin: httpx.AsyncClient) -> None:
    for path, body in (("/params", {"Name": "color", "Schema": {"type": "string"}}),
                       ("/params", {"Name": "pin", "Secure": True,
                                    "Schema": {"type": "string"}}),
                       ("/profiles", {"Name": "p1"}),
                       ("/machines", {"Uuid": M1, "Name": "m1", "Params": {"color": "red"}})):
        r = await admin.post(path, json=body)
        assert r.status_code in (201, 409), r.text
    await _user(admin, "carol", ["read-only"])
    await _role(admin, "r1", [])


def _fill(path: str) -> str:
    prefix = path.split("/")[1]
    key = KEYS.get(prefix, "k1")
    return (path.replace("{key}", key).replace("{name}", "color" if prefix != "catalog" else "x")
            .replace("{cmd}", "poweron").replace("{path}", "a.txt").replace("{prefix}", "machines"))


def _body(method: str, path: str) -> Any:
    if method == "patch":
        return {"Description": "by dave"}
    if method in ("put", "post") and path.endswith("/params/{name}"):
        return "blue"
    if method == "put" and path == "/users/{key}/password":
        return {"Password": "carol-pw2"}
    if method == "put":
        return None  # the current object, fetched by the admin
    return {}


def _routes() -> list[tuple[str, str]]:
    doc = build(KINDS, "test")
    found = [(method, path) for path, item in doc["paths"].items() for method in item
             if method in ("get", "put", "post", "patch", "delete")]
    # deletes last: they would take away what the other routes use
    return sorted(found, key=lambda mp: (mp[0] == "delete", mp[1], mp[0]))


async def test_every_route_asks_for_the_claim_it_names(
        drpd: DrpdProcess, admin: httpx.AsyncClient) -> None:
    """Table-driven from the OpenAPI description: a user without roles is
    refused with a 403 naming a claim; holding exactly the claims named
    (one, or two for a route that also needs e.g. updateSecure) lets the
    same request through."""
    await _seed(admin)
    await _role(admin, "dave-grants", [])
    await _user(admin, "dave", ["dave-grants"])
    checked = 0
    async with api_client(drpd, auth=("dave", "dave-pw")) as dave:
        for method, path in _routes():
            url = _fill(path)
            body = _body(method, path)
            if method == "put" and body is None:
                current = await admin.get(url)
                body = {**current.json(), "Description": "put by dave"} \
                    if current.status_code == 200 else {}
            r = await dave.request(method.upper(), url, json=body)
            if (method, path) in ANYONE:
                assert r.status_code != 403, (method, path, r.text)
                continue
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            grants: list[dict[str, str]] = []
            while r.status_code == 403 and len(grants) < 3:
                found = CLAIM.search(r.json()["Messages"][0])
                assert found, (method, path, r.text)
                scope, action, specific = found.groups()
                # a claim on this route's object type, not a catch-all
                assert "*" not in (scope, action), (method, path, found.group(0))
                if path.startswith(f"/{scope}/{{key}}"):
                    # (a param name may hold "/": params/color/actions is one key)
                    assert specific.split("/")[0] == KEYS[scope], (method, path, found.group(0))
                grants.append({"scope": scope, "action": action, "specific": specific})
                await _role(admin, "dave-grants", grants)
                r = await dave.request(method.upper(), url, json=body)
            assert r.status_code != 403, (method, path, grants, r.text)
            assert len(grants) <= 2, (method, path, grants)
            await _role(admin, "dave-grants", [])
            checked += 1
    assert checked > 60


async def test_read_only_and_operator(drpd: DrpdProcess, admin: httpx.AsyncClient) -> None:
    await _seed(admin)
    await _user(admin, "reader", ["read-only"])
    await _user(admin, "op", ["operator"])
    async with api_client(drpd, auth=("reader", "reader-pw")) as reader:
        assert (await reader.get(f"/machines/{M1}")).status_code == 200
        assert (await reader.get("/users")).status_code == 200
        for method, url, body in (
                ("PATCH", f"/machines/{M1}", {"Description": "x"}),
                ("POST", "/machines", {"Name": "m-reader"}),
                ("PUT", f"/machines/{M1}/params/color", "green"),
                ("DELETE", "/profiles/p1", None),
                ("POST", "/events", {"Type": "t", "Action": "a", "Key": "k"}),
                ("POST", "/users", {"Name": "x", "Roles": ["superuser"]}),
                ("PUT", "/files/x.txt", None)):
            r = await reader.request(method, url, json=body)
            assert r.status_code == 403, (method, url, r.text)
        # Secure params in clear need getSecure, which read-only lacks
        r = await reader.get(f"/machines/{M1}", params={"decode": "true"})
        assert r.status_code == 403 and "getSecure" in r.json()["Messages"][0]
    async with api_client(drpd, auth=("op", "op-pw")) as op:
        assert (await op.patch(f"/machines/{M1}", json={"Description": "by op"})).status_code == 200
        assert (await op.put(f"/machines/{M1}/params/pin", json="1234")).status_code == 200
        assert (await op.get(f"/machines/{M1}", params={"decode": "true"})).status_code == 403
        for method, url, body in (
                ("POST", "/users", {"Name": "op2", "Password": "x"}),
                ("PATCH", "/users/carol", {"Roles": ["operator"]}),
                ("PUT", "/users/carol/password", {"Password": "taken"}),
                ("POST", "/roles", {"Name": "mine", "Claims": []}),
                ("DELETE", "/roles/read-only", None),
                ("GET", "/users/carol/token", None),
                ("POST", "/plugin_providers/evil", None)):
            r = await op.request(method, url, json=body)
            assert r.status_code == 403, (method, url, r.text)


async def test_narrowed_tokens_and_self_service(
        drpd: DrpdProcess, admin: httpx.AsyncClient) -> None:
    await _seed(admin)
    await _user(admin, "fay", ["operator"])
    async with api_client(drpd, auth=("fay", "fay-pw")) as fay:
        # anybody may change its own password (it ends its tokens: done first)
        r = await fay.put("/users/fay/password", json={"Password": "fay-pw2"})
        assert r.status_code == 200, r.text
    async with api_client(drpd, auth=("fay", "fay-pw2")) as fay:
        # a token narrowed to reading machines
        r = await fay.get("/users/fay/token",
                          params={"scope": "machines", "action": "get,list", "specific": "*"})
        assert r.status_code == 200, r.text
        narrow = r.json()["Token"]
        # asking for more than fay holds drops it silently (DRP)
        r = await fay.get("/users/fay/token", params={"roles": "superuser"})
        wide = r.json()["Token"]
    async with api_client(drpd, auth=None,
                          headers={"Authorization": f"Bearer {narrow}"}) as token:
        assert (await token.get(f"/machines/{M1}")).status_code == 200
        assert (await token.get("/profiles/p1")).status_code == 403
        assert (await token.patch(f"/machines/{M1}", json={"Description": "t"})).status_code == 403
    async with api_client(drpd, auth=None,
                          headers={"Authorization": f"Bearer {wide}"}) as token:
        assert (await token.get(f"/machines/{M1}")).status_code == 403
    # a role taken away shrinks the tokens made with it at once
    async with api_client(drpd, auth=("fay", "fay-pw2")) as fay:
        full = (await fay.get("/users/fay/token")).json()["Token"]
    await _user(admin, "fay", [])
    async with api_client(drpd, auth=None,
                          headers={"Authorization": f"Bearer {full}"}) as token:
        assert (await token.get(f"/machines/{M1}")).status_code == 403
        assert (await token.get("/users/fay")).status_code == 200


async def test_roles_in_use_and_unknown(drpd: DrpdProcess, admin: httpx.AsyncClient) -> None:
    await _role(admin, "temp", [{"scope": "machines", "action": "get", "specific": "*"}])
    await _user(admin, "gus", ["temp"])
    r = await admin.delete("/roles/temp")
    assert r.status_code == 409 and "gus" in r.json()["Messages"][0]
    r = await admin.patch("/users/gus", json={"Roles": ["no-such-role"]})
    assert r.status_code == 422 and "no-such-role" in r.json()["Messages"][0]
    r = await admin.post("/roles", json={"Name": "bad", "Claims": [
        {"scope": "machines", "action": "fly", "specific": "*"}]})
    assert r.status_code == 422 and "fly" in r.json()["Messages"][0]
    listed = {r["Name"] for r in (await admin.get("/roles")).json()}
    assert {"superuser", "read-only", "operator", "temp"} <= listed


async def test_users_stored_before_roles_keep_superuser(tmp_path: Path) -> None:
    """An upgrade must not lock the administrator out: a stored user without
    ``Roles`` holds superuser, and keeps it through a change that omits it."""
    import sqlite3

    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as admin:
            r = await admin.post("/users", json={"Name": "old", "Password": "old-pw",
                                                 "Roles": ["superuser"]})
            assert r.status_code == 201
    db = sqlite3.connect(state / "drpd.db")
    try:
        rows = db.execute("SELECT key, data FROM objects WHERE prefix='users'").fetchall()
        assert rows
        for key, data in rows:
            text = data if isinstance(data, str) else data.decode()
            assert '"Roles":["superuser"]' in text
            text = text.replace(',"Roles":["superuser"]', "").replace('"Roles":["superuser"],', "")
            db.execute("UPDATE objects SET data=? WHERE prefix='users' AND key=?",
                       (text if isinstance(data, str) else text.encode(), key))
        db.commit()
    finally:
        db.close()
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd, auth=("old", "old-pw")) as old:
            shown = (await old.get("/users/old")).json()
            assert shown["Roles"] == ["superuser"]
            assert (await old.post("/machines", json={"Name": "m"})).status_code == 201
            r = await old.patch("/users/old", json={"Description": "still admin"})
            assert r.status_code == 200 and r.json()["Roles"] == ["superuser"]


async def test_websocket_shows_only_what_the_subscriber_may_get(
        drpd: DrpdProcess, admin: httpx.AsyncClient) -> None:
    from tests.ws_helpers import basic, connect, events

    await _seed(admin)
    await _role(admin, "m1-watcher", [{"scope": "machines", "action": "get", "specific": M1}])
    await _user(admin, "hal", ["m1-watcher"])
    other = (await admin.post("/machines", json={"Name": "m-hidden"})).json()["Uuid"]
    async with connect(drpd, headers=basic("hal", "hal-pw")) as ws:
        await ws.register("machines.*.*")
        await ws.register("marker.*.*")
        for uuid in (other, M1):
            r = await admin.patch(f"/machines/{uuid}", json={"Description": "seen?"})
            assert r.status_code == 200
        r = await admin.post("/events", json={"Type": "marker", "Action": "done", "Key": "k"})
        assert r.status_code == 200
        seen = events(await ws.until(lambda f: f.get("Type") == "marker"))
    assert [(f["Type"], f["Key"]) for f in seen] == [("machines", M1), ("marker", "k")]


async def test_read_only_changes_nothing_anywhere(drpd: DrpdProcess,
                                                  admin: httpx.AsyncClient) -> None:
    """Every write route of the OpenAPI description refuses a read-only user,
    and so does minting a token for someone else; an operator is refused
    every write to users and roles."""
    await _seed(admin)
    await _user(admin, "rita", ["read-only"])
    await _user(admin, "otto", ["operator"])

    async def snapshot() -> list[Any]:
        return [(await admin.get(path)).json()
                for path in (f"/machines/{M1}", "/users", "/roles", "/profiles", "/params")]

    before = await snapshot()
    async with api_client(drpd, auth=("rita", "rita-pw")) as rita, \
            api_client(drpd, auth=("otto", "otto-pw")) as otto:
        for method, path in _routes():
            writes = method != "get" or path == "/users/{key}/token"
            if not writes or (method, path) in ANYONE:
                continue
            url, body = _fill(path), _body(method, path)
            if method == "put" and body is None:
                body = {}
            r = await rita.request(method.upper(), url, json=body)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            if path.startswith(("/users", "/roles")):
                r = await otto.request(method.upper(), url, json=body)
                assert r.status_code == 403, (method, path, r.status_code, r.text)
    assert await snapshot() == before
