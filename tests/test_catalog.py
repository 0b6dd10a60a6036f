"""Catalogs: the shipped one, versions, sources, digests, and ``drpcli catalog``.

The rules run in-process; installs run ``drpcli`` as a subprocess against a
real drpd, reading catalogs from files, ``file://`` URLs, the package, and
a local HTTP server on 127.0.0.1 (nothing leaves loopback).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drpd.catalog import (
    Catalog,
    CatalogError,
    CatalogItem,
    catalog_location,
    expected_digest,
    parse_catalog,
    pick,
    read_catalog,
    shipped_catalog,
    source_of,
    version_key,
)
from drpd.cli import main as cli_main
from drpd.testing import DrpdProcess

from .test_cli import DEADLINE, REPO, cli_env, drpcli, failed, ok, sh

PROVIDERS = REPO / "drpd" / "providers"
TEST_PROVIDERS = Path(__file__).parent / "providers"
REGENERATE = ".venv/bin/python tools/make_catalog.py"


def item(name: str, version: str, **kw: Any) -> CatalogItem:
    kw.setdefault("ContentType", "ContentPackage")
    kw.setdefault("Source", f"{name}-{version}.json")
    return CatalogItem(Id=f"{name}-{version}", Name=name, Version=version, **kw)


def catalog_of(*items: CatalogItem, base: str = "/srv/catalog") -> Catalog:
    return Catalog("test-catalog", base, {}, list(items))


# ---------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------


def test_version_order() -> None:
    ordered = ["v2.0.0", "1.10.0", "1.10.0-rc.10", "1.10.0-rc.2", "1.10.0-beta", "1.9",
               "1.2.3"]
    keys = [version_key(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys, reverse=True)  # type: ignore[type-var]
    assert version_key("tip") is None and version_key("stable") is None


def test_pick_newest_stable_unless_asked() -> None:
    cat = catalog_of(item("p", "1.0.0"), item("p", "1.2.0-rc.1"), item("p", "tip"),
                     item("p", "v1.1.0"), item("q", "9.9.9"))
    assert pick(cat, "p").Version == "v1.1.0"
    assert pick(cat, "p", "tip").Version == "tip"
    assert pick(cat, "p", "1.2.0-rc.1").Version == "1.2.0-rc.1"
    assert pick(cat, "p", "1.1.0").Version == "v1.1.0"  # a leading v is not a difference
    assert pick(cat, "p", "v1.0.0").Version == "1.0.0"
    assert [i.Version for i in cat.named("p")] == ["1.2.0-rc.1", "v1.1.0", "1.0.0", "tip"]
    with pytest.raises(CatalogError, match=r"no version '3.0' .*versions: 1.2.0-rc.1, v1.1.0"):
        pick(cat, "p", "3.0")
    with pytest.raises(CatalogError, match=r"no item named 'z' .*items: p, q"):
        pick(cat, "z")
    only_tip = catalog_of(item("t", "tip"), item("t", "2.0.0-alpha"))
    with pytest.raises(CatalogError, match="no stable version .*--version"):
        pick(only_tip, "t")
    assert pick(catalog_of(item("s", "stable"), item("s", "tip")), "s").Version == "stable"


def test_sources_and_digests() -> None:
    templated = item("p", "1", Source="bin/{{.ProvArch}}/{{ .ProvOs }}/p",
                     Shasum256={"amd64/linux": "AB", "any": "cd"})
    assert source_of(templated, catalog_of(base="/srv/c"), "amd64", "linux") == \
        "/srv/c/bin/amd64/linux/p"
    assert source_of(templated, catalog_of(base="http://h:1/c/catalog.json"), "arm64",
                     "linux") == "http://h:1/c/bin/arm64/linux/p"
    assert source_of(item("p", "1", Source="file:///x/y"), catalog_of(), "a", "o") == "/x/y"
    assert source_of(item("p", "1", Source="https://e/x"), catalog_of(), "a", "o") == \
        "https://e/x"
    assert expected_digest(templated, "amd64", "linux") == ("ab", "amd64/linux")
    assert expected_digest(templated, "arm64", "linux") == ("cd", "any")
    with pytest.raises(CatalogError, match="no Shasum256 for arm64/linux or any"):
        expected_digest(item("p", "1", Shasum256={"amd64/linux": "ab"}), "arm64", "linux")


def test_catalog_documents() -> None:
    doc = {"meta": {"Name": "c"}, "sections": {"catalog_items": {
        "x-1": {"Name": "x", "Version": "1", "ContentType": "PluginProvider", "Source": "x",
                "Tip": False, "HotFix": True}}}}  # DRP's extra fields are ignored
    cat = parse_catalog(json.dumps(doc).encode(), location="c.json", base="/")
    assert cat.items[0].Id == "x-1" and cat.items[0].Shasum256 == {}
    with pytest.raises(CatalogError, match="no sections.catalog_items"):
        parse_catalog(b'{"meta": {}, "sections": {}}', location="c.json", base="/")
    with pytest.raises(CatalogError, match="item bad: .*Name"):
        parse_catalog(b'{"sections": {"catalog_items": {"bad": {"Version": "1"}}}}',
                      location="c.json", base="/")
    with pytest.raises(CatalogError, match="not a JSON content bundle"):
        parse_catalog(b"meta: {}", location="c.json", base="/")


def test_catalog_location_precedence() -> None:
    asked: list[int] = []

    def info_url() -> str:
        asked.append(1)
        return "http://drpd-says/catalog.json"

    assert catalog_location("flag.json", {"RS_CATALOG": "env.json"}, info_url) == (
        "flag.json", "--catalog")
    assert catalog_location(None, {"RS_CATALOG": "env.json"}, info_url) == (
        "env.json", "RS_CATALOG")
    assert asked == []  # drpd is asked only when nothing closer names a catalog
    assert catalog_location(None, {}, info_url)[0] == "http://drpd-says/catalog.json"
    assert catalog_location(None, {}, lambda: "") == (
        str(shipped_catalog()), "the catalog shipped with drpd")


def test_cli_reads_catalog_url_from_info(tmp_path: Path) -> None:
    """drpcli in-process: /info's CatalogUrl is used when no flag or RS_CATALOG says."""
    served = tmp_path / "served.json"
    served.write_text(json.dumps({"sections": {"catalog_items": {"from-info-1": {
        "Name": "from-info", "Version": "1", "ContentType": "PluginProvider", "Source": "x"}}}}))
    calls: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"catalog_url": served.as_uri(), "arch": "amd64",
                                         "os": "linux"})

    def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli_main.run(argv, stdin=io.StringIO(), stdout=out, stderr=err, env=env,
                            transport=httpx.MockTransport(reply))
        return code, out.getvalue(), err.getvalue()

    code, out, err = run(["catalog", "items", "list"], {})
    assert code == 0, err
    assert [i["Name"] for i in json.loads(out)] == ["from-info"]
    assert calls == ["/api/v3/info"]
    code, out, _ = run(["catalog", "items", "list"], {"RS_CATALOG": str(shipped_catalog())})
    assert "incrementer" in [i["Name"] for i in json.loads(out)] and len(calls) == 1
    code, out, err = run(["catalog", "items", "list", "--bogus", "x"], {})
    assert code == 1 and "unknown flag '--bogus'" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------
