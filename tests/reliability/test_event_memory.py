"""Big events and websocket readers that never read: drpd's memory stays bounded.

Issue 11, item 18: 300 updates of a 1 MB param with two stalled websocket
readers took drpd from 250 MB to 1.8 GB, kept. The replay ring and every
consumer queue are bounded by bytes now; the stalled readers are told what
they missed with an ``overflow`` notice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from drpd.testing import DrpdProcess

from ..helpers import api_client
from ..ws_helpers import Client, basic, ws_url
from .scale import size

UPDATES = size(600, 1_000)
MIB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


@asynccontextmanager
async def reader(drpd: DrpdProcess) -> AsyncIterator[Client]:
    async with open_websocket_url(ws_url(drpd), None, extra_headers=basic(),
                                  max_message_size=16 * MIB, disconnect_timeout=5) as ws:
        try:
            yield Client(ws)
        finally:
            await trio.aclose_forcefully(ws._stream)


async def test_big_events_and_stalled_readers_keep_memory_bounded(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "state", no_tls=True) as drpd:
        async with api_client(drpd) as api, reader(drpd) as a, reader(drpd) as b:
            for client in (a, b):
                await client.ws.send_message("register profiles.*.*")
                assert (await client.next())["Action"] == "register"
            r = await api.post("/profiles", json={"Name": "big", "Params": {}})
            assert r.status_code == 201, r.text
            before = status_kib(drpd.pid, "VmRSS")
            for i in range(UPDATES):
                blob = f"{i:08d}" + "x" * (MIB - 8)
                r = await api.put("/profiles/big", json={"Name": "big", "Params": {"blob": blob}})
                assert r.status_code == 200, r.text
            peak = status_kib(drpd.pid, "VmHWM")
            after = status_kib(drpd.pid, "VmRSS")
            # every update is a ~2 MB event (Object and Original): 1.2 GB or more
            # were published; the ring keeps 64 MiB, each queue 16 MiB
            grown = (max(peak, after) - before) // 1024
            print(f"drpd RSS {before // 1024} MiB before, {after // 1024} after, peak {peak // 1024}")
            assert grown < 400, f"drpd grew {grown} MiB over {UPDATES} updates of 1 MiB"
            # the stalled readers read now: some events, then what they missed
            for client in (a, b):
                with trio.fail_after(60):
                    while True:
                        frame = json.loads(await client.ws.get_message())
                        if frame.get("Type") == "websocket":
                            break
                assert frame["Action"] == "overflow", frame
                assert frame["Object"]["Missed"] > UPDATES // 2
            assert (await api.get("/info")).status_code == 200
