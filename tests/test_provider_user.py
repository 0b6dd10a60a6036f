"""``provider_user``: providers run as an unprivileged user and cannot read
drpd's keys or store (issue 11, design question 1). Needs root, as drpd does
for this setting; the suite runs as root here and in CI."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import install, wait_for

USER = "drpd-test-provider"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="provider_user needs root (CI runs as root)")


def uids_of(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def owner_and_mode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_mode & 0o777


@pytest.fixture(scope="module")
def provider_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        return pwd.getpwnam(USER)


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory the provider user can reach (pytest's own tmp is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="drpd-pu-"))
    top.chmod(0o711)
    try:
        yield top / "state"
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("cgroups", ["true", "false"])
async def test_providers_run_as_provider_user_and_cannot_read_drpds_secrets(
        state: Path, provider_user: pwd.struct_passwd, cgroups: str) -> None:
    secrets = [state / "token.key", state / "secure.key", state / "drpd.db"]
    install(state / "plugins", "plain_provider",
            env={"DRPD_TEST_MODE": "snoop", "DRPD_TEST_SNOOP": ":".join(map(str, secrets))})
    with DrpdProcess(state, "--provider-user", USER,
                     env={"DRPD_PROVIDER_CGROUPS": cgroups}) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "s", "Provider": "plain_provider"})
            assert r.status_code == 201 and r.json()["Available"], r.text
            pid = r.json()["Runtime"]["Pid"]
            assert uids_of(pid) == [provider_user.pw_uid] * 4  # real, effective, saved, fs
            log = "\n".join((await api.get("/plugins/s/log")).json())
            assert f"SNOOP uid={provider_user.pw_uid} groups=[]" in log, log
            for path in secrets:
                assert f"SNOOP {path}: denied (Permission denied)" in log, log
            # and it still works end to end: an action, its answer
            r = await api.post("/system/actions/ping?plugin=s")
            assert r.status_code == 200, r.text
            # the keys are drpd's alone
            for path in secrets:
                assert owner_and_mode(path) == (0, 0o600), path
            r = await api.delete("/plugins/s")
            assert r.status_code == 200
            await wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)


async def test_an_unknown_provider_user_stops_drpd_with_a_clear_message(state: Path) -> None:
    with pytest.raises(RuntimeError, match="provider_user 'no-such-user-x': no such user"):
        DrpdProcess(state, "--provider-user", "no-such-user-x", start_timeout=15).start()


def test_a_root_drpd_picks_the_provider_user_on_its_own(
        provider_user: pwd.struct_passwd) -> None:
    """Unset, a root drpd uses the dedicated user (drpd-provider; here the
    test's) when it exists, and falls back to its own user when it does not."""
    from drpd.plugins.identity import DEFAULT_USER, resolve

    assert DEFAULT_USER == "drpd-provider"
    picked = resolve("", default=USER)
    assert picked is not None and (picked.name, picked.uid) == (USER, provider_user.pw_uid)
    assert resolve("", default="no-such-user-x") is None
    # an explicit setting wins over the default
    named = resolve(USER, default="no-such-user-x")
    assert named is not None and named.uid == provider_user.pw_uid
