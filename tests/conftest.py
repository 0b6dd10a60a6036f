from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory (UNIX socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="drpdt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def drpd_server(tmp_path: Path) -> Iterator[DrpdProcess]:
    """A fresh real drpd process with its own state directory."""
    with DrpdProcess(tmp_path / "state") as drpd:
        yield drpd


@pytest.fixture(scope="module")
def shared_drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    """One drpd for a whole test module, for tests that do not need a clean store."""
    with DrpdProcess(tmp_path_factory.mktemp("shared") / "state") as drpd:
        yield drpd
