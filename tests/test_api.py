"""The REST surface of every prefix, through real HTTP to a real drpd."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from drpd.auth import Authenticator
from drpd.testing import DrpdProcess

from .helpers import api_client

# prefix -> (object to create, its key, a field to update, its new value)
SAMPLES: dict[str, tuple[dict[str, Any], str, str, Any]] = {
    "params": ({"Name": "callback/url", "Schema": {"type": "string"}}, "callback/url",
               "Description", "where to call"),
    "profiles": ({"Name": "p1", "Params": {"a": 1}}, "p1", "Description", "d"),
    "users": ({"Name": "u1", "Password": "secret"}, "u1", "Description", "d"),
    "plugins": ({"Name": "pl1", "Provider": "nope"}, "pl1", "Description", "d"),
    "contents": ({"meta": {"Name": "c1", "Version": "1.0"}, "sections": {}}, "c1", "sections",
                 {"tasks": {}}),
    "tasks": ({"Name": "t1"}, "t1", "Description", "d"),
    "stages": ({"Name": "s1", "Tasks": ["t1"]}, "s1", "Description", "d"),
    "bootenvs": ({"Name": "b1", "Kernel": "vmlinuz"}, "b1", "Description", "d"),
    "templates": ({"ID": "tm1", "Contents": "hello"}, "tm1", "Description", "d"),
    "workflows": ({"Name": "w1", "Stages": ["s1"]}, "w1", "Description", "d"),
}


@pytest.fixture
async def api(shared_drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared_drpd) as client:
        yield client


async def test_machine_crud(api: httpx.AsyncClient) -> None:
    r = await api.post("/machines", json={"Name": "crud1", "Params": {"x": 1}})
    assert r.status_code == 201, r.text
    machine = r.json()
    uuid = machine["Uuid"]
    assert len(uuid) == 36 and machine["Validated"] and r.headers["ETag"]
    assert (await api.get(f"/machines/{uuid}")).json() == machine
    assert (await api.get("/machines/Name:crud1")).json()["Uuid"] == uuid
    head = await api.head(f"/machines/{uuid}")
    assert head.status_code == 200 and head.content == b""
    assert (await api.head("/machines/Name:absent")).status_code == 404
    listed = (await api.get("/machines", params={"Name": "crud1"})).json()
    assert [m["Uuid"] for m in listed] == [uuid]

    put = dict(machine, Description="replaced")
    r = await api.put(f"/machines/{uuid}", json=put)
    assert r.status_code == 200 and r.json()["Description"] == "replaced"
    r = await api.patch(f"/machines/{uuid}", json=[{"op": "add", "path": "/Address", "value": "10.0.0.5"}],
                        headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["Address"] == "10.0.0.5"
    r = await api.patch(f"/machines/{uuid}", content=json.dumps({"Arch": "arm64", "Params": {"x": None}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["Arch"] == "arm64" and r.json()["Params"] == {}
    r = await api.delete(f"/machines/{uuid}")
    assert r.status_code == 200 and r.json()["Uuid"] == uuid
    assert (await api.get(f"/machines/{uuid}")).status_code == 404


@pytest.mark.parametrize("prefix", sorted(SAMPLES))
async def test_every_prefix_every_verb(api: httpx.AsyncClient, prefix: str) -> None:
    obj, key, field, value = SAMPLES[prefix]
    r = await api.post(f"/{prefix}", json=obj)
    assert r.status_code == 201, r.text
    created = r.json()
    assert "PasswordHash" not in created and "Password" not in created
    assert (await api.get(f"/{prefix}/{key}")).status_code == 200
    assert (await api.head(f"/{prefix}/{key}")).status_code == 200
    assert key in [_key(prefix, o) for o in (await api.get(f"/{prefix}")).json()]
    # duplicate create
    dup = await api.post(f"/{prefix}", json=obj)
    assert dup.status_code == 409 and dup.json()["Code"] == 409
    # PUT replaces
    replaced = dict(obj, **{field: value}) if prefix != "contents" else dict(obj, sections=value)
    r = await api.put(f"/{prefix}/{key}", json=replaced)
    assert r.status_code == 200, r.text
    assert r.json()[field] == value
    # JSON Patch and merge patch
    target = "/Description" if prefix != "contents" else "/meta/Description"
    r = await api.patch(f"/{prefix}/{key}", json=[{"op": "replace", "path": target, "value": "jp"}])
    assert r.status_code == 200, r.text
    merge = {"Description": "mp"} if prefix != "contents" else {"meta": {"Description": "mp"}}
    r = await api.patch(f"/{prefix}/{key}", content=json.dumps(merge),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    shown = r.json() if prefix != "contents" else r.json()["meta"]
    assert shown["Description"] == "mp"
    # DELETE answers the deleted object
    r = await api.delete(f"/{prefix}/{key}")
    assert r.status_code == 200 and _key(prefix, r.json()) == key
    assert (await api.get(f"/{prefix}/{key}")).status_code == 404
    assert (await api.delete(f"/{prefix}/{key}")).status_code == 404


def _key(prefix: str, obj: dict[str, Any]) -> str:
    if prefix == "contents":
        return obj["meta"]["Name"]
    return obj.get("ID", "") if prefix == "templates" else obj.get("Name", "")


async def test_plugin_providers_are_read_only(api: httpx.AsyncClient) -> None:
    assert (await api.get("/plugin_providers")).json() == []
    r = await api.post("/plugin_providers", json={"Name": "x"})
    assert r.status_code == 405 and r.json()["Code"] == 405


async def test_param_keys_with_slashes(api: httpx.AsyncClient) -> None:
    assert (await api.post("/params", json={"Name": "a/b/c"})).status_code == 201
    assert (await api.get("/params/a/b/c")).json()["Name"] == "a/b/c"
    assert (await api.get("/params/a%2Fb%2Fc")).json()["Name"] == "a/b/c"
    for bad in ("a//b", "/a", "a/../b", "a/"):
        r = await api.post("/params", json={"Name": bad})
        assert r.status_code == 422, (bad, r.text)


async def test_params_subresource(api: httpx.AsyncClient) -> None:
    m = (await api.post("/machines", json={"Name": "pm"})).json()
    base = f"/machines/{m['Uuid']}/params"
    assert (await api.get(base)).json() == {}
    r = await api.post(f"{base}/callback/url", json="https://127.0.0.1/x")
    assert r.status_code == 200 and r.json() == "https://127.0.0.1/x"
    assert (await api.get(f"{base}/callback/url")).json() == "https://127.0.0.1/x"
    assert (await api.post(f"{base}/n", json=9)).json() == 9
    assert (await api.get(base)).json() == {"callback/url": "https://127.0.0.1/x", "n": 9}
    assert (await api.get("/machines/Name:pm/params/n")).json() == 9
    assert (await api.delete(f"{base}/n")).json() == 9
    unset = await api.get(f"{base}/n")
    assert unset.status_code == 200 and unset.json() is None  # not set: null, as DRP
    assert (await api.delete(f"{base}/n")).status_code == 404
    assert (await api.post(f"{base}/-bad", json=1)).status_code == 422
    r = await api.put(base, json={"only": True})
    assert r.status_code == 200 and (await api.get(base)).json() == {"only": True}
    p = (await api.post("/profiles", json={"Name": "pp"})).json()
    assert (await api.post(f"/profiles/{p['Name']}/params/k", json="v")).status_code == 200
    assert (await api.get("/profiles/pp")).json()["Params"] == {"k": "v"}


async def test_bad_input_changes_nothing(api: httpx.AsyncClient) -> None:
    r = await api.post("/machines", content=b'{"Name": "bad1",')
    assert r.status_code == 400 and "malformed JSON" in r.json()["Messages"][0]
    r = await api.post("/machines", json={"Name": "bad2", "Profiles": "not-a-list"})
    assert r.status_code == 400 and "$.Profiles" in r.json()["Messages"][0]
    r = await api.post("/machines", json={"Name": 5})
    assert r.status_code == 400 and "$.Name" in r.json()["Messages"][0]
    for name in (".", "..", "-lead", "sp ace", "a/b"):
        r = await api.post("/profiles", json={"Name": name})
        assert r.status_code == 422, name
    r = await api.post("/machines", json={"Name": "refs", "Profiles": ["missing-profile"]})
    assert r.status_code == 422 and "missing-profile" in r.json()["Messages"][0]
    names = [m["Name"] for m in (await api.get("/machines")).json()]
    assert not {"bad1", "bad2", "refs"} & set(names)
    assert (await api.get("/nosuchprefix")).status_code == 404
    assert (await api.get("/machines", params={"limit": "x"})).status_code == 400


async def test_unique_machine_name(api: httpx.AsyncClient) -> None:
    assert (await api.post("/machines", json={"Name": "uniq"})).status_code == 201
    r = await api.post("/machines", json={"Name": "uniq"})
    assert r.status_code == 409
    other = (await api.post("/machines", json={"Name": "uniq2"})).json()
    r = await api.patch(f"/machines/{other['Uuid']}", json={"Name": "uniq"},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409
    assert (await api.get(f"/machines/{other['Uuid']}")).json()["Name"] == "uniq2"


async def test_patch_failing_test_changes_nothing(api: httpx.AsyncClient) -> None:
    m = (await api.post("/machines", json={"Name": "pt", "Description": "before"})).json()
    r = await api.patch(
        f"/machines/{m['Uuid']}",
        json=[{"op": "replace", "path": "/Description", "value": "after"},
              {"op": "test", "path": "/Name", "value": "not-pt"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 409 and "test" in r.json()["Messages"][0]
    after = await api.get(f"/machines/{m['Uuid']}")
    assert after.json()["Description"] == "before"
    assert after.headers["ETag"] == f'"{_rev(m, after)}"'
    r = await api.patch(f"/machines/{m['Uuid']}", json=[{"op": "remove", "path": "/Nope/x"}])
    assert r.status_code == 422
    r = await api.patch(f"/machines/{m['Uuid']}", json=[{"op": "bogus"}])
    assert r.status_code == 400


def _rev(_: object, response: httpx.Response) -> str:
    return response.headers["ETag"].strip('"')


async def test_if_match(api: httpx.AsyncClient) -> None:
    r = await api.post("/profiles", json={"Name": "etag"})
    etag = r.headers["ETag"]
    r1 = await api.patch("/profiles/etag", json={"Description": "one"},
                         headers={"If-Match": etag, "Content-Type": "application/merge-patch+json"})
    assert r1.status_code == 200 and r1.headers["ETag"] != etag
    stale = await api.patch("/profiles/etag", json={"Description": "two"},
                            headers={"If-Match": etag,
                                     "Content-Type": "application/merge-patch+json"})
    assert stale.status_code == 412
    assert (await api.delete("/profiles/etag", headers={"If-Match": etag})).status_code == 412
    assert (await api.get("/profiles/etag")).json()["Description"] == "one"
    ok = await api.delete("/profiles/etag", headers={"If-Match": r1.headers["ETag"]})
    assert ok.status_code == 200


async def test_list_order_filters_paging(api: httpx.AsyncClient) -> None:
    for name in ("zz-l", "aa-l", "mm-l"):
        await api.post("/templates", json={"ID": name, "Description": "paging"})
    names = [t["ID"] for t in (await api.get("/templates", params={"Description": "paging"})).json()]
    assert names == ["aa-l", "mm-l", "zz-l"]
    page = (await api.get("/templates", params={"Description": "paging", "offset": 1, "limit": 1})).json()
    assert [t["ID"] for t in page] == ["mm-l"]
    assert (await api.get("/templates", params={"Nope": "x"})).status_code == 400


async def test_auth(shared_drpd: DrpdProcess) -> None:
    async with api_client(shared_drpd, auth=None) as anon:
        r = await anon.get("/machines")
        assert r.status_code == 401 and r.json()["Code"] == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        assert (await anon.get("/healthz")).status_code == 200
        r = await anon.get("/machines", auth=("rocketskates", "wrong"))
        assert r.status_code == 401
        r = await anon.get("/machines", auth=("nobody", "r0cketsk8ts"))
        assert r.status_code == 401
        r = await anon.get("/machines", headers={"Authorization": "Bearer not.a-token"})
        assert r.status_code == 401
        r = await anon.get("/machines", headers={"Authorization": "Basic !!!"})
        assert r.status_code == 401
        # a token from the API works as Bearer and as ?token=
        r = await anon.get("/users/rocketskates/token", params={"ttl": 60}, auth=shared_drpd.auth)
        token = r.json()["Token"]
        assert r.json()["Info"]["api_port"] > 0
        assert (await anon.get("/info", headers={"Authorization": f"Bearer {token}"})).status_code == 200
        assert (await anon.get("/info", params={"token": token})).status_code == 200
        # a tampered token and an expired one (signed with drpd's real key) fail
        payload, sig = token.split(".")
        assert (await anon.get("/info", params={"token": payload + "." + sig[::-1]})).status_code == 401
        key = (Path(shared_drpd.state_dir) / "token.key").read_bytes()
        expired = Authenticator(key, default_user=True).issue(
            "rocketskates", -10)
        r = await anon.get("/info", params={"token": expired})
        assert r.status_code == 401 and "expired" in r.json()["Messages"][0]


async def test_users_and_passwords(api: httpx.AsyncClient, shared_drpd: DrpdProcess) -> None:
    r = await api.post("/users", json={"Name": "alice", "Password": "pw1", "Roles": ["read-only"]})
    assert r.status_code == 201 and "PasswordHash" not in r.json()
    async with api_client(shared_drpd, auth=("alice", "pw1")) as alice:
        assert (await alice.get("/info")).status_code == 200
        # cached credentials still checked against the current password
        r = await api.put("/users/alice/password", json={"Password": "pw2"})
        assert r.status_code == 200
        assert (await alice.get("/info")).status_code == 401
        assert (await alice.get("/info", auth=("alice", "pw2"))).status_code == 200
    assert (await api.put("/users/alice/password", json={"Password": ""})).status_code == 400
    assert (await api.get("/users/nobody/token")).status_code == 404
    listed = (await api.get("/users")).json()
    assert all("PasswordHash" not in u for u in listed)


async def test_body_limits(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "s", env={"DRPD_MAX_BODY_SIZE": "2048"}, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/machines", json={"Name": "big", "Description": "x" * 4096})
            assert r.status_code == 413 and r.json()["Code"] == 413
            assert (await api.get("/machines")).json() == []
            # the connection is still usable afterwards
            assert (await api.post("/machines", json={"Name": "small"})).status_code == 201


async def test_slow_body_is_cut_off(tmp_path: Path) -> None:
    """A client that never finishes its body does not hold drpd."""
    with DrpdProcess(tmp_path / "s", env={"DRPD_BODY_TIMEOUT": "0.5"}, no_tls=True) as drpd:
        host, port = drpd.endpoint.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        creds = base64.b64encode(b"rocketskates:r0cketsk8ts").decode()
        await stream.send_all(
            b"POST /api/v3/machines HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Basic " + creds.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"Na"
        )
        with trio.fail_after(10):
            answer = await stream.receive_some(65536)
        assert b" 408 " in answer.split(b"\r\n")[0]
        await stream.aclose()
        async with api_client(drpd) as api:
            assert (await api.get("/machines")).json() == []


async def test_tls_verifies_with_generated_cert(shared_drpd: DrpdProcess) -> None:
    assert shared_drpd.endpoint.startswith("https://127.0.0.1:")
    async with httpx.AsyncClient(verify=shared_drpd.verify, auth=shared_drpd.auth) as c:
        assert (await c.get(shared_drpd.endpoint + "/api/v3/info")).status_code == 200
    async with httpx.AsyncClient() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(shared_drpd.endpoint + "/api/v3/info")


async def test_info(api: httpx.AsyncClient, shared_drpd: DrpdProcess) -> None:
    info = (await api.get("/info")).json()
    assert info["os"] == "linux" and info["arch"] in ("amd64", "arm64")
    assert info["api_port"] == int(shared_drpd.endpoint.rsplit(":", 1)[1])
    assert info["file_port"] > 0 and isinstance(info["uptime"], int)
    assert info["address"] == "127.0.0.1" and "secure-param-upgrade" in info["features"]


async def test_unknown_paths_answer_drp_errors(api: httpx.AsyncClient) -> None:
    r = await api.get("/machines/x/nothing-here")
    assert r.status_code == 404 and r.json()["Code"] == 404
    r = await api.post("/machines/someuuid", json={})
    assert r.status_code == 405
    r = await api.get("/../../etc/passwd")
    assert r.status_code in (401, 404)


async def test_posted_events_get_seq(api: httpx.AsyncClient) -> None:
    r = await api.post("/events", json={"Type": "custom", "Action": "poke", "Key": "k1",
                                        "Object": {"n": 1}})
    assert r.status_code == 200
    first = r.json()["Seq"]
    assert r.json()["Principal"] == "rocketskates"
    await api.post("/profiles", json={"Name": "seqcheck"})
    r = await api.post("/events", json={"Type": "custom", "Action": "poke"})
    assert r.json()["Seq"] > first + 1
    assert (await api.post("/events", json={"Type": "x"})).status_code == 400
