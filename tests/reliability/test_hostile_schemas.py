"""Hostile schemas, values and YAML (issue 11: 1-4, 7, 12, 16).

A param's Schema is user input that drpd runs on its event loop: a bad one
must be refused when written, a stored one must never crash or stop drpd,
nothing may be fetched for it, no regex may backtrack, Secure values never
show in a message, and no YAML alias bomb or deeply nested JSON may expand
inside drpd.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import install, wait_plugin

#: a pattern that backtracks catastrophically in Python's re: 2^40 steps here
EVIL_PATTERN = "^(a+)+$"
EVIL_VALUE = "a" * 40 + "!"


def bomb(levels: int = 9, fan: int = 9) -> str:
    """A content bundle whose nested anchors expand ``fan ** levels``-fold (~487 bytes)."""
    lines = ["meta:", "  Name: bomb", "sections:", "  laughs:",
             "    a0: &a0 [" + ",".join(["lol"] * fan) + "]"]
    for level in range(1, levels):
        refs = ",".join([f"*a{level - 1}"] * fan)
        lines.append(f"    a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    with DrpdProcess(tmp_path_factory.mktemp("schemas") / "state", no_tls=True) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


class Tarpit:
    """A loopback TCP server that notes every connection and never answers:
    whatever fetches from it would hang for good."""

    def __init__(self) -> None:
        self.connected = trio.Event()
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()

        async def hold(stream: trio.SocketStream) -> None:
            self.connected.set()
            await trio.sleep_forever()

        await trio.serve_listeners(hold, listeners)


def error_text(r: httpx.Response) -> str:
    return " ".join(r.json()["Messages"])


# -- 11.1: bad schemas refused at write ---------------------------------------------------
@pytest.mark.parametrize("schema, why", [
    ({"$ref": "#/nope"}, "/nope"),
    ({"type": "nosuchtype"}, "nosuchtype"),
    ({"$schema": "https://json-schema.org/draft/2020-12/schema"}, "not supported"),
    ({"properties": {"a": {"$ref": "http://json-schema.org/draft-04/schema#"}}}, "$ref"),
    ({"pattern": "(?=lookahead)"}, "regex"),
    ({"patternProperties": {"(a)\\1": {}}}, "RE2"),
    ("a string", "JSON object"),
])
async def test_bad_schema_refused_at_write(api: httpx.AsyncClient, schema: Any, why: str) -> None:
    r = await api.post("/params", json={"Name": "hostile/bad", "Schema": schema})
    assert r.status_code == 422, r.text
    assert "Schema" in error_text(r) and why in error_text(r), r.text
    assert (await api.get("/params/hostile/bad")).status_code == 404
    # nor may an update bring one in
    r = await api.post("/params", json={"Name": "hostile/good", "Schema": {"type": "string"}})
    assert r.status_code in (201, 409)
    r = await api.put("/params/hostile/good", json={"Name": "hostile/good", "Schema": schema})
    assert r.status_code == 422, r.text
    r = await api.patch("/params/hostile/good", json={"Schema": schema})
    assert r.status_code == 422, r.text
    assert (await api.get("/params/hostile/good")).json()["Schema"] == {"type": "string"}


async def test_bad_schema_in_a_content_bundle_is_refused(api: httpx.AsyncClient) -> None:
    bundle = {"meta": {"Name": "hostile-schemas"},
              "sections": {"params": {"hostile/c": {"Schema": {"$ref": "#/nope"}}}}}
    r = await api.post("/contents", json=bundle)
    assert r.status_code == 422 and "/nope" in error_text(r), r.text
    assert (await api.get("/params/hostile/c")).status_code == 404


# -- 11.2: nothing is ever fetched ------------------------------------------------------
async def test_remote_ref_is_refused_without_a_fetch(api: httpx.AsyncClient) -> None:
    tarpit = Tarpit()
    async with trio.open_nursery() as nursery:
        await nursery.start(tarpit.run)
        with trio.fail_after(30):
            for ref in (f"http://127.0.0.1:{tarpit.port}/x.json",
                        f"http://127.0.0.1:{tarpit.port}/x.json#/definitions/a",
                        "file:///etc/hostname"):
                r = await api.post("/params", json={"Name": "hostile/remote",
                                                    "Schema": {"$ref": ref}})
                assert r.status_code == 422 and "never fetches" in error_text(r), r.text
                # a relative ref under a remote base is remote too
                r = await api.post("/params", json={"Name": "hostile/remote", "Schema": {
                    "id": f"http://127.0.0.1:{tarpit.port}/root.json",
                    "properties": {"a": {"$ref": "other.json"}}}})
                assert r.status_code == 422, r.text
        assert not tarpit.connected.is_set()
        nursery.cancel_scope.cancel()


async def test_local_refs_and_recursion_still_work(api: httpx.AsyncClient) -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              "definitions": {"name": {"type": "string", "maxLength": 8}},
              "type": "object",
              "properties": {"name": {"$ref": "#/definitions/name"},
                             "kids": {"type": "array", "items": {"$ref": "#"}}}}
    r = await api.post("/params", json={"Name": "hostile/tree", "Schema": schema})
    assert r.status_code == 201, r.text
    good = {"name": "root", "kids": [{"name": "kid", "kids": []}]}
    r = await api.post("/machines", json={"Name": "m-tree", "Params": {"hostile/tree": good}})
    assert r.status_code == 201, r.text
    uuid = r.json()["Uuid"]
    bad = {"name": "root", "kids": [{"name": "far-too-long-a-name"}]}
    r = await api.post(f"/machines/{uuid}/params/hostile/tree", json=bad)
    assert r.status_code == 422 and "kids/0/name" in error_text(r), r.text


# -- 11.3: no value can stall the loop --------------------------------------------------
async def test_catastrophic_pattern_answers_while_others_are_served(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    r = await api.post("/params", json={"Name": "hostile/evil", "Schema": {
        "type": "object", "properties": {"v": {"type": "string", "pattern": EVIL_PATTERN}},
        "patternProperties": {EVIL_PATTERN: {"type": "integer"}},
        "additionalProperties": {"type": "string", "pattern": EVIL_PATTERN}}})
    assert r.status_code == 201, r.text
    answers: dict[str, httpx.Response] = {}
    checked = trio.Event()

    async def evil(label: str, value: Any) -> None:
        answers[label] = await api.post("/profiles", json={
            "Name": f"evil-{label}", "Params": {"hostile/evil": value}})

    async def meanwhile() -> None:
        # the loop keeps serving others while (and after) the values are checked
        async with api_client(drpd) as other:
            answers["info"] = await other.get("/info")
        await checked.wait()

    # Python's re would need ~2^40 steps for each of these: the deadline is far
    # above RE2's linear time and far below backtracking's
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(meanwhile)
            async with trio.open_nursery() as checks:
                checks.start_soon(evil, "pattern", {"v": EVIL_VALUE})
                checks.start_soon(evil, "additional", {EVIL_VALUE: "x"})
                checks.start_soon(evil, "matching-key", {"a" * 40: 1})
            checked.set()
    assert answers["info"].status_code == 200
    assert answers["pattern"].status_code == 422 and "does not match" in error_text(
        answers["pattern"])
    assert answers["additional"].status_code == 422, answers["additional"].text
    assert answers["matching-key"].status_code == 201, answers["matching-key"].text


async def test_ref_bomb_answers_while_others_are_served(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    from ..test_schemas import ref_bomb

    r = await api.post("/params", json={"Name": "hostile/refs", "Schema": ref_bomb()})
    assert r.status_code == 201, r.text
    answers: dict[str, httpx.Response] = {}
    with trio.fail_after(60):  # 2^40 steps unbounded; a bounded check is far below
        async with trio.open_nursery() as nursery:
            async def bomb_it() -> None:
                answers["bomb"] = await api.post("/profiles", json={
                    "Name": "refs", "Params": {"hostile/refs": 1}})

            async def other() -> None:
                async with api_client(drpd) as client:
                    answers["info"] = await client.get("/info")

            nursery.start_soon(bomb_it)
            nursery.start_soon(other)
    assert answers["info"].status_code == 200
    assert answers["bomb"].status_code == 422 and "steps" in error_text(answers["bomb"])


async def test_unique_items_of_many_objects_is_linear(api: httpx.AsyncClient) -> None:
    r = await api.post("/params", json={"Name": "hostile/unique", "Schema": {
        "type": "array", "uniqueItems": True}})
    assert r.status_code == 201, r.text
    # the stock check compares objects pairwise: 60,000 of them are 1.8e9 comparisons
    items = [{"k": i} for i in range(60_000)]
    with trio.fail_after(60):
        r = await api.post("/profiles", json={"Name": "unique-ok",
                                              "Params": {"hostile/unique": items}})
        assert r.status_code == 201, r.text
        r = await api.post("/profiles", json={"Name": "unique-bad",
                                              "Params": {"hostile/unique": [*items, {"k": 7}]}})
        assert r.status_code == 422 and "non-unique" in error_text(r), r.text[:300]


# -- 11.4: YAML alias bombs ---------------------------------------------------------------
async def test_yaml_alias_bomb_is_refused(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    body = bomb()
    assert len(body) < 500
    with trio.fail_after(30):
        r = await api.post("/contents", content=body.encode(),
                           headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413 and "aliases" in error_text(r), r.text[:300]
    assert len(r.content) < 2000
    assert (await api.get("/contents/bomb")).status_code == 404
    # a recursive alias and deep YAML nesting are refused too
    r = await api.post("/contents", content=b"meta: {Name: loop}\nsections: &s {x: *s}\n")
    assert r.status_code == 400, r.text
    deep = "meta: {Name: deep}\nsections: {x: " + "[" * 2000 + "]" * 2000 + "}\n"
    r = await api.post("/contents", content=deep.encode())
    assert r.status_code == 400 and "deep" in error_text(r), r.text
    # harmless aliases still work
    ok = "meta: {Name: aliases}\nsections:\n  notes: {a: &x [1, 2], b: *x}\n"
    r = await api.post("/contents", content=ok.encode())
    assert r.status_code == 201, r.text
    assert (await api.get("/info")).status_code == 200


# -- 11.12: nesting depth -------------------------------------------------------------------
async def test_deep_json_is_a_400_everywhere(api: httpx.AsyncClient) -> None:
    for depth in (1_000, 100_000):
        deep = b'{"Name": "deep", "Params": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
        r = await api.post("/profiles", content=deep,
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "deep" in error_text(r), r.text[:300]
    # past the cap (64) but easy for the parser
    value: Any = "leaf"
    for _ in range(70):
        value = [value]
    r = await api.post("/profiles", json={"Name": "deep", "Params": {"x": value}})
    assert r.status_code == 400, r.text[:300]
    r = await api.post("/events", json={"Type": "x", "Action": "y", "Key": "z",
                                        "Object": value})
    assert r.status_code == 400, r.text[:300]
    r = await api.post("/contents", json={"meta": {"Name": "deep"}, "sections": {"x": value}})
    assert r.status_code == 400, r.text[:300]
    # no JSON Patch can build one either
    r = await api.post("/profiles", json={"Name": "grows", "Params": {"x": {"y": {"z": {}}}}})
    assert r.status_code == 201, r.text
    value = "leaf"
    for _ in range(61):  # the body is 63 levels deep: allowed
        value = [value]
    r = await api.patch("/profiles/grows", json=[
        {"op": "add", "path": "/Params/x/y/z/w", "value": value}])
    assert r.status_code == 422 and "levels deep" in error_text(r), r.text[:300]
    # nor a patch bomb: each copy doubles the map (2^80 values after 80 of them)
    ops = [{"op": "copy", "from": "/Params", "path": f"/Params/c{i}"} for i in range(80)]
    with trio.fail_after(30):
        r = await api.patch("/profiles/grows", json=ops)
    assert r.status_code == 422 and "grow the object" in error_text(r), r.text[:300]
    assert (await api.get("/profiles/grows")).json()["Params"] == {"x": {"y": {"z": {}}}}


async def test_deep_json_inside_client_sealed_secure_data(api: httpx.AsyncClient) -> None:
    """A value sealed to drpd's pubkey is JSON too: its depth is capped once opened."""
    import base64

    from nacl.public import Box, PrivateKey, PublicKey
    from nacl.utils import random

    r = await api.post("/params", json={"Name": "hostile/boxed", "Secure": True})
    assert r.status_code == 201, r.text
    r = await api.post("/machines", json={"Name": "boxed"})
    assert r.status_code == 201, r.text
    peer = base64.b64decode((await api.get("/machines/Name:boxed/pubkey")).json())
    for depth in (100, 5_000):
        mine, nonce = PrivateKey.generate(), random(24)
        clear = b"[" * depth + b"]" * depth
        sealed = Box(mine, PublicKey(peer)).encrypt(clear, nonce).ciphertext
        box = {"Key": base64.b64encode(bytes(mine.public_key)).decode(),
               "Nonce": base64.b64encode(nonce).decode(),
               "Payload": base64.b64encode(sealed).decode()}
        r = await api.post("/machines/Name:boxed/params/hostile/boxed", json=box)
        assert r.status_code == 422 and "levels deep" in error_text(r), r.text[:300]


