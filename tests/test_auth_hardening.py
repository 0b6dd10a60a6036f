"""Credentials, tokens and hidden fields under attack (issue 11, items 5, 6, 8, 9, 12, 13)."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from drpd import auth as auth_module
from drpd.auth import Authenticator, FailureTable, client_key
from drpd.models import DrpError
from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import install


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("authh") / "state"
    install(state / "plugins", "sdk_echo")
    with DrpdProcess(state, no_tls=True) as proc:
        yield proc


@pytest.fixture
async def api(drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(drpd) as client:
        yield client


def basic(user: str, password: str) -> dict[str, str]:
    pair = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


# -- 11.5 only a real password logs a user in ----------------------------------
async def test_user_without_password_cannot_log_in(api: httpx.AsyncClient,
                                                   drpd: DrpdProcess) -> None:
    assert (await api.post("/users", json={"Name": "nopw"})).status_code == 201
    async with api_client(drpd, auth=None) as anon:
        for password in ("r0cketsk8ts", "", "x"):
            r = await anon.get("/info", headers=basic("nopw", password))
            assert r.status_code == 401, password
    # a stored rocketskates without a password is no default user either
    assert (await api.post("/users", json={"Name": "rocketskates"})).status_code == 201
    try:
        async with api_client(drpd, auth=None) as anon:
            r = await anon.get("/info", headers=basic("rocketskates", "r0cketsk8ts"))
            assert r.status_code == 401
    finally:
        async with api_client(drpd, auth=None) as anon:
            token = Authenticator((drpd.state_dir / "token.key").read_bytes(),
                                  user_of=lambda u: _stored_user(drpd, u)).issue("rocketskates", 60)
            r = await anon.delete("/users/rocketskates", params={"token": token})
            assert r.status_code == 200


def _stored(drpd: DrpdProcess, prefix: str, key: str) -> dict | None:
    conn = sqlite3.connect(f"file:{drpd.state_dir / 'drpd.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT data FROM objects WHERE prefix=? AND key=?",
                           (prefix, key)).fetchone()
    finally:
        conn.close()
    return None if row is None else json.loads(row[0])


def _stored_user(drpd: DrpdProcess, name: str) -> object | None:
    data = _stored(drpd, "users", name)
    if data is None:
        return None
    from drpd.models import User

    return User(Name=name, PasswordHash=data.get("PasswordHash", ""),
                Secret=data.get("Secret", ""))


def test_passwordless_user_does_not_satisfy_the_bind_guard(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True) as proc:
        r = httpx.post(proc.endpoint + "/api/v3/users", json={"Name": "admin"}, auth=proc.auth)
        assert r.status_code == 201
    # the guard runs before any socket is bound: nothing listens off loopback
    proc = DrpdProcess(state, "--bind", "0.0.0.0", no_tls=True, start_timeout=20)
    try:
        with pytest.raises(RuntimeError, match="set an admin password first"):
            proc.start()
    finally:
        proc.kill()


# -- 11.6 the password hash is out of reach of every patch ---------------------
async def test_json_patch_cannot_reach_the_password_hash(api: httpx.AsyncClient) -> None:
    assert (await api.post("/users", json={"Name": "pat", "Password": "secret-pw", "Roles": ["superuser"]})).status_code == 201
    patch = {"Content-Type": "application/json-patch+json"}
    attempts = [
        [{"op": "test", "path": "/PasswordHash", "value": "x"}],
        [{"op": "test", "path": "/Secret", "value": "x"}],
        [{"op": "test", "path": "/Description", "value": "nope"}],
        [{"op": "copy", "from": "/PasswordHash", "path": "/Description"}],
        [{"op": "move", "from": "/Secret", "path": "/Description"}],
        [{"op": "remove", "path": "/Nope/deeper"}],
        [{"op": "replace", "path": "/Meta/missing/x", "value": "v"}],
    ]
    for ops in attempts:
        r = await api.patch("/users/pat", content=json.dumps(ops), headers=patch)
        assert r.status_code in (409, 422), (ops, r.status_code)
        assert "scrypt" not in r.text and "Validated" not in r.text, r.text
    shown = (await api.get("/users/pat")).json()
    assert shown["Description"] == ""
    assert "PasswordHash" not in shown and "Secret" not in shown
    assert (await api.get("/users", params={"Secret": "x"})).status_code == 400
    # the password still works: nothing above changed the stored user
    async with api_client_for(api, ("pat", "secret-pw")) as pat:
        assert (await pat.get("/info")).status_code == 200


def api_client_for(api: httpx.AsyncClient, creds: tuple[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=str(api.base_url), auth=creds, timeout=30)


# -- 11.8 one cost for every wrong password, bounded, backing off -------------
async def test_unknown_users_cost_a_hash_and_failures_back_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth_module.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    users = {"real": type("U", (), {"PasswordHash": auth_module.hash_password("pw"),
                                    "Secret": "s"})(),
             "empty": type("U", (), {"PasswordHash": "", "Secret": ""})()}
    a = Authenticator(b"k" * 32, user_of=users.get, failures_allowed=2, backoff_max=30)
    for user in ("real", "nobody", "empty"):
        with pytest.raises(auth_module.Unauthorized):
            await a.check_basic(user, "wrong", "10.0.0.1")
    assert len(calls) == 3  # the unknown and the passwordless user cost a hash too
    with pytest.raises(auth_module.Unauthorized):
        await a.check_basic("real", "wrong2", "10.0.0.2")
    # a third failure for "real": from now on it waits, whatever the address
    with pytest.raises(auth_module.Unauthorized):
        await a.check_basic("real", "wrong3", "10.0.0.3")
    with pytest.raises(auth_module.TooManyRequests) as caught:
        await a.check_basic("real", "pw", "10.0.0.4")
    assert caught.value.retry_after >= 1
    # a credential verified before the attack still works (no lock-out of
    # working clients), and another user is not held up
    b = Authenticator(b"k" * 32, user_of=users.get, failures_allowed=1, backoff_max=30)
    await b.check_basic("real", "pw", "10.0.0.9")
    for n in range(3):
        with pytest.raises((auth_module.Unauthorized, auth_module.TooManyRequests)):
            await b.check_basic("real", f"bad{n}", "10.0.0.8")
    assert (await b.check_basic("real", "pw", "10.0.0.9")).name == "real"


def test_failure_tables_are_bounded() -> None:
    table = FailureTable(allowed=1, backoff_max=10, limit=100)
    for n in range(10_000):
        table.fail(f"user{n}", float(n))
    assert len(table) == 100
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff")
    assert client_key("::ffff:10.1.2.3") == "10.1.2.3"


async def test_hashes_run_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    running = 0
    peak = 0
    release = trio.Event()

    def slow(password: str, stored: str) -> bool:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        trio.from_thread.run(release.wait)
        running -= 1
        return False

    monkeypatch.setattr(auth_module, "verify_password", slow)
    a = Authenticator(b"k" * 32, hash_concurrency=2, failures_allowed=10_000)
    outcomes: list[int] = []

    async def attempt(n: int) -> None:
        try:
            await a.check_basic(f"u{n}", "x", f"10.1.{n}.1")
        except DrpError as exc:
            outcomes.append(exc.code)

    async with trio.open_nursery() as nursery:
        for n in range(auth_module.HASH_QUEUE + 20):
            nursery.start_soon(attempt, n)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert peak <= 2
    assert outcomes.count(429) >= 18 and outcomes.count(401) >= 2


async def test_repeated_failures_answer_429_with_retry_after(tmp_path: Path) -> None:
    env = {"DRPD_LOGIN_FAILURES_ALLOWED": "2"}
    with DrpdProcess(tmp_path / "s", no_tls=True, env=env) as proc:
        async with api_client(proc, auth=None) as anon:
            codes = [(await anon.get("/info", headers=basic("rocketskates", f"w{n}"))).status_code
                     for n in range(4)]
            assert codes[:2] == [401, 401] and codes[-1] == 429
            r = await anon.get("/info", headers=basic("rocketskates", "w9"))
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
            assert r.json()["Code"] == 429


# -- 11.9 tokens ------------------------------------------------------------------
async def test_token_ttl_is_capped(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "s", no_tls=True, env={"DRPD_MAX_TOKEN_TTL": "7200"}) as proc:
        async with api_client(proc) as api:
            for ttl in ("7201", "3y", "99999999999999999999"):
                r = await api.get("/users/rocketskates/token", params={"ttl": ttl})
                assert r.status_code in (400, 422) and r.json()["Code"] == r.status_code, ttl
            r = await api.get("/users/rocketskates/token", params={"ttl": "7201"})
            assert r.status_code == 422 and "max_token_ttl" in r.json()["Messages"][0]
            for ttl in ("7200", "2h", "30m"):
                r = await api.get("/users/rocketskates/token", params={"ttl": ttl})
                assert r.status_code == 200, ttl


async def test_a_password_change_ends_the_users_tokens(api: httpx.AsyncClient,
                                                       drpd: DrpdProcess) -> None:
    assert (await api.post("/users", json={"Name": "tok", "Password": "p1", "Roles": ["superuser"]})).status_code == 201
    token = (await api.get("/users/tok/token", params={"ttl": 600})).json()["Token"]
    async with api_client(drpd, auth=None) as anon:
        assert (await anon.get("/info", params={"token": token})).status_code == 200
        # an unrelated change keeps it
        r = await api.patch("/users/tok", json={"Description": "d"})
        assert r.status_code == 200
        assert (await anon.get("/info", params={"token": token})).status_code == 200
        assert (await api.put("/users/tok/password", json={"Password": "p2"})).status_code == 200
        assert (await anon.get("/info", params={"token": token})).status_code == 401
        # and a PATCH setting a password does too
        token = (await api.get("/users/tok/token")).json()["Token"]
        assert (await api.patch("/users/tok", json={"Password": "p3"})).status_code == 200
        assert (await anon.get("/info", params={"token": token})).status_code == 401
        assert (await anon.get("/info", auth=("tok", "p3"))).status_code == 200
        # a user deleted and made again does not take the old tokens back
        token = (await api.get("/users/tok/token")).json()["Token"]
        assert (await api.delete("/users/tok")).status_code == 200
        assert (await api.post("/users", json={"Name": "tok", "Password": "p3", "Roles": ["superuser"]})).status_code == 201
        assert (await anon.get("/info", params={"token": token})).status_code == 401


async def test_an_instance_token_dies_with_its_instance(api: httpx.AsyncClient,
                                                        drpd: DrpdProcess) -> None:
    key = (drpd.state_dir / "token.key").read_bytes()

    def instance_token(name: str) -> str:
        stored = _stored(drpd, "plugins", name)
        assert stored is not None and stored.get("Secret")
        forge = Authenticator(key, instance_secret_of=lambda n: stored["Secret"])
        return forge.issue(f"plugin:{name}", None, instance=name)

    r = await api.post("/plugins", json={"Name": "inst", "Provider": "sdk_echo",
                                         "Secret": "chosen-by-client"})
    assert r.status_code == 201 and "Secret" not in r.json()
    token = instance_token("inst")
    assert _stored(drpd, "plugins", "inst")["Secret"] != "chosen-by-client"
    async with api_client(drpd, auth=None) as anon:
        assert (await anon.get("/info", params={"token": token})).status_code == 200
        assert (await api.patch("/plugins/inst", json={"Description": "d"})).status_code == 200
        assert (await anon.get("/info", params={"token": token})).status_code == 200
        assert (await api.delete("/plugins/inst")).status_code == 200
        assert (await anon.get("/info", params={"token": token})).status_code == 401
        r = await api.post("/plugins", json={"Name": "inst", "Provider": "sdk_echo"})
        assert r.status_code == 201
        assert (await anon.get("/info", params={"token": token})).status_code == 401
        assert (await anon.get("/info", params={"token": instance_token("inst")})).status_code == 200
    assert (await api.delete("/plugins/inst")).status_code == 200


# -- 11.12 non-ASCII credentials are a 401, not a 500 -----------------------------
async def test_non_ascii_credentials_are_refused(drpd: DrpdProcess) -> None:
    async with api_client(drpd, auth=None) as anon:
        headers = [
            basic("rocketskätes", "r0cketsk8ts"),
            basic("rocketskates", "pässwörd"),
            {"Authorization": b"Bearer \xc3\xa9t\xc3\xa9.x"},
            {"Authorization": b"Basic \xc3\xa9\xc3\xa9"},
            {"Authorization": b"B\xe9arer x"},
        ]
        for h in headers:
            r = await anon.get("/machines", headers=h)  # type: ignore[arg-type]
            assert r.status_code == 401, (h, r.text)
        for token in ("été.ça", "a.é", "é"):
            r = await anon.get("/machines", params={"token": token})
            assert r.status_code == 401, token
    assert "Traceback" not in drpd.log_text()


# -- 11.13 the no-auth exception is bound to its route ----------------------------
async def test_only_get_healthz_is_open(drpd: DrpdProcess) -> None:
    async with api_client(drpd, auth=None) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        for method, path in (("POST", "/healthz"), ("PUT", "/healthz/x"), ("DELETE", "/healthz/x"),
                             ("GET", "/healthz/x"), ("PATCH", "/healthz/x")):
            r = await anon.request(method, path, json={"Name": "x"})
            assert r.status_code == 401, (method, path, r.status_code)
