"""Clients that try to break drpd: fuzzing, huge names, traversal, bad tokens, slow bodies."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from .scale import seconds

CREDS = base64.b64encode(b"rocketskates:r0cketsk8ts")


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("hostile") / "state"
    with DrpdProcess(state, no_tls=True, env={"DRPD_BODY_TIMEOUT": "1"}) as proc:
        yield proc


def schemathesis() -> str:
    found = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    assert found, "schemathesis is not installed: pip install -e '.[test]'"
    return found


def test_schemathesis_finds_no_server_error(drpd: DrpdProcess, tmp_path: Path) -> None:
    """Fuzz every operation of /api/v3/openapi.json: no 5xx, no crash."""
    budget = int(seconds(40, 600))
    result = subprocess.run(
        [schemathesis(), "run", f"{drpd.endpoint}/api/v3/openapi.json",
         "--auth", "rocketskates:r0cketsk8ts", "--checks", "not_a_server_error",
         "--max-time", str(budget), "--workers", "2",
         "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=budget + 120, cwd=tmp_path,
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "Traceback" not in drpd.log_text(), drpd.log_text()[-3000:]
    assert drpd.proc is not None and drpd.proc.poll() is None


async def test_huge_names_and_paths(drpd: DrpdProcess) -> None:
    async with api_client(drpd) as api:
        huge = "n" * (1024 * 1024 + 1)
        r = await api.post("/profiles", json={"Name": huge})
        assert r.status_code == 422 and len(r.text) < 2000
        r = await api.post("/params", json={"Name": "a/" * 600_000})
        assert r.status_code in (413, 422)
        # a 200 KB request line (httpx refuses to send one): refused or hung up on
        host, port = drpd.endpoint.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        answer = b""
        try:
            await stream.send_all(b"GET /api/v3/profiles/" + b"x" * 200_000 +
                                  b" HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + CREDS +
                                  b"\r\n\r\n")
            with trio.fail_after(10):
                answer = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            pass  # drpd hung up while we were still sending: refused
        finally:
            await stream.aclose()
        assert answer == b"" or answer.split(b" ")[1] in (b"400", b"404", b"414", b"431")
        assert (await api.get("/info")).status_code == 200


async def test_traversal_in_provider_names(drpd: DrpdProcess) -> None:
    async with api_client(drpd) as api:
        for name in ("..", "../../etc/passwd", ".hidden", "a/b", "%2e%2e"):
            r = await api.post(f"/plugin_providers/{name}", content=b"#!/bin/sh\nexit 1\n")
            assert r.status_code in (404, 405, 422), (name, r.status_code)
        listing = os.listdir(drpd.state_dir / "plugins")
        assert listing == []


async def test_wrong_and_expired_tokens(drpd: DrpdProcess) -> None:
    from drpd.auth import Authenticator

    key = (drpd.state_dir / "token.key").read_bytes()
    forge = Authenticator(key, default_user=True)
    other = Authenticator(b"k" * 32, default_user=True)
    async with api_client(drpd, auth=None) as api:
        cases = {
            "expired": forge.issue("rocketskates", -1),
            "wrong key": other.issue("rocketskates", 60),
            "unknown user": forge.issue("mallory", 60),
            "garbage": "not-a-token",
            "bad signature": "eyJ1IjoiYSJ9.AAAA",
        }
        for what, token in cases.items():
            r = await api.get("/machines", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, what
            assert r.json()["Code"] == 401
        good = forge.issue("rocketskates", 60)
        assert (await api.get("/machines", params={"token": good})).status_code == 200


async def test_slow_loris_does_not_hold_drpd(drpd: DrpdProcess) -> None:
    host, port = drpd.endpoint.removeprefix("http://").split(":")
    streams = []
    for _ in range(50):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            b"POST /api/v3/machines HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + CREDS +
            b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"Na")
        streams.append(stream)
    # while fifty bodies hang, everyone else is served
    async with api_client(drpd) as api:
        with trio.fail_after(5):
            assert (await api.get("/info")).status_code == 200
    # and each slow body is cut off by the body timeout (1 s here)
    with trio.fail_after(15):
        for stream in streams:
            answer = await stream.receive_some(65536)
            assert b" 408 " in answer.split(b"\r\n")[0]
            await stream.aclose()


async def test_a_low_privilege_user_cannot_escalate(drpd: DrpdProcess) -> None:
    """A user trusted to manage users and roles and to read, not to be
    superuser nor to read Secure values: every way up is a 403 that changes
    nothing, and each is counted."""
    async with api_client(drpd) as admin:
        for path, body in (
                ("/params", {"Name": "bmc/pin", "Secure": True, "Schema": {"type": "string"}}),
                ("/machines", {"Name": "vault", "Params": {"bmc/pin": "1234"}}),
                ("/roles", {"Name": "user-admin", "Claims": [
                    {"scope": "users,roles", "action": "*", "specific": "*"}]}),
                ("/users", {"Name": "eve", "Password": "eve-pw",
                            "Roles": ["user-admin", "read-only"]})):
            r = await admin.post(path, json=body)
            assert r.status_code == 201, r.text
        vault = (await admin.get("/machines/Name:vault")).json()["Uuid"]
        before = (await admin.get("/metrics")).text
        async with api_client(drpd, auth=("eve", "eve-pw")) as eve:
            attempts = [
                ("PATCH", "/users/eve", {"Roles": ["user-admin", "superuser"]}),
                ("PATCH", "/users/eve", [{"op": "add", "path": "/Roles/-", "value": "superuser"}]),
                ("POST", "/roles", {"Name": "all", "Claims": [
                    {"scope": "*", "action": "*", "specific": "*"}]}),
                ("PUT", "/roles/user-admin", {"Name": "user-admin", "Claims": [
                    {"scope": "*", "action": "*", "specific": "*"}]}),
                ("PUT", "/roles/read-only", {"Name": "read-only", "Claims": []}),
                ("POST", "/users", {"Name": "eve2", "Password": "x", "Roles": ["superuser"]}),
                ("POST", "/users", {"Name": "rocketskates", "Password": "mine"}),
                ("GET", f"/machines/{vault}?decode=true", None),
                ("GET", f"/machines/{vault}/params?decode=true", None),
                ("GET", f"/machines/{vault}/params/bmc/pin?decode=true", None),
                ("GET", "/machines?decode=true", None),
                ("GET", f"/machines/{vault}?aggregate=true&decode=true", None),
                ("POST", "/plugins", {"Name": "p", "Provider": "x", "ExtraClaims": [
                    {"scope": "*", "action": "*", "specific": "*"}]}),
            ]
            for method, url, body in attempts:
                r = await eve.request(method, url, json=body)
                assert r.status_code == 403, (method, url, r.status_code, r.text)
                assert "1234" not in r.text
            # a refusal does not echo (or log) a caller's huge key in full
            r = await eve.patch("/machines/" + "k" * 60_000, json={"Description": "x"})
            assert r.status_code == 403 and len(r.text) < 1000, len(r.text)
            # a token for rocketskates holds no more than eve does
            stolen = (await eve.get("/users/rocketskates/token")).json()["Token"]
            wide = (await eve.get("/users/eve/token", params={"roles": "superuser"})).json()
            for token in (stolen, wide["Token"]):
                async with api_client(drpd, auth=None,
                                      headers={"Authorization": f"Bearer {token}"}) as thief:
                    assert (await thief.post("/machines", json={"Name": "x"})).status_code == 403
                    r = await thief.get(f"/machines/{vault}", params={"decode": "true"})
                    assert r.status_code == 403 and "1234" not in r.text
        assert (await admin.get("/users/eve")).json()["Roles"] == ["user-admin", "read-only"]
        for gone in ("/roles/all", "/users/eve2", "/users/rocketskates", "/plugins/p"):
            assert (await admin.get(gone)).status_code == 404, gone
        assert (await admin.get("/roles/user-admin")).json()["Claims"] == [
            {"scope": "users,roles", "action": "*", "specific": "*"}]
        after = (await admin.get("/metrics")).text

    def denied(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("drpd_api_denied_total{"))

    assert denied(after) - denied(before) >= len(attempts) + 1
    assert "k" * 1000 not in drpd.log_text()
