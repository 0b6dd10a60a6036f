"""Provider installs that a hostile file, a crash or a name could spoil (issue 11).

Items 11 (define/unpack output read bounded), 13 (StoreObjects named like a
fixed route), 14 (a provider named ``.hidden``), 19 (a SIGKILL during
``unpack``) and 23 (temporaries of a crashed upload swept at start), each
against a real drpd with real provider executables (small shell scripts).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import trio

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..plugin_helpers import wait_for
from .test_event_memory import status_kib


def shell_provider(name: str, *, define: dict | None = None, unpack: str = "",
                   define_script: str = "") -> bytes:
    """A provider as a shell script: ``define`` prints JSON, ``unpack`` runs ``unpack``."""
    answer = {"Name": name, "Version": "1.0", "PluginVersion": 4, "AvailableActions": [],
              **(define or {})}
    define_script = define_script or "    cat <<'EOF'\n" + json.dumps(answer) + "\nEOF"
    return f"""#!/bin/sh
case "$1" in
  define)
{define_script}
    ;;
  unpack)
    dir="$2"
{unpack or "    :"}
    ;;
  *) sleep 3600 ;;
esac
""".encode()


# -- item 11: define and unpack output -------------------------------------------
async def test_a_huge_define_answer_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # 200 MB of define output: refused past max_define_output (1 MB here)
    flood = "    head -c 200000000 /dev/zero\n    echo '{}'"
    env = {"DRPD_MAX_DEFINE_OUTPUT": str(1 << 20)}
    with DrpdProcess(state, env=env, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugin_providers/flood",
                               content=shell_provider("flood", define_script=flood))
            assert r.status_code == 422, r.text
            assert "max_define_output" in r.json()["Messages"][0]
            assert not (state / "plugins" / "flood").exists()
            peak = status_kib(drpd.pid, "VmHWM")
            assert peak < 300 * 1024, f"drpd peaked at {peak} KiB"
            assert (await api.get("/plugin_providers")).json() == []


async def test_an_unpack_over_max_unpack_size_is_not_installed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"DRPD_MAX_UNPACK_SIZE": "100000"}
    unpack = '    head -c 300000 /dev/zero > "$dir/big.bin"\n    head -c 100000000 /dev/zero'
    with DrpdProcess(state, env=env, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugin_providers/bulky",
                               content=shell_provider("bulky", unpack=unpack))
            assert r.status_code == 201, r.text
            assert not (state / "files" / "plugin_providers" / "bulky").exists()
            assert "over max_unpack_size" in drpd.log_text()
            assert not list((state / "files").glob(".unpack-*"))


# -- items 13 and 14: names ---------------------------------------------------------
@pytest.mark.parametrize("prefix", ["healthz", "info", "events", "files", "ws", "system",
                                    "metrics", "openapi.json"])
async def test_store_objects_named_like_a_fixed_route_are_refused(tmp_path: Path,
                                                                  prefix: str) -> None:
    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            body = shell_provider("squatter", define={"StoreObjects": {prefix: {}}})
            r = await api.post("/plugin_providers/squatter", content=body)
            assert r.status_code == 422, r.text
            assert "fixed route" in r.json()["Messages"][0]
            assert not (state / "plugins" / "squatter").exists()
            r = await api.get("/plugin_providers")
            assert r.json() == []
        # and unauthenticated, the fixed route is what answers
        async with httpx.AsyncClient(base_url=drpd.endpoint + "/api/v3") as anonymous:
            r = await anonymous.post(f"/{prefix}", json={"Id": "x"})
            assert r.status_code != 500, r.text


@pytest.mark.parametrize("name", [".hidden", "-dash"])
async def test_a_provider_named_against_the_name_rules_is_refused(tmp_path: Path,
                                                                  name: str) -> None:
    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True) as drpd:
        async with api_client(drpd) as api:
            r = await api.post(f"/plugin_providers/{name}", content=shell_provider(name))
            assert r.status_code == 422, r.text
            # defined as such under an ordinary upload name: refused too
            r = await api.post("/plugin_providers/ordinary", content=shell_provider(name))
            assert r.status_code == 422, r.text
            assert (await api.get("/plugin_providers")).json() == []
    assert sorted(os.listdir(state / "plugins")) == []


# -- item 19: a crash during unpack --------------------------------------------------
SLOW_UNPACK = """    echo asset > "$dir/asset.txt"
    if [ -e "{flag}" ]; then echo $$ > "{started}"; sleep 60; fi"""


async def test_a_sigkill_during_unpack_is_finished_at_start_or_by_a_reupload(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    flag, started = tmp_path / "slow", tmp_path / "started"
    content = json.dumps({"meta": {"Name": "slowpack"},
                          "sections": {"profiles": {"slowpack-profile": {}}}})
    body = shell_provider("slowpack", define={"Content": content},
                          unpack=SLOW_UNPACK.format(flag=flag, started=started))
    unpacked = state / "files" / "plugin_providers" / "slowpack" / "asset.txt"
    env = {"DRPD_DEFINE_TIMEOUT": "30"}
    drpd = DrpdProcess(state, env=env, no_tls=True).start()
    flag.touch()
    try:
        async with api_client(drpd) as api:
            async with trio.open_nursery() as nursery:
                async def upload() -> None:
                    try:
                        await api.post("/plugin_providers/slowpack", content=body)
                    except httpx.HTTPError:
                        pass  # drpd was killed under it

                nursery.start_soon(upload)
                await wait_for(started.exists, 20)
                drpd.kill()
        unpack_pid = int(started.read_text())
        os.kill(unpack_pid, signal.SIGKILL)
        assert not unpacked.exists()

        # a start whose unpack fails again (too slow): still not installed
        started.unlink()
        drpd = DrpdProcess(state, env={"DRPD_DEFINE_TIMEOUT": "2"}, no_tls=True).start()
        async with api_client(drpd) as api:
            assert not unpacked.exists()
            # a re-upload of the same file repairs it
            flag.unlink()
            r = await api.post("/plugin_providers/slowpack", content=body)
            assert r.status_code in (200, 201), r.text
            assert unpacked.read_text() == "asset\n"
            assert (await api.get("/profiles/slowpack-profile")).status_code == 200
        drpd.stop()

        # killed again mid-unpack; this time the next start finishes the install
        import shutil

        shutil.rmtree(unpacked.parent)
        (state / "installing").mkdir(exist_ok=True)
        (state / "installing" / "slowpack").touch()
        drpd = DrpdProcess(state, no_tls=True).start()
        assert unpacked.read_text() == "asset\n"
        assert not (state / "installing" / "slowpack").exists()
        async with api_client(drpd) as api:
            assert (await api.get("/plugin_providers/slowpack")).status_code == 200
    finally:
        if started.exists():
            try:
                os.kill(int(started.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        drpd.kill()


# -- item 23: temporaries of a crashed upload ----------------------------------------
def test_temporaries_of_a_crash_are_swept_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DrpdProcess(state, no_tls=True):
        pass
    leftovers = [
        state / "plugins" / ".upload-abc123",
        state / "files" / ".unpack-x-abc" / "asset",
        state / "files" / "plugin_providers" / ".old-x" / "asset",
        state / "files" / "isos" / "deep" / ".upload-xyz",
        state / "plugins-left.tmp",
        state / "tls" / "server.key.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    kept = state / "files" / "isos" / "deep" / "image.iso"
    kept.write_bytes(b"whole")
    with DrpdProcess(state, no_tls=True) as drpd:
        for path in leftovers:
            assert not path.exists(), path
        assert not (state / "files" / ".unpack-x-abc").exists()
        assert kept.read_bytes() == b"whole"
        assert "left by an earlier run" in drpd.log_text()
