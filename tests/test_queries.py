"""List queries as DRP's Go client sends them, and the pubkey route, against a real drpd."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from drpd.testing import DrpdProcess

from .helpers import api_client

MACHINES = [
    {"Name": "q-a", "Address": "10.0.0.5", "Arch": "amd64", "Profiles": ["q-p1"],
     "Params": {"q-rank": 3, "q-tag": "blue"}},
    {"Name": "q-b", "Address": "10.0.0.20", "Arch": "arm64", "Profiles": [],
     "Params": {"q-rank": 1}},
    {"Name": "q-c", "Address": "10.1.0.1", "Arch": "amd64", "Profiles": ["q-p1", "q-p2"],
     "Params": {"q-rank": 2, "q-tag": "red"}, "Locked": True},
]


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with DrpdProcess(tmp_path_factory.mktemp("queries") / "state") as process:
        yield process


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        if not (await client.get("/profiles", params={"Name": "q-p1"})).json():
            for name in ("q-p1", "q-p2"):
                assert (await client.post("/profiles", json={"Name": name})).status_code == 201
            for m in MACHINES:
                r = await client.post("/machines", json=m)
                assert r.status_code == 201, r.text
        yield client


async def names(api: httpx.AsyncClient, **query: Any) -> list[str]:
    r = await api.get("/machines", params=query)
    assert r.status_code == 200, r.text
    return [m["Name"] for m in r.json() if m["Name"].startswith("q-")]


# (query, expected names in key order unless sorted)
CASES: list[tuple[dict[str, str], list[str]]] = [
    ({"Name": "Eq(q-a)"}, ["q-a"]),
    ({"Name": "q-a"}, ["q-a"]),  # drpd's older bare form
    ({"Name": "Ne(q-a)", "sort": "Name"}, ["q-b", "q-c"]),
    ({"Name": "Lt(q-b)"}, ["q-a"]),
    ({"Name": "Lte(q-b)", "sort": "Name"}, ["q-a", "q-b"]),
    ({"Name": "Gt(q-a)", "sort": "Name"}, ["q-b", "q-c"]),
    ({"Name": "Gte(q-c)"}, ["q-c"]),
    ({"Name": "Between(q-a,q-b)", "sort": "Name"}, ["q-a", "q-b"]),
    ({"Name": "Except(q-a,q-b)"}, ["q-c"]),
    ({"Name": "In(q-a,q-c)", "sort": "Name"}, ["q-a", "q-c"]),
    ({"Name": "Nin(q-a,q-c)"}, ["q-b"]),
    ({"Name": "Re(^q-[ab]$)", "sort": "Name"}, ["q-a", "q-b"]),
    # addresses compare as addresses: 10.0.0.20 > 10.0.0.5, not as text
    ({"Address": "Gt(10.0.0.5)", "sort": "Address"}, ["q-b", "q-c"]),
    ({"Address": "Between(10.0.0.0,10.0.255.255)", "sort": "Address"}, ["q-a", "q-b"]),
    ({"Address": "Re(^10\\.0\\.)", "sort": "Name"}, ["q-a", "q-b"]),
    ({"Locked": "Eq(true)"}, ["q-c"]),
    ({"Arch": "Eq(amd64)", "Locked": "Eq(false)"}, ["q-a"]),
    ({"Profiles": "Eq(q-p2)"}, ["q-c"]),
    ({"Profiles": "In(q-p1,q-nope)", "sort": "Name"}, ["q-a", "q-c"]),
    # param filters: a name that is not an index
    ({"q-rank": "Eq(3)"}, ["q-a"]),
    ({"q-rank": "Gte(2)", "sort": "Name"}, ["q-a", "q-c"]),
    ({"q-tag": "Eq(red)"}, ["q-c"]),
    ({"q-tag": "Re(^bl)"}, ["q-a"]),
    ({"Name": "Re(^q-)", "sort": "Name", "reverse": "true"}, ["q-c", "q-b", "q-a"]),
    ({"Name": "Re(^q-)", "sort": "Address", "reverse": "true", "limit": "2"}, ["q-c", "q-b"]),
    ({"Name": "Re(^q-)", "sort": "Name", "offset": "1", "limit": "1"}, ["q-b"]),
    ({"Name": "Re(^q-)", "sort": "Name", "limit": "-1"}, ["q-a", "q-b", "q-c"]),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[json.dumps(c[0]) for c in CASES])
async def test_filters(api: httpx.AsyncClient, query: dict[str, str], expected: list[str]) -> None:
    got = await names(api, **query)
    if "sort" in query:
        assert got == expected
    else:
        assert sorted(got) == sorted(expected)


@pytest.mark.parametrize(("query", "problem"), [
    ({"Nope": "Eq(1)"}, None),  # machines have Params: a param filter matching nothing
    ({"Locked": "Eq(maybe)"}, "not true or false"),
    ({"Address": "Lt(not-an-ip)"}, "not an IP address"),
    ({"Name": "Re(a(b)"}, "bad regular expression"),
    ({"Name": "Re(" + "a" * 2000 + ")"}, "longer than"),
    ({"Name": "Between(q-a)"}, "two values"),
    ({"Profiles": "Lt(x)"}, "unordered"),
    ({"sort": "Nope"}, "no index"),
    ({"slim": "Name"}, "slim takes"),
    ({"limit": "lots"}, "integer"),
    ({"offset": "-3"}, "negative"),
])
async def test_bad_filters(api: httpx.AsyncClient, query: dict[str, str], problem: str | None) -> None:
    r = await api.get("/machines", params=query)
    if problem is None:
        assert r.status_code == 200 and r.json() == []
        return
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["Code"] == 400 and problem in " ".join(error["Messages"])


async def test_filter_without_params_is_400(api: httpx.AsyncClient) -> None:
    r = await api.get("/users", params={"Nope": "Eq(1)"})
    assert r.status_code == 400 and "no index 'Nope'" in r.json()["Messages"][0]


async def test_regex_is_linear_time(api: httpx.AsyncClient) -> None:
    """A pattern that takes exponential time in a backtracking engine."""
    await api.post("/profiles", json={"Name": "q-" + "a" * 60})
    r = await api.get("/profiles", params={"Name": "Re(^q-(a+)+b$)"})
    assert r.status_code == 200 and r.json() == []


async def test_slim_and_params(api: httpx.AsyncClient) -> None:
    r = await api.get("/machines", params={"Name": "Eq(q-a)", "slim": "Params,Meta"})
    (m,) = r.json()
    assert "Params" not in m and "Meta" not in m and m["Name"] == "q-a"
    r = await api.get("/machines", params={"Name": "Eq(q-a)", "params": "q-tag"})
    assert r.json()[0]["Params"] == {"q-tag": "blue"}


async def test_head_counts(api: httpx.AsyncClient) -> None:
    total = len((await api.get("/machines")).json())
    r = await api.head("/machines", params={"Arch": "Eq(amd64)", "Name": "Re(^q-)", "limit": "1"})
    assert r.status_code == 200 and r.content == b""
    assert r.headers["X-DRP-LIST-TOTAL-COUNT"] == str(total)
    assert r.headers["X-DRP-LIST-FILTER-COUNT"] == "2"
    assert r.headers["X-DRP-LIST-COUNT"] == "1"


async def test_index_keys(api: httpx.AsyncClient) -> None:
    r = await api.get("/machines/Address:10.0.0.20")
    assert r.status_code == 200 and r.json()["Name"] == "q-b"
    assert (await api.get("/machines/Name:q-c")).json()["Address"] == "10.1.0.1"
    uuid = r.json()["Uuid"]
    assert (await api.get(f"/machines/Uuid:{uuid}")).json()["Name"] == "q-b"
    assert (await api.get("/machines/Address:10.9.9.9")).status_code == 404
    # an index two objects share does not name one
    r = await api.get("/machines/Arch:amd64")
    assert r.status_code == 409 and "more than one" in r.json()["Messages"][0]
    # writes go through the same lookup
    r = await api.patch("/machines/Address:10.0.0.20", json={"Description": "by address"})
    assert r.status_code == 200 and r.json()["Uuid"] == uuid
    assert (await api.get("/profiles/Name:q-p1")).json()["Name"] == "q-p1"


async def test_indexes(api: httpx.AsyncClient) -> None:
    every = (await api.get("/indexes")).json()
    assert {"machines", "profiles", "params"} <= every.keys()
    machines = (await api.get("/indexes/machines")).json()
    assert machines["Uuid"] == {"Type": "string", "Unique": True, "Unordered": False, "Regex": True}
    assert machines["Name"]["Unique"] and not machines["Address"]["Unique"]
    assert machines["Address"]["Type"] == "IP"
    assert machines["Locked"]["Type"] == "boolean" and machines["Profiles"]["Unordered"]
    assert "Params" not in machines
    assert (await api.get("/indexes/machines/Name")).json()["Unique"] is True
    assert (await api.get("/indexes/machines/Nope")).status_code == 404
    assert (await api.get("/indexes/nope")).status_code == 404
    assert "PasswordHash" not in (await api.get("/indexes/users")).json()


async def test_pubkey_and_client_sealing(api: httpx.AsyncClient, drpd: DrpdProcess) -> None:
    """A value sealed as DRP's drpcli seals it is stored sealed and reads back."""
    from nacl.public import Box, PrivateKey, PublicKey
    from nacl.utils import random

    r = await api.post("/params", json={"Name": "q-secret", "Secure": True,
                                          "Schema": {"type": "string"}})
    assert r.status_code == 201, r.text
    r = await api.get("/machines/Name:q-a/pubkey")
    assert r.status_code == 200, r.text
    peer = base64.b64decode(r.json())
    assert len(peer) == 32
    assert (await api.get("/machines/Name:q-nope/pubkey")).status_code == 404
    assert (await api.get("/users/rocketskates/pubkey")).status_code == 404

    def seal(value: Any, to: bytes) -> dict[str, str]:
        mine = PrivateKey.generate()
        nonce = random(24)
        sealed = Box(mine, PublicKey(to)).encrypt(json.dumps(value).encode(), nonce).ciphertext
        return {"Key": base64.b64encode(bytes(mine.public_key)).decode(),
                "Nonce": base64.b64encode(nonce).decode(),
                "Payload": base64.b64encode(sealed).decode()}

    r = await api.post("/machines/Name:q-a/params/q-secret", json=seal("hunter2", peer))
    assert r.status_code == 200, r.text
    stored = (await api.get("/machines/Name:q-a/params/q-secret")).json()
    assert "hunter2" not in json.dumps(stored)
    shown = (await api.get("/machines/Name:q-a", params={"decode": "true"})).json()
    assert shown["Params"]["q-secret"] == "hunter2" and "q-secret2" not in shown["Params"]
    # the schema sees the clear value
    r = await api.post("/machines/Name:q-a/params/q-secret", json=seal(42, peer))
    assert r.status_code == 422, r.text
    # sealed to some other key: refused, nothing stored
    r = await api.post("/params", json={"Name": "q-secret2", "Secure": True})
    assert r.status_code == 201, r.text
    r = await api.post("/machines/Name:q-a/params/q-secret2",
                       json=seal("x", bytes(PrivateKey.generate().public_key)))
    assert r.status_code == 422 and "pubkey" in r.json()["Messages"][0]
    shown = (await api.get("/machines/Name:q-a", params={"decode": "true"})).json()
    assert shown["Params"]["q-secret"] == "hunter2" and "q-secret2" not in shown["Params"]


async def test_a_plain_page_is_a_slice_of_the_whole_list(api: httpx.AsyncClient) -> None:
    """Without a filter or a sort only the page is shown (drpd.api.queries):
    the page, its order and the count headers stay those of the whole list."""
    whole = await api.get("/machines")
    keys = [m["Uuid"] for m in whole.json()]
    assert len(keys) >= 3
    for query, expected in (({"offset": "1", "limit": "2"}, keys[1:3]),
                            ({"reverse": "true", "limit": "2"}, keys[::-1][:2]),
                            ({"offset": "2"}, keys[2:]),
                            ({"offset": str(len(keys) + 5)}, [])):
        r = await api.get("/machines", params=query)
        assert [m["Uuid"] for m in r.json()] == expected, query
        assert r.headers["X-DRP-LIST-TOTAL-COUNT"] == str(len(keys))
        assert r.headers["X-DRP-LIST-COUNT"] == str(len(expected))
    slim = (await api.get("/machines", params={"limit": "1", "slim": "Params"})).json()
    assert "Params" not in slim[0]
