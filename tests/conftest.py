from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpd.testing import DrpdProcess

from .pg_cluster import PgCluster, pg_bindir


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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (Debian's postgresql), for the session.

    Skipped where the server binaries are missing, except under ``CI=true``
    (``make test`` installs them through tools/ensure-system-packages).
    """
    if pg_bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and PostgreSQL's server binaries are missing")
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database in the session's cluster."""
    return pg_cluster.create_database(f"t{uuid.uuid4().hex[:16]}")