# -- 11.7: Secure values never show in a message -------------------------------------------
async def test_secure_value_is_not_quoted_in_errors(api: httpx.AsyncClient) -> None:
    r = await api.post("/params", json={"Name": "hostile/secret", "Secure": True, "Schema": {
        "type": "string", "minLength": 20, "pattern": "^[a-z]+$"}})
    assert r.status_code == 201, r.text
    secret = "hunter2-SECRET"
    r = await api.post("/profiles", json={"Name": "leaky", "Params": {"hostile/secret": secret}})
    assert r.status_code == 422, r.text
    assert secret not in r.text and "hostile/secret" in r.text and "not shown" in r.text
    r = await api.post("/profiles", json={"Name": "sealed-in", "Params": {}})
    r = await api.post("/profiles/sealed-in/params/hostile/secret", json=secret)
    assert r.status_code == 422 and secret not in r.text, r.text


async def test_param_declared_secure_later_seals_stored_values(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    secret = "stored-in-clear-before"
    r = await api.post("/params", json={"Name": "hostile/later", "Schema": {"type": "string"}})
    assert r.status_code == 201, r.text
    r = await api.post("/profiles", json={"Name": "later", "Params": {"hostile/later": secret}})
    assert r.status_code == 201, r.text
    r = await api.put("/params/hostile/later", json={"Name": "hostile/later", "Secure": True,
                                                     "Schema": {"type": "string"}})
    assert r.status_code == 200, r.text
    shown = (await api.get("/profiles/later")).json()["Params"]["hostile/later"]
    assert set(shown) == {"SecureData"} and secret not in json.dumps(shown)
    decoded = (await api.get("/profiles/later", params={"decode": "true"})).json()
    assert decoded["Params"]["hostile/later"] == secret
    with sqlite3.connect(drpd.state_dir / "drpd.db") as db:
        (row,) = db.execute("SELECT data FROM objects WHERE prefix = 'profiles' AND key = 'later'")
    assert secret.encode() not in row[0]
    # a content bundle that declares the param Secure does the same
    r = await api.post("/profiles", json={"Name": "bundled",
                                          "Params": {"hostile/bundled": secret}})
    assert r.status_code == 201, r.text
    r = await api.post("/contents", json={"meta": {"Name": "secure-later"}, "sections": {
        "params": {"hostile/bundled": {"Secure": True, "Schema": {"type": "string"}}}}})
    assert r.status_code == 201, r.text
    shown = (await api.get("/profiles/bundled")).json()["Params"]["hostile/bundled"]
    assert set(shown) == {"SecureData"}


# -- 11.1, 11.2, 11.12 with a poisoned store; 11.7 and 11.16 with a running instance --------
def poison(db_path: Path, prefix: str, key: str, **fields: Any) -> None:
    """Rewrite a stored object behind drpd's back, as an old drpd or a bad disk could."""
    with sqlite3.connect(db_path) as db:
        (row,) = db.execute("SELECT data FROM objects WHERE prefix = ? AND key = ?",
                            (prefix, key))
        data = json.loads(row[0])
        data.update(fields)
        db.execute("UPDATE objects SET data = ? WHERE prefix = ? AND key = ?",
                   (json.dumps(data).encode(), prefix, key))


async def test_poisoned_store_cannot_stop_drpd(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "sdk_echo")
    tarpit = Tarpit()
    async with trio.open_nursery() as nursery:
        await nursery.start(tarpit.run)
        with DrpdProcess(state, no_tls=True) as drpd:
            async with api_client(drpd) as api:
                for name in ("echo/greeting", "hostile/type", "hostile/remote"):
                    r = await api.post("/params", json={"Name": name,
                                                        "Schema": {"type": "string"}})
                    assert r.status_code == 201, r.text
                r = await api.post("/plugins", json={"Name": "p1", "Provider": "sdk_echo",
                                                     "Params": {"echo/greeting": "hello"}})
                assert r.status_code == 201 and r.json()["Available"], r.text
                r = await api.post("/profiles", json={"Name": "deep", "Params": {"x": 1}})
                assert r.status_code == 201, r.text
        db = state / "drpd.db"
        poison(db, "params", "echo/greeting", Schema={"$ref": "#/nope"})
        poison(db, "params", "hostile/type", Schema={"type": "nosuchtype"})
        poison(db, "params", "hostile/remote",
               Schema={"$ref": f"http://127.0.0.1:{tarpit.port}/x.json"})
        deep: Any = 1
        for _ in range(600):
            deep = [deep]
        poison(db, "profiles", "deep", Params={"x": deep})
        poison(db, "plugin_providers", "sdk_echo",
               StoreObjects={"hostile-things": {"type": "nosuchtype"}})
        drpd = DrpdProcess(state, no_tls=True)
        for _ in range(2):  # it starts, and starts again
            drpd.start()
            try:
                async with api_client(drpd) as api:
                    p = await wait_plugin(api, "p1", lambda p: bool(p["Errors"]))
                    assert not p["Available"]
                    assert "unusable Schema" in p["Errors"][0] and "/nope" in p["Errors"][0]
                    for name in ("hostile/type", "hostile/remote", "echo/greeting"):
                        r = await api.post("/machines", json={"Name": "m1",
                                                              "Params": {name: "x"}})
                        assert r.status_code == 422, r.text
                        assert "unusable Schema" in error_text(r), r.text
                    # a value too deep to patch, stored before the cap: 422, never 500
                    r = await api.patch("/profiles/deep",
                                        json=[{"op": "add", "path": "/Params/y", "value": 1}])
                    assert r.status_code == 422, r.text[:300]
                    r = await api.patch("/profiles/deep", json={"Params": {"y": 1}})
                    assert r.status_code == 422, r.text[:300]
                    # a provider's stored object type with a bad schema: served read-only
                    assert (await api.get("/hostile-things")).status_code == 200
                    r = await api.post("/hostile-things", json={"Id": "t1"})
                    assert r.status_code in (403, 405), r.text
                    # fixing the schema brings the instance up
                    r = await api.put("/params/echo/greeting", json={
                        "Name": "echo/greeting", "Schema": {"type": "string"}})
                    assert r.status_code == 200, r.text
                    await wait_plugin(api, "p1", lambda p: p["Available"])
                    poisoned = await api.get("/params/echo/greeting")
                    assert poisoned.status_code == 200
            finally:
                code = drpd.stop()
            assert code == 0, drpd.log_text()[-3000:]
            assert "Traceback" not in drpd.log_text(), drpd.log_text()[-3000:]
            poison(db, "params", "echo/greeting", Schema={"$ref": "#/nope"})
        assert not tarpit.connected.is_set()
        nursery.cancel_scope.cancel()


async def test_instance_params_checked_before_storing(tmp_path: Path) -> None:
    """11.16 and 11.7 for a running instance: a bad update is a 422 that changes
    nothing; a Secure value that fails its schema is quoted nowhere."""
    state = tmp_path / "state"
    install(state / "plugins", "sdk_echo")
    secret = "Sup3r-secret-value"
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/params", json={"Name": "echo/greeting", "Secure": True,
                                                "Schema": {"type": "string", "maxLength": 30}})
            assert r.status_code == 201, r.text
            r = await api.post("/plugins", json={"Name": "p2", "Provider": "sdk_echo",
                                                 "Params": {"echo/greeting": secret}})
            assert r.status_code == 201 and r.json()["Available"], r.text
            before = r.json()
            pid = before["Runtime"]["Pid"]
            too_long = secret * 3
            for method, path, body in (
                ("PUT", "/plugins/p2", {"Name": "p2", "Provider": "sdk_echo",
                                        "Params": {"echo/greeting": too_long}}),
                ("PATCH", "/plugins/p2", {"Params": {"echo/greeting": too_long}}),
                ("POST", "/plugins/p2/params/echo/greeting", too_long),
                ("POST", "/plugins", {"Name": "p3", "Provider": "sdk_echo",
                                      "Params": {"echo/greeting": too_long}}),
            ):
                r = await api.request(method, path, json=body)
                assert r.status_code == 422, r.text
                assert secret not in r.text
            after = (await api.get("/plugins/p2", params={"decode": "true"})).json()
            assert after["Params"]["echo/greeting"] == secret
            assert after["Available"] and after["Runtime"]["Pid"] == pid
            assert (await api.get("/plugins/p3")).status_code == 404
            # a stored value that fails a stricter schema: the reason, not the value
            r = await api.put("/params/echo/greeting", json={
                "Name": "echo/greeting", "Secure": True,
                "Schema": {"type": "string", "maxLength": 5}})
            assert r.status_code == 200, r.text
            r = await api.post("/plugins/p2/restart")
            p = await wait_plugin(api, "p2", lambda p: bool(p["Errors"]))
            assert not p["Available"] and "maxLength" in p["Errors"][0], p
            assert secret not in json.dumps(p)
            assert secret not in (await api.get("/plugins/p2")).text
        assert secret not in drpd.log_text()


async def test_refused_regexes_leave_no_trace_in_the_log(
        api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    """RE2 logs a refused pattern to stderr unless told not to: a client could fill
    drpd's log with them."""
    r = await api.get("/machines", params={"Name": "Re((?=x))"})
    assert r.status_code == 400, r.text
    r = await api.post("/params", json={"Name": "hostile/rx", "Schema": {
        "patternProperties": {"(a)\\1": {}}}})
    assert r.status_code == 422, r.text
    assert "re2.cc" not in drpd.log_text() and "Error parsing" not in drpd.log_text()
