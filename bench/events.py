"""Benchmark: drpd's event fan-out to websocket subscribers, against a bare broadcast server.

    .venv/bin/python bench/events.py            # full run, about two minutes
    .venv/bin/python bench/events.py --quick    # CI smoke run, tiny sizes

What is measured, in one run (every figure is the median of ``rounds``), for
1, 10 and 100 subscribers:

- drpd (a real ``drpd serve --no-tls`` process, ``DrpdProcess``, default
  ``event_queue``): one publisher POSTs ``/api/v3/events`` (Basic auth,
  requests pipelined on a kept-alive connection with up to ``window`` in
  flight, so one HTTP round trip does not wait for the previous one); every
  subscriber is a trio-websocket connection to ``/api/v3/ws`` that
  registered ``bench.*.*``;
- baseline: ``bench/bare_ws.py``, a bare trio-websocket broadcast server in
  its own process with the same per-subscriber design (bounded queue, one
  sender task each) and nothing else; one publisher sends the same JSON
  frames (the shape and size of drpd's events) over one websocket.

Two measurements per subscriber count:

- *flood*: the publisher sends as fast as it can; the figure is deliveries
  per second (events received by all subscribers over the wall time from
  the first publish to the last receive). The two publishers differ: a
  websocket frame costs the bare publisher far less than an HTTP request
  costs drpd's, so at one subscriber drpd's figure is its publish rate;
- *paced*: both publishers send at the same fixed rate, low enough for
  both servers (``rates``), and the figures are the p50 / p99 of
  publish-to-receive latency (the scheduled send time to each receive, one
  clock: publisher and subscribers are tasks of this process, under trio).
  Flood latencies are mostly queueing behind a faster or slower publisher,
  so they are kept in the JSON but not compared.

And, to put the publish path apart: drpd's ``POST /api/v3/events`` rate
with no subscriber against ``bench/bare_quart.py``'s POST route (a
quart-trio route on hypercorn that reads its JSON body), both driven by
``window`` kept-alive clients.

Every subscriber's queue holds more events than a run publishes (``QUEUE``,
for drpd ``event_queue`` and for the bare server ``--queue``), so nothing
is dropped; a drop would be counted and reported by drpd (its ``overflow``
notice) and would stall the run on the bare server, which tells a
subscriber nothing of what it dropped. The subscribers share this process, so
at 100 subscribers the client side weighs on both servers alike; the timed
publisher runs in a process of its own (``--publish``; its send times come
back on its stdout, on the same monotonic clock), since in this process it
waited its turn behind every subscriber task. Rounds alternate drpd and
baseline so drift hits both. Only 127.0.0.1; every loop
is bounded by its event count and a deadline.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BENCH_DIR,
    LOOPBACK,
    RESULTS_DIR,
    BareQuart,
    Figure,
    Rounds,
    Sample,
    _die_with_parent,
    basic_auth_header,
    client_factory,
    drive,
    expect,
    machine_info,
    print_table,
    stop_process,
    write_results,
)
from drpd.testing import DEFAULT_AUTH, DrpdProcess  # noqa: E402

SUBSCRIBERS = (1, 10, 100)
#: events queued per subscriber on both servers: more than a run publishes
QUEUE = 4096
#: requests the drpd publisher sends on one connection
PER_CONNECTION = 500
PATTERN = "bench.*.*"


@dataclass(frozen=True)
class Sizes:
    rounds: int
    #: events published per flood run, by subscriber count
    events: dict[int, int]
    #: paced runs: events per second and events, by subscriber count
    rates: dict[int, float]
    paced: dict[int, int]
    #: untimed events before each run (every subscriber receives them)
    warmup: int
    #: POSTs in flight for drpd's publisher
    window: int
    #: bytes of padding in each event's Object (drpd's frame is about 300 bytes more)
    pad: int
    #: POSTs per round for the publish-path figure
    posts: int


FULL = Sizes(rounds=3, events={1: 2000, 10: 1000, 100: 400},
             rates={1: 100.0, 10: 50.0, 100: 20.0}, paced={1: 300, 10: 150, 100: 60},
             warmup=20, window=8, pad=200, posts=2000)
QUICK = Sizes(rounds=1, events={1: 100, 10: 60, 100: 20},
              rates={1: 100.0, 10: 50.0, 100: 20.0}, paced={1: 30, 10: 20, 100: 10},
              warmup=5, window=8, pad=200, posts=100)


class _Frame(msgspec.Struct):
    Type: str = ""
    Action: str = ""
    Key: str = ""
    Object: Any = None


_decode = msgspec.json.Decoder(_Frame).decode


# -- the baseline server -------------------------------------------------------------------
class BareWs:
    """``bench/bare_ws.py`` in a child process, on a socket bound here (127.0.0.1:0)."""

    def __init__(self, queue: int = 1000) -> None:
        self.queue = queue
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> BareWs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, 0))
            sock.listen(1024)
            self.port = sock.getsockname()[1]
            self.proc = subprocess.Popen(
                [sys.executable, str(BENCH_DIR / "bare_ws.py"), "--fd", str(sock.fileno()),
                 "--queue", str(self.queue)],
                pass_fds=[sock.fileno()], start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            sock.close()
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)


# -- one measured run --------------------------------------------------------------------------
@dataclass
class Target:
    """How to subscribe and publish on one server."""

    name: str
    sub_url: str
    headers: list[tuple[bytes, bytes]]
    #: send the register frame and wait for its acknowledgement (drpd) or the hello (bare)
    ready: Callable[[WebSocketConnection], Awaitable[None]]
    #: ``publisher(count, first_index, t_send, rate)``: publish events
    #: ``first_index...``, as fast as it can (``rate`` None) or at ``rate`` per
    #: second, recording each one's send time (its scheduled time when paced)
    publisher: Callable[..., Any]
    #: the server's process id (its CPU time is read from /proc)
    pid: int
    #: the command that runs ``publisher`` in a process of its own (``--publish``)
    spawn: list[str]


def event_body(i: int, pad: str) -> dict[str, Any]:
    return {"Type": "bench", "Action": "tick", "Key": str(i), "Object": {"I": i, "Pad": pad}}


async def drpd_ready(ws: WebSocketConnection) -> None:
    await ws.send_message(f"register {PATTERN}")
    while True:
        frame = _decode(await ws.get_message())
        if frame.Type == "websocket" and frame.Action == "register":
            return


async def bare_ready(ws: WebSocketConnection) -> None:
    frame = _decode(await ws.get_message())
    assert frame.Action == "hello", frame


def drpd_target(drpd: DrpdProcess, sizes: Sizes) -> Target:
    token = base64.b64encode(":".join(DEFAULT_AUTH).encode())
    headers = [(b"authorization", b"Basic " + token)]
    assert drpd.proc is not None
    return Target("drpd", drpd.endpoint.replace("http://", "ws://") + "/api/v3/ws", headers,
                  drpd_ready, drpd_publisher(drpd.endpoint, sizes), drpd.proc.pid,
                  _spawn("drpd", drpd.endpoint, sizes))


def _spawn(kind: str, where: str, sizes: Sizes) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--publish", kind, where,
            str(sizes.window), str(sizes.pad)]


def drpd_publisher(endpoint: str, sizes: Sizes) -> Callable[..., Any]:
    token = base64.b64encode(":".join(DEFAULT_AUTH).encode())
    pad = "x" * sizes.pad

    async def publish(count: int, first: int, t_send: list[float], rate: float | None) -> None:
        # one kept-alive connection, up to ``window`` requests pipelined: the
        # publisher's own cost (httpx's would be ~1 ms of this process's CPU
        # per event) must not stand in for drpd's fan-out, since the
        # subscribers share this process (the bare publisher is a websocket)
        port = int(endpoint.rsplit(":", 1)[1])
        head = (f"POST /api/v3/events HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
                f"Authorization: Basic {token.decode()}\r\n"
                "Content-Type: application/json\r\nContent-Length: ").encode()
        start = time.perf_counter()
        # hypercorn closes a connection after keep_alive_max_requests (1000)
        for offset in range(0, count, PER_CONNECTION):
            stream = await trio.open_tcp_stream(LOOPBACK, port)
            batch = range(first + offset, first + min(count, offset + PER_CONNECTION))
            slots = trio.Semaphore(sizes.window)

            async def read_answers(stream: trio.SocketStream, n: int,
                                   slots: trio.Semaphore) -> None:
                reader = _Answers(stream)
                for _ in range(n):
                    status, body = await reader.next()
                    if status != 200:
                        raise RuntimeError(f"POST /events: {status} {body[:300]!r}")
                    slots.release()

            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(read_answers, stream, len(batch), slots)
                for i in batch:
                    if rate is not None:
                        t_send[i] = await _until(start + (i - first) / rate)
                    await slots.acquire()
                    body = msgspec.json.encode(event_body(i, pad))
                    if rate is None:
                        t_send[i] = time.perf_counter()
                    await stream.send_all(head + b"%d\r\n\r\n" % len(body) + body)

    return publish


def bare_target(bare: BareWs, sizes: Sizes) -> Target:
    assert bare.proc is not None
    return Target("bare", f"ws://{LOOPBACK}:{bare.port}/sub", [], bare_ready,
                  bare_publisher(bare.port, sizes), bare.proc.pid,
                  _spawn("bare", str(bare.port), sizes))


def bare_publisher(port: int, sizes: Sizes) -> Callable[..., Any]:
    pad = "x" * sizes.pad
    base = f"ws://{LOOPBACK}:{port}"

    async def publish(count: int, first: int, t_send: list[float], rate: float | None) -> None:
        async with open_websocket_url(base + "/pub") as ws:
            start = time.perf_counter()
            for n, i in enumerate(range(first, first + count)):
                # the same shape and size as the frame drpd sends
                frame = event_body(i, pad) | {"Time": "2026-01-01T00:00:00.000000Z",
                                              "Principal": "rocketskates", "Original": None,
                                              "Seq": 100_000 + i}
                text = msgspec.json.encode(frame).decode()
                if rate is None:
                    t_send[i] = time.perf_counter()
                else:
                    t_send[i] = await _until(start + n / rate)
                await ws.send_message(text)

    return publish


class _Answers:
    """HTTP/1.1 responses read off one stream, in order (status, body); only
    what drpd sends (Content-Length bodies)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            await self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            await self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise RuntimeError("drpd closed the publisher's connection")
        self.buffer += data


