"""A full disk under the state directory: one clear 507, reads and actions go on,
writes resume once space returns (issue 11, item 20).

The state directory is a small tmpfs mounted by the test (drpd's tests run as
root); where mounting is not possible the test is skipped with the reason,
except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import PROVIDERS, install, wait_plugin


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    state.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs",
                             str(state)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs for the state directory: {result.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break


async def test_a_full_disk_is_507_and_drpd_recovers(small_state: Path) -> None:
    state = small_state
    install(state / "plugins", "plain_provider", "pp", env={"DRPD_TEST_NAME": "pp"})
    provider_bytes = (PROVIDERS / "plain_provider.py").read_bytes().replace(
        b'os.environ.get("DRPD_TEST_NAME", "plain_provider")', b'"late"')
    big = "x" * (512 * 1024)
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            assert (await api.post("/plugins", json={"Name": "pp", "Provider": "pp"})
                    ).status_code == 201
            await wait_plugin(api, "pp", lambda p: p["Available"])
            assert (await api.post("/machines", json={"Name": "m0"})).status_code == 201

            fill(state / "filler")
            try:
                # writes: one clear 507 naming the state directory, nothing stored
                for r in (
                    await api.post("/machines", json={"Name": "m1", "Params": {"big": big}}),
                    await api.post("/profiles", json={"Name": "p1", "Params": {"big": big}}),
                    await api.post("/files/isos/a.bin", content=big.encode()),
                    await api.post("/plugin_providers/late", content=provider_bytes),
                ):
                    assert r.status_code == 507, (r.request.url, r.status_code, r.text)
                    body = r.json()
                    assert body["Code"] == 507
                    assert str(state) in body["Messages"][0], body
                # reads and actions keep working
                names = [m["Name"] for m in (await api.get("/machines")).json()]
                assert names == ["m0"]
                assert (await api.get("/profiles/p1")).status_code == 404
                r = await api.post("/system/actions/ping?plugin=pp")
                assert r.status_code == 200 and r.json()["Pong"], r.text
                assert (await api.get("/info")).status_code == 200
                assert not (state / "plugins" / "late").exists()
            finally:
                (state / "filler").unlink()

            # space is back: writes resume
            r = await api.post("/machines", json={"Name": "m1", "Params": {"big": big}})
            assert r.status_code == 201, r.text
            r = await api.post("/files/isos/a.bin", content=big.encode())
            assert r.status_code == 201, r.text
            r = await api.post("/plugin_providers/late", content=provider_bytes)
            assert r.status_code == 201, r.text
    log = drpd.log_text()
    assert "cannot rollback" not in log
    assert "Traceback" not in log, log[-3000:]
    assert f"no space left in {state}" in log
