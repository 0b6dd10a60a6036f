"""The file space: ``/api/v3/files``, ``drpcli files``, and the static port.

Against real drpds: one shared per module, and one with a small
``max_file_size`` for the size limit. drpcli runs as a subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drpd.client import files_path
from drpd.testing import DrpdProcess

from .test_cli import cli_env, drpcli, failed, ok, sh

PROVIDERS = Path(__file__).parent / "providers"


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    with DrpdProcess(tmp_path_factory.mktemp("files") / "state") as server:
        yield server


@pytest.fixture
def env(drpd: DrpdProcess) -> dict[str, str]:
    return cli_env(drpd)


@pytest.fixture
def api(drpd: DrpdProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=drpd.endpoint + "/api/v3", auth=drpd.auth, verify=drpd.verify,
                      timeout=30) as client:
        yield client


def static_url(api: httpx.Client) -> str:
    return f"http://127.0.0.1:{api.get('/info').json()['file_port']}"


def raw_get(port: int, target: str, auth: bool = False, tls: bool = False) -> bytes:
    """One HTTP/1.1 GET sent as written: no client folds ``..`` away."""
    headers = "Host: x\r\nConnection: close\r\n"
    if auth:
        headers += "Authorization: Basic " + base64.b64encode(b"rocketskates:r0cketsk8ts").decode()
        headers += "\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        s = context.wrap_socket(s)
    with s:
        s.sendall(f"GET {target} HTTP/1.1\r\n{headers}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".upload-*")]


# -- drpcli --------------------------------------------------------------------


def test_upload_list_download_destroy(env: dict[str, str], drpd: DrpdProcess,
                                      tmp_path: Path, api: httpx.Client) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "blob.bin"
    local.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()

    # without `as`, the basename; with it, directories are created
    assert ok(drpcli(env, "files", "upload", str(local))) == {
        "Path": "blob.bin", "Size": len(payload), "Sha256": digest}
    stored = ok(drpcli(env, "files", "upload", str(local), "as", "isos/sub/b.bin"))
    assert stored["Path"] == "isos/sub/b.bin" and stored["Sha256"] == digest
    assert {"blob.bin", "isos/"} <= set(ok(drpcli(env, "files", "list")))
    assert ok(drpcli(env, "files", "list", "isos")) == ["sub/"]
    assert ok(drpcli(env, "files", "list", "isos/sub/")) == ["b.bin"]

    # to a file, into a directory, to stdout
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "copy.bin"
    assert drpcli(env, "files", "download", "isos/sub/b.bin", "to", str(target)).returncode == 0
    assert target.read_bytes() == payload
    assert drpcli(env, "files", "download", "isos/sub/b.bin", "to", str(out_dir)).returncode == 0
    assert (out_dir / "b.bin").read_bytes() == payload
    piped = sh(env, "drpcli files download isos/sub/b.bin | sha256sum")
    assert piped.returncode == 0 and piped.stdout.split()[0] == digest

    # a failed download leaves the target as it was, and no partial file
    target.write_bytes(b"old")
    line = failed(drpcli(env, "files", "download", "isos/nope.bin", "to", str(target)))
    assert "404" in line
    line = failed(drpcli(env, "files", "download", "isos/sub", "to", str(target)))
    assert "is a directory" in line and "files list" not in line
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in out_dir.iterdir()) == ["b.bin", "copy.bin"]

    # destroy: a file, then a directory only once it is empty
    assert "not empty" in failed(drpcli(env, "files", "destroy", "isos"))
    # drpcli says what upstream's says; the API answers what was removed
    assert drpcli(env, "files", "destroy", "isos/sub/b.bin").stdout == "Deleted isos/sub/b.bin\n"
    assert drpcli(env, "files", "destroy", "isos/sub").stdout == "Deleted isos/sub\n"
    assert not (drpd.state_dir / "files" / "isos" / "sub").exists()
    r = api.delete("/files/isos/")
    assert r.status_code == 200 and r.json() == {"Path": "isos/", "Size": 0}
    assert "404" in failed(drpcli(env, "files", "destroy", "isos"))
    assert drpcli(env, "files", "destroy", "blob.bin").stdout == "Deleted blob.bin\n"
    assert leftovers(drpd.state_dir / "files") == []
    assert "not a regular file" in failed(drpcli(env, "files", "upload", str(tmp_path)))


def test_replace_is_atomic_and_answers_200(api: httpx.Client) -> None:
    assert api.post("/files/r/one.txt", content=b"first").status_code == 201
    r = api.post("/files/r/one.txt", content=b"second")
    assert r.status_code == 200 and r.json()["Size"] == 6
    assert api.get("/files/r/one.txt").content == b"second"
    head = api.head("/files/r/one.txt")
    assert head.status_code == 200 and head.headers["Content-Length"] == "6"
    assert api.get("/files", params={"path": "/r"}).json() == ["one.txt"]  # DRP's form
    assert api.delete("/files/r/one.txt").status_code == 200
    assert api.delete("/files/r/").status_code == 200


def test_kinds_in_the_way(api: httpx.Client) -> None:
    assert api.post("/files/k/f", content=b"x").status_code == 201
    assert api.post("/files/k", content=b"x").status_code == 409  # a directory is there
    assert api.post("/files/k/f/g", content=b"x").status_code == 409  # a file is in the way
    assert api.post("/files/k/", content=b"x").status_code == 422  # not a file name
    assert api.get("/files/k/f/").status_code == 404  # not a directory
    assert api.put("/files/k/f", content=b"x").status_code == 405
    assert api.delete("/files").status_code == 403
    assert api.delete("/files/k/f").status_code == 200
    assert api.delete("/files/k").status_code == 200


# -- refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("%2e%2e/drpd.db", "leaves the file space"),
        ("a/%2E%2E/%2e%2e/drpd.db", "leaves the file space"),
        ("%2Fetc%2Fpasswd", "absolute"),
        ("/etc/passwd", "absolute"),
        ("a%00b", "control character"),
        (".upload-x", "drpd's own temporaries"),
        ("escape/drpd.db", "symlink"),
        ("escape/", "symlink"),
    ],
)
def test_api_refuses_paths_out_of_the_file_space(api: httpx.Client, drpd: DrpdProcess,
                                                 path: str, why: str) -> None:
    link = drpd.state_dir / "files" / "escape"
    if not link.is_symlink():
        link.symlink_to(drpd.state_dir)
    # "escape/" names the link as a directory: only reading it would go out
    for method in ("GET",) if path.endswith("/") else ("GET", "POST", "DELETE"):
        r = api.request(method, "/files/" + path, content=b"x" if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
        error = r.json()
        assert error["Code"] == 403 and why in error["Messages"][0], error
    # nothing was written through the link, and drpd's state is intact
    assert not (drpd.state_dir / "x").exists()
    assert (drpd.state_dir / "drpd.db").stat().st_size > 0
    assert api.get("/info").status_code == 200


def test_client_sends_dot_segments_for_drpd_to_refuse() -> None:
    assert files_path("a/../b") == "/files/a/%2E%2E/b"
    assert files_path("/etc/passwd") == "/files//etc/passwd"
    assert files_path("") == "/files"


def test_raw_dot_segments_refused_on_both_ports(api: httpx.Client, drpd: DrpdProcess) -> None:
    api_port = int(drpd.endpoint.rsplit(":", 1)[1])
    static_port = int(static_url(api).rsplit(":", 1)[1])
    answer = raw_get(api_port, "/api/v3/files/../../drpd.db", auth=True, tls=not drpd.no_tls)
    assert answer.startswith(b"HTTP/1.1 403") and b"leaves the file space" in answer
    for target in ("/files/../drpd.db", "/files/%2e%2e/drpd.db", "/files/escape/drpd.db",
                   "/files//etc/passwd", "/files/a/../../drpd.db"):
        answer = raw_get(static_port, target)
        assert answer.startswith(b"HTTP/1.1 404"), (target, answer[:200])
        assert b"SQLite" not in answer and b"root:" not in answer


def test_early_refusal_keeps_the_connection_usable(api: httpx.Client) -> None:
    big = b"y" * 2_000_000  # more than socket buffers hold: drpd must read or close
    r = api.post("/files/.hidden", content=big)
    assert r.status_code == 403
    r = api.post("/files/plugin_providers/bad%20name", content=big)
    assert r.status_code == 422
    assert api.get("/info").status_code == 200


def test_api_needs_auth_static_port_does_not(api: httpx.Client, drpd: DrpdProcess) -> None:
    api.post("/files/pub/hello.txt", content=b"hello static")
    url = drpd.endpoint + "/api/v3/files/pub/hello.txt"
    assert httpx.get(url, verify=drpd.verify).status_code == 401
    got = httpx.get(static_url(api) + "/files/pub/hello.txt")
    assert got.status_code == 200 and got.content == b"hello static"
    assert got.headers["content-type"].startswith("text/plain")
    assert httpx.post(static_url(api) + "/files/pub/hello.txt", content=b"x").status_code == 405
    assert httpx.delete(static_url(api) + "/files/pub/hello.txt").status_code == 405
    assert httpx.get(static_url(api) + "/files/pub/hello.txt").content == b"hello static"


# -- size limit ------------------------------------------------------------------


def test_oversize_upload_refused(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "s", env={"DRPD_MAX_FILE_SIZE": "1024"}, no_tls=True) as drpd:
        env = cli_env(drpd)
        with httpx.Client(base_url=drpd.endpoint + "/api/v3", auth=drpd.auth) as api:
            r = api.post("/files/deep/big.bin", content=b"z" * 4096)
            assert r.status_code == 413 and r.json()["Code"] == 413
            assert not (drpd.state_dir / "files" / "deep").exists()  # refused before mkdir

            def chunked() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
                for _ in range(8):
                    yield b"z" * 512

            assert api.post("/files/big.bin", content=chunked()).status_code == 413
            assert api.post("/files/small.bin", content=b"z" * 1024).status_code == 201
            assert api.get("/files").json() == ["small.bin"]
        big = tmp_path / "big.bin"
        big.write_bytes(b"z" * 5000)
        line = failed(drpcli(env, "files", "upload", str(big)))
        assert "413" in line and "1024" in line
        assert leftovers(drpd.state_dir / "files") == []
        assert not (drpd.state_dir / "files" / "big.bin").exists()


# -- provider installs through the file space ---------------------------------------


def test_upload_as_plugin_provider(env: dict[str, str], drpd: DrpdProcess, api: httpx.Client,
                                   tmp_path: Path) -> None:
    provider = ok(drpcli(env, "files", "upload", str(PROVIDERS / "sdk_echo.py"),
                         "as", "plugin_providers/sdk_echo"))
    assert provider["Name"] == "sdk_echo" and provider["Version"] == "1.2.3"
    assert provider["Sha256"] == hashlib.sha256((PROVIDERS / "sdk_echo.py").read_bytes()
                                                ).hexdigest()
    names = [p["Name"] for p in ok(drpcli(env, "plugin_providers", "list"))]
    assert "sdk_echo" in names
    # its unpacked assets are plain files of the file space, served by the static port
    assert ok(drpcli(env, "files", "list", "plugin_providers/sdk_echo")) == [
        "data/", "echo-helper.sh"]
    got = httpx.get(static_url(api) + "/files/plugin_providers/sdk_echo/data/readme.txt")
    assert got.content == b"sdk_echo assets\n"
    # deleting that directory is not removing the provider: drpd says how
    line = failed(drpcli(env, "files", "destroy", "plugin_providers/sdk_echo"))
    assert "not empty" in line and "DELETE /plugin_providers/sdk_echo" in line

    # a file that is not a provider: one line, nothing installed
    bad = tmp_path / "bad"
    bad.write_text("#!/bin/sh\necho 'not a provider' >&2\nexit 3\n")
    line = failed(drpcli(env, "files", "upload", str(bad), "as", "plugin_providers/bad"))
    assert "422" in line and "define" in line
    # a provider under another name: refused with the reason
    line = failed(drpcli(env, "files", "upload", str(PROVIDERS / "sdk_echo.py"),
                         "as", "plugin_providers/other"))
    assert "defines provider 'sdk_echo', not 'other'" in line
    names = [p["Name"] for p in ok(drpcli(env, "plugin_providers", "list"))]
    assert "bad" not in names and "other" not in names
    plugins = drpd.state_dir / "plugins"
    assert sorted(p.name for p in plugins.iterdir()) == ["sdk_echo"]
    assert not (drpd.state_dir / "files" / "plugin_providers" / "bad").exists()
    # deeper paths are plain files
    stored = ok(drpcli(env, "files", "upload", str(bad), "as", "plugin_providers/sdk_echo2/x"))
    assert stored["Path"] == "plugin_providers/sdk_echo2/x"
    assert drpcli(env, "files", "destroy", "plugin_providers/sdk_echo2/x").returncode == 0
    assert json.loads(api.delete("/plugin_providers/sdk_echo").text)["Name"] == "sdk_echo"
