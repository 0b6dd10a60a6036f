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


async def test_an_unpack_over_max_unpack_size_is_stopped_and_not_installed(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    # an unpack that would fill the disk (and floods its stdout meanwhile):
    # stopped once it passed the bound, long before its 60 s deadline
    env = {"DRPD_MAX_UNPACK_SIZE": str(1 << 20), "DRPD_DEFINE_TIMEOUT": "60"}
    unpack = ('    head -c 100000000 /dev/zero &\n'
              '    while true; do head -c 100000 /dev/zero >> "$dir/grow.bin"; done')
    with DrpdProcess(state, env=env, no_tls=True) as drpd:
        async with api_client(drpd, timeout=40) as api:
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


class SlowPack:
    """A provider whose ``unpack`` hangs while ``flag`` exists (its pid in ``started``)."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.name = name
        self.flag, self.started = tmp_path / f"{name}.slow", tmp_path / f"{name}.started"
        content = json.dumps({"meta": {"Name": name},
                              "sections": {"profiles": {f"{name}-profile": {}}}})
        self.body = shell_provider(name, define={"Content": content}, unpack=SLOW_UNPACK.format(
            flag=self.flag, started=self.started))

    def unpacked(self, state: Path) -> Path:
        return state / "files" / "plugin_providers" / self.name / "asset.txt"

    async def kill_drpd_mid_unpack(self, drpd: DrpdProcess) -> None:
        """Upload it, SIGKILL drpd while its unpack runs, then end the unpack."""
        self.flag.touch()
        async with api_client(drpd) as api, trio.open_nursery() as nursery:
            async def upload() -> None:
                try:
                    await api.post(f"/plugin_providers/{self.name}", content=self.body)
                except httpx.HTTPError:
                    pass  # drpd was killed under it

            nursery.start_soon(upload)
            await wait_for(self.started.exists, 20)
            drpd.kill()
        self.end_unpack()

    def end_unpack(self) -> None:
        if self.started.exists():
            try:
                os.kill(int(self.started.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
            self.started.unlink()


async def test_a_sigkill_during_unpack_is_finished_at_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    slow = SlowPack(tmp_path, "slowpack")
    drpd = DrpdProcess(state, env={"DRPD_DEFINE_TIMEOUT": "30"}, no_tls=True).start()
    try:
        await slow.kill_drpd_mid_unpack(drpd)
        assert not slow.unpacked(state).exists()
        slow.flag.unlink()
        drpd = DrpdProcess(state, no_tls=True).start()
        # finished before drpd served: the file, the record, the bundle
        assert slow.unpacked(state).read_text() == "asset\n"
        assert "install was cut short; finishing it" in drpd.log_text()
        async with api_client(drpd) as api:
            assert (await api.get("/plugin_providers/slowpack")).status_code == 200
            assert (await api.get("/profiles/slowpack-profile")).status_code == 200
        assert not list((state / "files").glob(".unpack-*"))
        drpd.stop()
        # nothing left to finish: the next start is quiet
        drpd = DrpdProcess(state, no_tls=True).start()
        assert "cut short" not in drpd.log_text()
    finally:
        slow.end_unpack()
        drpd.kill()


async def test_a_sigkill_during_unpack_is_repaired_by_a_reupload(tmp_path: Path) -> None:
    state = tmp_path / "state"
    slow = SlowPack(tmp_path, "slowpack")
    drpd = DrpdProcess(state, env={"DRPD_DEFINE_TIMEOUT": "30"}, no_tls=True).start()
    try:
        await slow.kill_drpd_mid_unpack(drpd)
        # the start's attempt to finish fails too (unpack still hangs, 2 s limit)
        drpd = DrpdProcess(state, env={"DRPD_DEFINE_TIMEOUT": "2"}, no_tls=True).start()
        slow.end_unpack()
        assert not slow.unpacked(state).exists()
        async with api_client(drpd) as api:
            # the same file again: installed whole this time
            slow.flag.unlink()
            r = await api.post("/plugin_providers/slowpack", content=slow.body)
            assert r.status_code in (200, 201), r.text
            assert slow.unpacked(state).read_text() == "asset\n"
            assert (await api.get("/profiles/slowpack-profile")).status_code == 200
            # and once whole, the same bytes again change nothing
            r = await api.post("/plugin_providers/slowpack", content=slow.body)
            assert r.status_code == 200, r.text
        assert not (state / "installing" / "slowpack").exists()
    finally:
        slow.end_unpack()
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
