"""drpd's files are its user's alone, whatever the umask (issue 11, item 10)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from drpd.plugins import runtime
from drpd.testing import DrpdProcess


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """drpd is started as a child, which inherits the umask."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_backup_and_state_dir_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with umask(0), DrpdProcess(state, no_tls=True) as drpd:
        r = httpx.post(drpd.endpoint + "/api/v3/profiles", json={"Name": "p"}, auth=drpd.auth)
        assert r.status_code == 201
        assert mode(state) == 0o700
        for name in ("drpd.db", "drpd.db-wal", "drpd.db-shm", "token.key"):
            assert mode(state / name) == 0o600, name
        dest = tmp_path / "copy.db"
        done = subprocess.run([sys.executable, "-m", "drpd.daemon", "backup", str(dest),
                               "--state-dir", str(state)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert mode(dest) == 0o600
    # an existing state directory and store made with a loose umask are tightened
    os.chmod(state, 0o755)
    os.chmod(state / "drpd.db", 0o644)
    with umask(0o022), DrpdProcess(state, no_tls=True):
        assert mode(state) == 0o700 and mode(state / "drpd.db") == 0o600


def test_runtime_dir_cannot_be_taken_first_by_another_user(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # the name drpd used to pick in /tmp, taken first (another user would make
    # a directory of their own; a file shows the same without root)
    digest = hashlib.sha256(str(state.absolute()).encode()).hexdigest()[:10]
    squatted = Path("/tmp") / f"drpd-{os.getuid()}-{digest}"
    squatted.write_text("mine")
    try:
        env = {"RUNTIME_DIRECTORY": "", "XDG_RUNTIME_DIR": ""}
        with DrpdProcess(state, no_tls=True, env=env) as drpd:
            assert httpx.get(drpd.endpoint + "/api/v3/healthz").status_code == 200
    finally:
        squatted.unlink()


def test_runtime_dir_is_private_and_unpredictable(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    # an XDG_RUNTIME_DIR others can write is not used
    loose = tmp_path / "xdg"
    loose.mkdir()
    os.chmod(loose, 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(loose))
    first, second = runtime.runtime_dir(state), runtime.runtime_dir(state)
    try:
        assert first != second and first.parent == Path("/tmp")
        assert mode(first) == 0o700 and first.stat().st_uid == os.getuid()
    finally:
        first.rmdir()
        second.rmdir()
    # a private one is used, and its subdirectory checked before use
    os.chmod(loose, 0o700)
    path = runtime.runtime_dir(state)
    assert path.parent == loose
    runtime.prepare(path)
    assert mode(path) == 0o700
    os.chmod(path, 0o777)
    try:
        runtime.prepare(path)
    except runtime.RuntimeDirError:
        pass
    else:
        raise AssertionError("a runtime directory others can write was used")

