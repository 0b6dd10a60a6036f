"""Small helpers shared by the tests."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import httpx

from drpd.testing import DrpdProcess


@asynccontextmanager
async def api_client(drpd: DrpdProcess, **kw: object) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=drpd.endpoint + "/api/v3", auth=kw.pop("auth", drpd.auth),  # type: ignore[arg-type]
        verify=drpd.verify, timeout=kw.pop("timeout", 30), **kw,  # type: ignore[arg-type]
    ) as client:
        yield client


_S = TypeVar("_S", bound=socketserver.BaseServer)


@contextmanager
def serving(server: _S) -> Iterator[_S]:
    """Run a stdlib HTTP server (a test's receiver) in a thread while in the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
