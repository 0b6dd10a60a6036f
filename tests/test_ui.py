"""The web page's server side (issue 18): assets at /ui/ and the catalog routes.

The page itself is tested in a real browser in test_ui_browser.py; these
tests pin what drpd answers, against a real drpd process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drpd.testing import DrpdProcess

INCREMENTER = Path(__file__).parent.parent / "drpd" / "providers" / "incrementer.py"


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("ui") / "state"
    with DrpdProcess(state, env={"DRPD_STOP_GRACE": "2"}) as proc:
        yield proc


def client(drpd: DrpdProcess, auth: bool = True) -> httpx.Client:
    return httpx.Client(base_url=drpd.endpoint, auth=drpd.auth if auth else None,
                        verify=drpd.verify, timeout=30)


def test_page_and_assets_need_no_credentials_but_the_api_does(drpd: DrpdProcess) -> None:
    with client(drpd, auth=False) as c:
        page = c.get("/ui/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>drpd</title>" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        js = c.get("/ui/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/style.css").headers["content-type"].startswith("text/css")
        bare = c.get("/ui")
        assert bare.status_code == 308 and bare.headers["location"].endswith("/ui/")
        # nothing outside the asset directory, and the API still wants credentials
        for path in ("/ui/nope.js", "/ui/%2e%2e/catalog.json", "/ui/../data/catalog.json",
                     "/ui/.hidden", "/ui/%2e%2e%2f%2e%2e%2fapi.py"):
            r = c.get(path)
            assert r.status_code in (401, 404), path
            assert "catalog_items" not in r.text
        refused = c.get("/api/v3/plugins")
        assert refused.status_code == 401 and refused.json()["Code"] == 401
        assert c.post("/ui/app.js").status_code in (401, 404, 405)


def test_catalog_lists_drpds_catalog(drpd: DrpdProcess) -> None:
    with client(drpd) as c:
        body = c.get("/api/v3/catalog").json()
    assert body["Location"].endswith("catalog.json")
    names = {i["Name"] for i in body["Items"]}
    assert {"incrementer", "callback", "ipmi"} <= names
    item = next(i for i in body["Items"] if i["Name"] == "incrementer")
    assert item["ContentType"] == "PluginProvider" and item["Shasum256"]["any"]


def test_catalog_install_checks_the_digest_and_installs(drpd: DrpdProcess) -> None:
    with client(drpd) as c:
        assert c.get("/api/v3/plugin_providers/ipmi").status_code == 404
        made = c.post("/api/v3/catalog/ipmi/install")
        assert made.status_code == 201, made.text
        assert made.json()["Name"] == "ipmi"
        digest = hashlib.sha256(
            (INCREMENTER.parent / "ipmi.py").read_bytes()).hexdigest()
        assert c.get("/api/v3/plugin_providers/ipmi").json()["Sha256"] == digest
        again = c.post("/api/v3/catalog/ipmi/install?version=1.0.0")
        assert again.status_code == 200
        for path, code in (("/api/v3/catalog/nope/install", 422),
                           ("/api/v3/catalog/ipmi/install?version=9.9.9", 422),
                           ("/api/v3/catalog/..bad/install", 422)):
            r = c.post(path)
            assert r.status_code == code, (path, r.text)
            assert r.json()["Code"] == code and r.json()["Messages"]
        assert c.post("/api/v3/catalog/ipmi/install", auth=None).status_code == 401


def test_catalog_install_refuses_a_digest_mismatch_and_an_oversized_file(tmp_path: Path) -> None:
    """A catalog whose digest does not match its file installs nothing (502);
    nor does a file over max_upload_size (413)."""
    files = tmp_path / "cat"
    files.mkdir()
    shutil.copy(INCREMENTER, files / "incrementer.py")
    digest = hashlib.sha256(INCREMENTER.read_bytes()).hexdigest()
    assert INCREMENTER.stat().st_size > 2048
    (files / "tiny.py").write_text("#!/bin/sh\nexit 0\n")
    catalog = {"meta": {"Name": "bad"}, "sections": {"catalog_items": {
        "incrementer-2.0.0": {"Name": "incrementer", "Version": "2.0.0",
                              "ContentType": "PluginProvider", "Source": "tiny.py",
                              "Shasum256": {"any": "00" * 32}},
        "incrementer-1.5.0": {"Name": "incrementer", "Version": "1.5.0",
                              "ContentType": "PluginProvider", "Source": "incrementer.py",
                              "Shasum256": {"any": digest}}}}}
    (files / "catalog.json").write_text(json.dumps(catalog))
    state = tmp_path / "state"
    env = {"DRPD_CATALOG_URL": str(files / "catalog.json"), "DRPD_MAX_UPLOAD_SIZE": "2048"}
    with DrpdProcess(state, env=env) as proc:
        with client(proc) as c:
            r = c.post("/api/v3/catalog/incrementer/install")
            assert r.status_code == 502, r.text
            assert "does not match" in r.json()["Messages"][0]
            big = c.post("/api/v3/catalog/incrementer/install?version=1.5.0")
            assert big.status_code == 413, big.text
            assert c.get("/api/v3/plugin_providers/incrementer").status_code == 404
            assert c.get("/api/v3/catalog").json()["Items"][0]["Version"] == "2.0.0"
