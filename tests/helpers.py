"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from drpd.testing import DrpdProcess


@asynccontextmanager
async def api_client(drpd: DrpdProcess, **kw: object) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=drpd.endpoint + "/api/v3", auth=kw.pop("auth", drpd.auth),  # type: ignore[arg-type]
        verify=drpd.verify, timeout=kw.pop("timeout", 30), **kw,  # type: ignore[arg-type]
    ) as client:
        yield client