async def _until(when: float) -> float:
    """Sleep until ``when`` (perf_counter time); returns it (the scheduled send time)."""
    delay = when - time.perf_counter()
    if delay > 0:
        await trio.sleep(delay)
    return when


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` so far, all its threads, in nanoseconds'
    precision (``schedstat``; ``stat``'s clock ticks are 10 ms)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


async def measure(target: Target, subscribers: int, sizes: Sizes,
                  rate: float | None = None) -> tuple[Sample, int, float]:
    """One run: connect, warm up, publish (a flood, or paced at ``rate``);
    returns the sample, the events missed and the server's CPU seconds
    over the timed part."""
    events = sizes.events[subscribers] if rate is None else sizes.paced[subscribers]
    total = sizes.warmup + events
    t_send = [0.0] * total
    received: list[tuple[int, float]] = []
    last_receive = [0.0]
    missed = [0]
    clock = time.perf_counter
    with trio.fail_after(120 + events / (rate or 50)):
        async with AsyncExitStack() as stack:
            sockets = []
            for _ in range(subscribers):
                ws = await stack.enter_async_context(open_websocket_url(
                    target.sub_url, extra_headers=target.headers, disconnect_timeout=5))
                await target.ready(ws)
                sockets.append(ws)

            async def receive(ws: WebSocketConnection, upto: int, timed: bool) -> None:
                got = 0
                while got < upto:
                    frame = _decode(await ws.get_message())
                    if frame.Type == "websocket":
                        if frame.Action == "overflow":
                            missed[0] += frame.Object["Missed"]
                            got += frame.Object["Missed"]
                        continue
                    now = clock()
                    got += 1
                    if timed:
                        received.append((int(frame.Key), now))
                        if now > last_receive[0]:
                            last_receive[0] = now

            # warm-up: every subscriber sees the first events, untimed
            async with trio.open_nursery() as nursery:
                for ws in sockets:
                    nursery.start_soon(receive, ws, sizes.warmup, False)
                await target.publisher(sizes.warmup, 0, t_send, None)
            # timed: the publisher in a process of its own, so that it does
            # not wait its turn behind a hundred subscriber tasks here (and
            # they not behind it); its send times come back on its stdout
            # (perf_counter is CLOCK_MONOTONIC: one clock for both processes)
            cpu_start = cpu_seconds(target.pid)
            async with trio.open_nursery() as nursery:
                for ws in sockets:
                    nursery.start_soon(receive, ws, events, True)
                done = await trio.run_process(
                    target.spawn + [str(events), str(sizes.warmup), str(rate or 0)],
                    capture_stdout=True)
            cpu = cpu_seconds(target.pid) - cpu_start
            sent = msgspec.json.decode(done.stdout, type=list[float])
            t_send[sizes.warmup:] = sent
            latencies = [now - t_send[index] for index, now in received]
            elapsed = last_receive[0] - min(sent)
    return Sample(len(latencies), elapsed, latencies, subscribers), missed[0], cpu


def publish_main(kind: str, where: str, window: int, pad: int, count: int, first: int,
                 rate: float) -> None:
    """``--publish``: one timed publish, run by ``measure`` in a process of its
    own; prints the send time of each event (a JSON list) when done."""
    sizes = dataclasses.replace(QUICK, window=window, pad=pad)
    publisher = (drpd_publisher(where, sizes) if kind == "drpd"
                 else bare_publisher(int(where), sizes))
    t_send = [0.0] * (first + count)
    trio.run(publisher, count, first, t_send, rate or None)
    sys.stdout.buffer.write(msgspec.json.encode(t_send[first:]))


async def publish_path(drpd: DrpdProcess, bare: BareQuart, sizes: Sizes,
                       results: dict[str, Rounds]) -> None:
    """POST rate with no subscriber: drpd's /events against a bare quart POST route."""
    pad = "x" * sizes.pad
    body = msgspec.json.encode(event_body(0, pad))
    headers = {"Content-Type": "application/json"}

    async def post_event(client: httpx.AsyncClient, worker: int, i: int) -> None:
        expect(await client.post("/api/v3/events", content=body, headers=headers), 200)

    async def post_bare(client: httpx.AsyncClient, worker: int, i: int) -> None:
        expect(await client.post("/post", content=body, headers=headers), 200)

    auth = basic_auth_header(*DEFAULT_AUTH)
    for name, make, op in (
        ("drpd POST /events", client_factory(drpd.endpoint, headers=auth), post_event),
        ("bare POST", client_factory(bare.endpoint), post_bare),
    ):
        sample = await drive(make, op, concurrency=sizes.window, requests=sizes.posts,
                             warmup=2)
        results.setdefault(name, Rounds(name)).add(sample)
        print(f"  {name:>17}: {sample.rate:9,.0f} req/s  p50 {sample.p50_ms:7.2f} ms", flush=True)


def _record(results: dict[str, Rounds], name: str, value: float) -> None:
    """A per-round figure that is no rate (microseconds): kept as the
    ``rate`` of a one-operation Sample, so Rounds takes its median."""
    results.setdefault(name, Rounds(name)).add(Sample(1, 1 / value if value else math.nan, []))


async def publish_cpu(target: Target, count: int) -> float:
    """The server's CPU seconds to take ``count`` events from the publisher
    with no subscriber: what a flood costs before any fan-out."""
    t_send = [0.0] * count
    start = cpu_seconds(target.pid)
    await target.publisher(count, 0, t_send, None)
    return cpu_seconds(target.pid) - start


async def run_round(targets: list[Target], sizes: Sizes, results: dict[str, Rounds],
                    missed: dict[str, int]) -> None:
    for subscribers in SUBSCRIBERS:
        # what taking as many events as the flood costs each server, alone
        # (the publisher's connection set-up included, as in the flood)
        per_event: dict[str, float] = {}
        for target in targets:
            count = sizes.events[subscribers]
            per_event[target.name] = await publish_cpu(target, count) / count
            if subscribers == SUBSCRIBERS[-1]:
                _record(results, f"{target.name} publish cpu", per_event[target.name] * 1e6)
        for rate in (None, sizes.rates[subscribers]):
            for target in targets:
                mode = "flood" if rate is None else "paced"
                name = f"{target.name} {subscribers} sub {mode}"
                sample, lost, cpu = await measure(target, subscribers, sizes, rate)
                results.setdefault(name, Rounds(name)).add(sample)
                missed[name] = missed.get(name, 0) + lost
                cpu_us = cpu / max(1, sample.count) * 1e6
                # the fan-out alone: less what taking the events in cost
                events = sample.count / max(1, subscribers)
                fanout_us = (cpu - events * per_event[target.name]) / max(1, sample.count) * 1e6
                _record(results, name + " cpu", cpu_us)
                _record(results, name + " fan-out cpu", fanout_us)
                print(f"  {name:>20}: {sample.rate:9,.0f} deliveries/s  "
                      f"p50 {sample.p50_ms:7.2f} ms  p99 {sample.p99_ms:7.2f} ms  "
                      f"server CPU {cpu_us:6.1f} us/delivery ({fanout_us:5.1f} fan-out)"
                      + (f"  MISSED {lost}" if lost else ""), flush=True)


def figures_from(results: dict[str, Rounds], sizes: Sizes) -> list[Figure]:
    figs = []
    d, b = results["drpd POST /events"], results["bare POST"]
    figs.append(Figure("publish POST /events, no subscriber", d.rate, "req/s", b.rate,
                       "bare quart POST route, same clients", value_rounds=d.per_round("rate"),
                       baseline_rounds=b.per_round("rate")))
    for n in SUBSCRIBERS:
        label = f"{n} subscriber{'s' if n > 1 else ''}"
        base = f"bare trio-websocket broadcast, {label}"
        rate = sizes.rates[n]
        for mode, what, unit, attr in (
                ("flood", "deliveries (flood)", "events/s", "rate"),
                ("paced", f"latency p50 @{rate:g}/s", "ms", "p50_ms"),
                ("paced", f"latency p99 @{rate:g}/s", "ms", "p99_ms")):
            d, b = results[f"drpd {n} sub {mode}"], results[f"bare {n} sub {mode}"]
            figs.append(Figure(f"{what}, {label}", getattr(d, attr), unit, getattr(b, attr), base,
                               value_rounds=d.per_round(attr), baseline_rounds=b.per_round(attr)))
        d, b = results[f"drpd {n} sub flood cpu"], results[f"bare {n} sub flood cpu"]
        figs.append(Figure(f"server CPU per delivery (flood), {label}", d.rate, "us", b.rate,
                           base, note="drpd's includes its POST /events per event",
                           value_rounds=d.per_round("rate"), baseline_rounds=b.per_round("rate")))
        d, b = results[f"drpd {n} sub flood fan-out cpu"], results[f"bare {n} sub flood fan-out cpu"]
        figs.append(Figure(f"server CPU per delivery, fan-out only, {label}", d.rate, "us",
                           b.rate, base, note="less each server's CPU per event published "
                           "with no subscriber",
                           value_rounds=d.per_round("rate"), baseline_rounds=b.per_round("rate")))
    d, b = results["drpd publish cpu"], results["bare publish cpu"]
    figs.append(Figure("server CPU per event published, no subscriber", d.rate, "us", b.rate,
                       "bare broadcast server taking a websocket frame",
                       note="drpd: POST /api/v3/events (HTTP, auth, Seq)",
                       value_rounds=d.per_round("rate"), baseline_rounds=b.per_round("rate")))
    return figs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--publish"]:
        kind, where, window, pad, count, first, rate = argv[1:8]
        publish_main(kind, where, int(window), int(pad), int(count), int(first), float(rate))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default bench/results/events.json, "
                             "or events-quick.json with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if max(sizes.events.values()) + sizes.warmup >= QUEUE:
        raise SystemExit(f"a flood must fit a subscriber's queue ({QUEUE} events)")
    output = args.output or RESULTS_DIR / ("events-quick.json" if args.quick else "events.json")
    started = time.monotonic()
    meta = machine_info()
    results: dict[str, Rounds] = {}
    missed: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="drpd-bench-events-") as work, \
            DrpdProcess(Path(work) / "drpd", no_tls=True,
                        env={"DRPD_EVENT_QUEUE": str(QUEUE)}) as drpd, \
            BareWs(QUEUE) as bare, \
            BareQuart() as bare_quart:
        targets = [drpd_target(drpd, sizes), bare_target(bare, sizes)]
        for r in range(sizes.rounds):
            print(f"round {r + 1}/{sizes.rounds}: drpd {drpd.endpoint}, bare port {bare.port}",
                  flush=True)
            trio.run(publish_path, drpd, bare_quart, sizes, results)
            trio.run(run_round, targets, sizes, results, missed)
            if drpd.proc is None or drpd.proc.poll() is not None:
                raise RuntimeError(f"drpd exited during the run:\n{drpd.log_text()[-2000:]}")
    figures = figures_from(results, sizes)
    print()
    print_table(figures, title=(
        f"drpd event fan-out, medians of {sizes.rounds} round(s); ratio = drpd / baseline "
        "(of the medians); paired = median of per-round ratios.\n"
        "drpd: POST /api/v3/events -> bus -> /api/v3/ws; baseline: publisher websocket -> "
        "bare trio-websocket broadcast server"))
    duration = time.monotonic() - started
    meta.update(duration_s=round(duration, 1), quick=args.quick, client=(
        "this process: every subscriber as trio tasks; the timed publisher in a process "
        "of its own (bench/events.py --publish); servers on 127.0.0.1 on the same machine"))
    if any(missed.values()):
        print(f"\nevents missed (overflow): {missed}", file=sys.stderr)
    path = write_results(
        output, benchmark="events", meta=meta, figures=figures,
        settings=asdict(sizes) | {"subscribers": list(SUBSCRIBERS), "pattern": PATTERN,
                                  "drpd": f"--no-tls, event_queue {QUEUE}",
                                  "bare_queue": QUEUE},
        measurements={name: r.to_json() | {"missed": missed.get(name, 0)}
                      for name, r in results.items()},
    )
    print(f"\nwrote {path} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