# the shipped catalog
# ---------------------------------------------------------------------------


def test_shipped_catalog_matches_the_providers() -> None:
    cat = read_catalog(str(shipped_catalog()))
    shipped = sorted(p.name for p in PROVIDERS.glob("*.py")
                     if not p.name.startswith("_") and "provider.main()" in p.read_text())
    listed = sorted(Path(i.Source).name for i in cat.items)
    assert listed == shipped, (
        f"drpd/data/catalog.json lists {listed} but drpd/providers has {shipped}: "
        f"run {REGENERATE}")
    for it in cat.items:
        path = Path(source_of(it, cat, "amd64", "linux"))
        assert path.parent == PROVIDERS, it.Source
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        assert found == it.Shasum256["any"], (
            f"drpd/data/catalog.json is stale: {path.name} has sha256 {found}, the catalog "
            f"says {it.Shasum256['any']}: run {REGENERATE}")
        assert it.ContentType == "PluginProvider"


def test_make_catalog_check_agrees() -> None:
    result = subprocess.run([sys.executable, "tools/make_catalog.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------
# drpcli against a real drpd
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    with DrpdProcess(tmp_path_factory.mktemp("catalog") / "state") as server:
        yield server


@pytest.fixture(scope="module")
def info(drpd: DrpdProcess) -> dict[str, Any]:
    return httpx.get(drpd.endpoint + "/api/v3/info", auth=drpd.auth, verify=drpd.verify).json()


def bundle(name: str, version: str) -> bytes:
    return json.dumps({"meta": {"Name": name, "Version": version},
                       "sections": {"params": {f"{name}/param": {
                           "Name": f"{name}/param", "Description": f"from {version}"}}}}).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, info: dict[str, Any]) -> Path:
    """A catalog directory: content bundles in four versions, a bundle whose
    digest is wrong, and a provider under ``<arch>/<os>/``."""
    root = tmp_path_factory.mktemp("repo")
    items: dict[str, Any] = {}

    def add(name: str, version: str, data: bytes, source: str, ctype: str = "ContentPackage",
            digests: dict[str, str] | None = None) -> None:
        target = root / source.replace("{{.ProvArch}}", info["arch"]).replace(
            "{{.ProvOs}}", info["os"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        items[f"{name}-{version}"] = {
            "Id": f"{name}-{version}", "Name": name, "Version": version, "ContentType": ctype,
            "Source": source, "Shasum256": digests or {"any": sha(data)}, "Meta": {}}

    for version in ("1.0.0", "1.1.0", "1.2.0-rc.1", "tip"):
        add("demo", version, bundle("demo", version), f"content/demo-{version}.json")
    add("broken", "1.0.0", bundle("broken", "1.0.0"), "content/broken.json",
        digests={"any": "0" * 64})
    echo = (TEST_PROVIDERS / "sdk_echo.py").read_bytes()
    add("sdk_echo", "1.2.3", echo, "providers/{{.ProvArch}}/{{.ProvOs}}/sdk_echo",
        ctype="PluginProvider", digests={f"{info['arch']}/{info['os']}": sha(echo)})
    add("bad_echo", "1.2.3", echo, "providers/bad_echo", ctype="PluginProvider",
        digests={f"{info['arch']}/{info['os']}": sha(b"something else")})
    (root / "catalog.json").write_text(json.dumps(
        {"meta": {"Name": "test"}, "sections": {"catalog_items": items}}))
    return root


@pytest.fixture(scope="module")
def http_url(repo: Path) -> Iterator[str]:
    """The repo served over HTTP on 127.0.0.1 (a port of its own)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(repo))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/catalog.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def env(drpd: DrpdProcess) -> dict[str, str]:
    return cli_env(drpd)


def content_version(env: dict[str, str], name: str) -> str | None:
    for summary in ok(drpcli(env, "contents", "list")):
        if summary["meta"]["Name"] == name:
            return str(summary["meta"]["Version"])
    return None


def test_items_list_through_jq(env: dict[str, str], http_url: str) -> None:
    result = sh(env, f"drpcli catalog items list --catalog {http_url} | jq -r '.[].Id'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "bad_echo-1.2.3", "broken-1.0.0", "demo-1.2.0-rc.1", "demo-1.1.0", "demo-1.0.0",
        "demo-tip", "sdk_echo-1.2.3"]
    shown = ok(drpcli(env, "catalog", "item", "show", "demo", f"--catalog={http_url}"))
    # upstream's Versions: sorted as strings; drpd's details besides
    assert shown["Versions"] == ["1.0.0", "1.1.0", "1.2.0-rc.1", "tip"]
    assert shown["Type"] == "ContentPackage"
    assert shown["Stable"] == "1.1.0" and shown["ContentType"] == "ContentPackage"
    line = failed(drpcli(env, "catalog", "item", "show", "nope", "-c", http_url))
    assert "no item named 'nope'" in line and "demo" in line


def test_install_content_over_http(env: dict[str, str], http_url: str) -> None:
    # the newest stable version, not the release candidate or tip
    installed = ok(drpcli(env, "catalog", "install", "demo", "--catalog", http_url))
    assert installed["meta"]["Version"] == "1.1.0"
    assert content_version(env, "demo") == "1.1.0"
    # an older version on request replaces it (PUT, since drpd has it)
    ok(drpcli(env, "catalog", "install", "--version", "1.0.0", "demo", "--catalog", http_url))
    assert content_version(env, "demo") == "1.0.0"
    param = ok(drpcli(env, "params", "show", "demo/param"))
    assert param["Description"] == "from 1.0.0" and param["ReadOnly"] is True
    ok(drpcli(env, "catalog", "install", "demo", "--version", "tip", "--catalog", http_url))
    assert content_version(env, "demo") == "tip"
    line = failed(drpcli(env, "catalog", "install", "demo", "--version", "9", "-c", http_url))
    assert "no version '9'" in line


def test_digest_mismatch_installs_nothing(env: dict[str, str], http_url: str,
                                          repo: Path) -> None:
    line = failed(drpcli(env, "catalog", "install", "broken", "--catalog", http_url))
    found = sha((repo / "content" / "broken.json").read_bytes())
    assert f"expected {'0' * 64}, found {found}" in line and "nothing installed" in line
    assert content_version(env, "broken") is None
    line = failed(drpcli(env, "catalog", "install", "bad_echo", "--catalog", http_url))
    assert f"expected {sha(b'something else')}" in line
    assert "bad_echo" not in [p["Name"] for p in ok(drpcli(env, "plugin_providers", "list"))]


def test_install_provider_from_file_url(env: dict[str, str], repo: Path) -> None:
    """A file:// catalog from RS_CATALOG; the Source is filled in with drpd's Arch/Os."""
    env = dict(env, RS_CATALOG=(repo / "catalog.json").as_uri())
    provider = ok(drpcli(env, "catalog", "install", "sdk_echo"))
    assert provider["Name"] == "sdk_echo" and provider["Version"] == "1.2.3"
    assert provider["Sha256"] == sha((TEST_PROVIDERS / "sdk_echo.py").read_bytes())
    # a missing file: one line, nothing installed
    os.rename(repo / "content" / "demo-1.0.0.json", repo / "content" / "gone.json")
    try:
        line = failed(drpcli(env, "catalog", "install", "demo", "--version", "1.0.0"))
        assert "cannot read" in line and "nothing installed" in line
    finally:
        os.rename(repo / "content" / "gone.json", repo / "content" / "demo-1.0.0.json")
    # a plain path works as well as a URL
    env["RS_CATALOG"] = str(repo / "catalog.json")
    assert ok(drpcli(env, "catalog", "item", "show", "sdk_echo"))["Stable"] == "1.2.3"


def test_install_incrementer_from_the_shipped_catalog(env: dict[str, str]) -> None:
    env.pop("RS_CATALOG", None)  # drpd's CatalogUrl is empty: the shipped catalog
    names = [i["Name"] for i in ok(drpcli(env, "catalog", "items", "list"))]
    assert "incrementer" in names
    provider = ok(drpcli(env, "catalog", "install", "incrementer"))
    assert provider["Name"] == "incrementer" and provider["AutoStart"] is True
    assert "incrementer" in [p["Name"] for p in ok(drpcli(env, "plugin_providers", "list"))]
    # AutoStart: drpd made the instance, and it comes up
    waited = drpcli(env, "plugins", "wait", "incrementer", "Available", "true", "30")
    assert waited.stdout == "complete\n", waited.stderr
    plugin = ok(drpcli(env, "plugins", "show", "incrementer"))
    assert plugin["Provider"] == "incrementer" and plugin["Available"] is True


def test_progress_bar_only_on_a_terminal(env: dict[str, str], http_url: str) -> None:
    args = [sys.executable, "-m", "drpd.cli.main", "catalog", "install", "demo",
            "--version", "1.1.0", "--catalog", http_url]
    # piped: nothing on stderr (ok() checks)
    ok(drpcli(env, *args[3:]))
    # a terminal on stderr: a bar that ends its line
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=follower,
                              stdin=subprocess.DEVNULL, timeout=DEADLINE, cwd=REPO)
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["meta"]["Version"] == "1.1.0"
    text = drawn.decode()
    assert re.search(r"demo 1\.1\.0 \[#+\] .*100%", text), text
    assert text.endswith("\n") and "\r" in text
