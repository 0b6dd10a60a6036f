"""Event load for ``bench/scale.py``: websocket subscribers and a steady publisher.

    python bench/ws_load.py --endpoint http://127.0.0.1:PORT --subscribers 100 --rate 50

Runs in its own process, so its work does not sit in the measuring client's
event loop. It opens ``--subscribers`` trio-websocket connections to drpd's
``/api/v3/ws`` (Basic auth), each sends ``register *.*.*`` and waits for the
acknowledgement; then prints ``READY`` and starts a publisher that POSTs
``/api/v3/events`` (Type ``bench``) at ``--rate`` events per second on a
fixed schedule, while every subscriber reads and decodes every frame.

With ``--sched-idle`` (Linux ``SCHED_IDLE``) it stands for subscribers on
other machines: it still takes every frame drpd sends, but runs only on a
core nothing else wants.

It stops when its standard input reaches end of file (the parent closes
it) or after ``--max-seconds``, then prints one JSON line of counts:
events published, frames delivered per subscriber, ``overflow`` notices,
and publish-to-receive latency percentiles (wall clock of one machine). The
publisher sends one request at a time on a fixed schedule: when a POST
takes longer than the interval it falls behind, and ``publish_rate`` (the
rate achieved) shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import basic_auth_header, percentile  # noqa: E402


class Stats:
    def __init__(self, subscribers: int) -> None:
        self.received = [0] * subscribers
        self.overflows = 0
        self.closed = 0
        self.latencies: list[float] = []
        self.attempted = 0
        self.published = 0
        self.publish_errors = 0
        self.publish_latencies: list[float] = []
        self.publish_start = 0.0
        self.publish_end = 0.0

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        pub = sorted(self.publish_latencies)
        span = max(self.publish_end - self.publish_start, 1e-9)
        # a POST cut short at the stop may still have published: count attempts
        expected = self.attempted * len(self.received)
        return {
            "subscribers": len(self.received),
            "attempted": self.attempted,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "publish_rate": round(self.published / span, 1),
            "publish_p50_ms": round(percentile(pub, 50) * 1e3, 3) if pub else None,
            "publish_p99_ms": round(percentile(pub, 99) * 1e3, 3) if pub else None,
            "delivered": sum(self.received),
            "delivered_fraction": round(sum(self.received) / expected, 4) if expected else None,
            "min_per_subscriber": min(self.received) if self.received else 0,
            "overflow_notices": self.overflows,
            "closed_early": self.closed,
            "deliveries_per_s": round(sum(self.received) / span, 1),
            "delivery_p50_ms": round(percentile(lat, 50) * 1e3, 3) if lat else None,
            "delivery_p99_ms": round(percentile(lat, 99) * 1e3, 3) if lat else None,
        }


async def subscriber(url: str, header: bytes, index: int, stats: Stats,
                     limiter: trio.CapacityLimiter, registered: list[int],
                     all_registered: trio.Event) -> None:
    """One connection, owned by this task: connect and register (a few at a time),
    then read and decode every frame until cancelled."""
    received = stats.received
    latencies = stats.latencies
    await limiter.acquire()
    holding = True
    try:
        async with open_websocket_url(url, extra_headers=[(b"Authorization", header)],
                                      connect_timeout=30, disconnect_timeout=2) as ws:
            await ws.send_message("register *.*.*")
            with trio.fail_after(30):
                while True:
                    frame = json.loads(await ws.get_message())
                    if frame.get("Type") == "websocket" and frame.get("Action") == "register":
                        break
                    if frame.get("Type") == "websocket" and frame.get("Action") == "error":
                        raise RuntimeError(f"register refused: {frame}")
            limiter.release()
            holding = False
            registered[0] += 1
            if registered[0] == len(received):
                all_registered.set()
            try:
                while True:
                    text = await ws.get_message()
                    now = time.time()
                    frame = json.loads(text)
                    if frame.get("Type") == "bench":
                        received[index] += 1
                        sent = (frame.get("Object") or {}).get("t")
                        if sent:
                            latencies.append(now - sent)
                    elif frame.get("Type") == "websocket" and frame.get("Action") == "overflow":
                        stats.overflows += 1
            except ConnectionClosed:
                stats.closed += 1
    finally:
        if holding:
            limiter.release()


async def publisher(endpoint: str, headers: dict[str, str], rate: float, stats: Stats) -> None:
    interval = 1.0 / rate
    async with httpx.AsyncClient(base_url=endpoint, headers=headers, trust_env=False,
                                 timeout=30) as client:
        start = trio.current_time()
        stats.publish_start = time.perf_counter()
        i = 0
        while True:
            await trio.sleep_until(start + i * interval)
            body = {"Type": "bench", "Action": "tick", "Key": f"k{i}",
                    "Object": {"i": i, "t": time.time(), "pad": "x" * 64}}
            t0 = time.perf_counter()
            stats.attempted += 1
            try:
                r = await client.post("/api/v3/events", json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            stats.publish_latencies.append(time.perf_counter() - t0)
            if ok:
                stats.published += 1
            else:
                stats.publish_errors += 1
            stats.publish_end = time.perf_counter()
            i += 1


async def until_stdin_closes() -> None:
    stream = trio.lowlevel.FdStream(os.dup(0))
    async with stream:
        while await stream.receive_some(1024):
            pass


async def run(args: argparse.Namespace, stats: Stats) -> None:
    url = args.endpoint.replace("http://", "ws://", 1) + "/api/v3/ws"
    headers = basic_auth_header(args.user, args.password)
    header = headers["Authorization"].encode()
    limiter = trio.CapacityLimiter(16)
    registered = [0]
    all_registered = trio.Event()
    with trio.move_on_after(args.max_seconds):
        async with trio.open_nursery() as nursery:
            for i in range(args.subscribers):
                nursery.start_soon(subscriber, url, header, i, stats, limiter, registered,
                                   all_registered)
            with trio.fail_after(120):
                await all_registered.wait()
            print("READY", flush=True)
            nursery.start_soon(publisher, args.endpoint, headers, args.rate, stats)
            await until_stdin_closes()
            await trio.sleep(0.5)  # let the last events arrive
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="drpd's http://127.0.0.1:PORT")
    parser.add_argument("--user", default="rocketskates")
    parser.add_argument("--password", default="r0cketsk8ts")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--sched-idle", action="store_true",
                        help="run only on otherwise idle cores (SCHED_IDLE): clients elsewhere")
    args = parser.parse_args(argv)
    if not args.endpoint.startswith("http://127.0.0.1:"):
        parser.error("loopback plain-HTTP endpoints only")
    if args.sched_idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    stats = Stats(args.subscribers)
    trio.run(run, args, stats)
    print(json.dumps(stats.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
