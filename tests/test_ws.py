"""The event websocket, HasPublish forwarding, selected events and ``drpcli events
watch``, against real drpd processes with real trio-websocket clients.

Every wait is on the frame, log line or output line expected, under
``trio.fail_after``; dropped connections are made with a TCP proxy
(``ws_helpers.Proxy``) between a client and drpd.
"""

from __future__ import annotations

import gc
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import install, wait_for, wait_plugin, wrapper_bytes
from .ws_helpers import Client, Lines, Proxy, basic, connect, events, is_notice

FAST = {"DRPD_PLUGIN_DIR_POLL": "0.2", "DRPD_STOP_GRACE": "2", "DRPD_BACKOFF_INITIAL": "1"}


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def post_event(api: httpx.AsyncClient, type_: str, action: str, key: str,
                     obj: Any = None) -> dict[str, Any]:
    r = await api.post("/events", json={"Type": type_, "Action": action, "Key": key,
                                        "Object": obj})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def plugin_drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    """One drpd with the test providers installed, for the provider tests."""
    state = tmp_path_factory.mktemp("plugins") / "state"
    install(state / "plugins", "sdk_echo")
    with DrpdProcess(state, env=FAST) as drpd:
        yield drpd


@pytest.fixture
async def api(shared_drpd: DrpdProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared_drpd) as client:
        yield client


# ------------------------------------------------------------------ the websocket
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
async def test_auth_basic_bearer_token_and_refusals(shared_drpd: DrpdProcess,
                                                    api: httpx.AsyncClient) -> None:
    d = shared_drpd
    for headers in ([], basic("rocketskates", "wrong")):
        with pytest.raises(ConnectionRejected) as info:
            async with connect(d, headers=headers):
                pass
        assert info.value.status_code == 401
        assert json.loads(info.value.body or b"{}")["Code"] == 401
    with pytest.raises(ConnectionRejected) as info:
        async with connect(d, "?token=not-a-token", headers=[]):
            pass
    assert info.value.status_code == 401
    token = (await api.get("/users/rocketskates/token")).json()["Token"]
    for query, headers in (("", [(b"authorization", f"Bearer {token}".encode())]),
                           (f"?token={token}", [])):
        async with connect(d, query, headers=headers) as c:
            ack = (await c.register("a.b.c"))[-1]
            assert ack["Action"] == "register"
    # a since that is not a Seq is refused before the upgrade
    for bad in ("abc", "-1"):
        with pytest.raises(ConnectionRejected) as info:
            async with connect(d, f"?since={bad}"):
                pass
        assert info.value.status_code == 400
        assert "since" in json.loads(info.value.body or b"{}")["Messages"][0]
    del info
    gc.collect()  # trio-websocket leaves a refused connection's socket to the collector


async def test_register_deregister_wildcards_lists_and_no_duplicates(
        shared_drpd: DrpdProcess, api: httpx.AsyncClient) -> None:
    t, other = unique(), unique()
    async with connect(shared_drpd) as c:
        ack = (await c.register(f"{t}.*.*"))[-1]
        assert ack["Type"] == "websocket" and "Seq" not in ack and ack["Key"] == f"{t}.*.*"
        assert isinstance(ack["Object"]["Last"], int)
        await c.register(f"{t},{other}.create,delete.*")  # overlaps the first
        await c.register(f"*.*.{t}.x.y")  # keys may contain dots
        await c.register("machines.create.*")
        posted = [await post_event(api, t, "create", "k1"),  # two patterns: sent once
                  await post_event(api, t, "update", "k2"),
                  await post_event(api, other, "update", "k3")]  # no pattern
        await c.command("deregister", f"{t}.*.*")
        posted += [await post_event(api, t, "update", "k4"),  # no pattern any more
                   await post_event(api, other, "delete", "k5"),
                   await post_event(api, unique(), "any", f"{t}.x.y")]
        machine = (await api.post("/machines", json={"Name": unique("m")})).json()
        frames = await c.until(lambda f: f.get("Key") == machine["Uuid"])
        got = [(f["Action"], f["Key"]) for f in events(c.frames)]
        assert got == [("create", "k1"), ("update", "k2"), ("delete", "k5"),
                       ("any", f"{t}.x.y"), ("create", machine["Uuid"])]
        store_event = frames[-1]
        assert store_event["Type"] == "machines" and store_event["Principal"] == "rocketskates"
        assert store_event["Object"]["Name"] == machine["Name"]
        seqs = [f["Seq"] for f in events(c.frames)]
        assert seqs == sorted(seqs) and posted[0]["Seq"] in seqs
        acks = [f for f in c.frames if is_notice(f)]
        assert [(a["Action"], a["Key"]) for a in acks] == [
            ("register", f"{t}.*.*"), ("register", f"{t},{other}.create,delete.*"),
            ("register", f"*.*.{t}.x.y"), ("register", "machines.create.*"),
            ("deregister", f"{t}.*.*")]


async def test_malformed_frames_get_error_frames(shared_drpd: DrpdProcess,
                                                 api: httpx.AsyncClient) -> None:
    t = unique()
    async with connect(shared_drpd) as c:
        for bad, words in [("hello", "unknown command"), ("register", "empty pattern"),
                           ("register a.b", "2 parts"), ("register a..c", "empty action"),
                           ("deregister x y.z.w", "blanks"), ("register " + "a" * 5000,
                                                              "over the limit")]:
            await c.ws.send_message(bad)
            frame = await c.next()
            assert frame["Type"] == "websocket" and frame["Action"] == "error"
            assert "Seq" not in frame and frame["Object"]["Code"] == 400
            assert words in frame["Object"]["Messages"][0], frame
        await c.ws.send_message(b"\x00\x01")
        frame = await c.next()
        assert frame["Action"] == "error" and "binary" in frame["Object"]["Messages"][0]
        # the connection still works
        await c.register(f"{t}.*.*")
        posted = await post_event(api, t, "after", "errors")
        assert (await c.next())["Seq"] == posted["Seq"]
    # posting a frame of the websocket's own Type is refused
    r = await api.post("/events", json={"Type": "websocket", "Action": "register"})
    assert r.status_code == 400


async def test_resume_with_since_no_gap_no_duplicate(shared_drpd: DrpdProcess,
                                                     api: httpx.AsyncClient) -> None:
    t = unique()
    async with connect(shared_drpd) as c:
        await c.register(f"{t}.*.*")
        first = [await post_event(api, t, "a", str(i)) for i in range(3)]
        await c.until(lambda f: f.get("Seq") == first[-1]["Seq"])
        last_seen = events(c.frames)[-1]["Seq"]
    # published while nobody listens
    behind = [await post_event(api, t, "b", str(i)) for i in range(4)]
    elsewhere = await post_event(api, "x" + t, "b", "0")
    async with connect(shared_drpd, f"?since={last_seen}") as c:
        frames = await c.register(f"{t}.*.*")
        assert [f["Seq"] for f in events(frames)] == [e["Seq"] for e in behind]
        assert is_notice(frames[-1]) and frames[-1]["Object"]["Last"] >= elsewhere["Seq"]
        # another pattern replays only what this connection has not been sent
        frames = await c.register(f"{t},x{t}.*.*")
        assert [f["Seq"] for f in events(frames)] == [elsewhere["Seq"]]
        live = await post_event(api, t, "c", "0")
        frame = await c.next()
        assert frame["Seq"] == live["Seq"]


async def test_a_resume_older_than_the_ring_is_told_of_the_gap(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "state", env={"DRPD_EVENT_RETAIN": "10"}) as d:
        t = unique()
        async with api_client(d) as api:
            posted = [await post_event(api, t, "n", str(i)) for i in range(25)]
        async with connect(d, f"?since={posted[0]['Seq']}") as c:
            frames = await c.register(f"{t}.*.*")
        gap = frames[0]
        assert gap["Action"] == "gap" and gap["Key"] == f"{t}.*.*" and "Seq" not in gap
        assert gap["Object"]["Since"] == posted[0]["Seq"]
        replayed = [f["Seq"] for f in events(frames)]
        assert replayed == [e["Seq"] for e in posted[-10:]]
        assert gap["Object"]["Oldest"] == replayed[0]


async def test_seq_continues_across_restarts(drpd_server: DrpdProcess) -> None:
    async with api_client(drpd_server) as api:
        before = await post_event(api, "restart", "probe", "1")
    drpd_server.restart()
    async with api_client(drpd_server) as api:
        after = await post_event(api, "restart", "probe", "2")
        machine = (await api.post("/machines", json={"Name": "m-after"})).json()
    assert after["Seq"] > before["Seq"]
    # a resume from the earlier run cannot be served: it is told so
    async with connect(drpd_server, f"?since={before['Seq']}") as c:
        frames = await c.register("*.*.*")
    assert frames[0]["Action"] == "gap"
    replayed = events(frames)
    assert replayed[0]["Seq"] == after["Seq"]
    assert replayed[1]["Key"] == machine["Uuid"] and replayed[1]["Seq"] > after["Seq"]


async def test_shutdown_closes_websockets_at_once(drpd_server: DrpdProcess) -> None:
    async with connect(drpd_server) as c:
        await c.register("*.*.*")
        start = time.monotonic()
        await trio.to_thread.run_sync(drpd_server.stop)
        # not held open for hypercorn's graceful period (5 s)
        assert time.monotonic() - start < 4.0
        with pytest.raises(ConnectionClosed) as info:
            await c.next()
        assert info.value.reason is not None and info.value.reason.code == 1001


async def test_a_subscriber_that_never_reads_slows_nobody(tmp_path: Path) -> None:
    """A stalled reader fills its own queue (50 here) and is told what it missed;
    the API and a reading subscriber carry on."""
    total = 300
    pad = "x" * 4000  # frames big enough to fill the socket buffers quickly
    with DrpdProcess(tmp_path / "state", env={"DRPD_EVENT_QUEUE": "50"}) as d:
        t = unique()
        async with api_client(d) as api, connect(d) as stalled, connect(d) as reader:
            await stalled.register(f"{t}.*.*")
            await reader.register(f"{t}.*.*")
            latencies: list[float] = []
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader.until, lambda f: f.get("Key") == str(total - 1), 120)
                    for i in range(total):
                        start = time.perf_counter()
                        await post_event(api, t, "flood", str(i), {"Pad": pad})
                        latencies.append(time.perf_counter() - start)
            got = events(reader.frames)
            assert [f["Key"] for f in got] == [str(i) for i in range(total)]
            assert not [f for f in reader.frames if is_notice(f) and f["Action"] == "overflow"]
            latencies.sort()
            assert latencies[-1] < 5.0, f"a POST took {latencies[-1]:.2f} s"
            # now the stalled one reads: every event either arrives, in order, or
            # is counted by an overflow notice standing where it would have been
            # (the kernel's socket buffers may grow during the flood and take a
            # few more after a first loss, so there can be more than one notice)
            account = {"expected": 0, "first_run": -1, "notices": 0}

            def accounted(frame: dict[str, Any]) -> bool:
                if is_notice(frame):
                    assert frame["Action"] == "overflow" and "Seq" not in frame
                    if account["first_run"] < 0:
                        account["first_run"] = account["expected"]
                    account["expected"] += frame["Object"]["Missed"]
                    account["notices"] += 1
                else:
                    assert int(frame["Key"]) == account["expected"], "in order, none lost"
                    account["expected"] += 1
                return account["expected"] >= total

            await stalled.until(accounted, limit=30)
            assert account["expected"] == total, "every event delivered or counted missed"
            assert account["notices"] >= 1 and 50 <= account["first_run"] < total
            live = await post_event(api, t, "after", "overflow")
            assert (await stalled.next())["Seq"] == live["Seq"]


async def test_hundreds_of_subscribers_each_with_its_own_filter(
        shared_drpd: DrpdProcess, api: httpx.AsyncClient) -> None:
    t, count = unique(), 200
    # the deadline encloses the connections' nurseries (a cancel scope must
    # not close while a nursery opened inside it is still open)
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            clients: list[Client] = []
            for _ in range(count):
                clients.append(await stack.enter_async_context(connect(shared_drpd)))
            async with trio.open_nursery() as nursery:
                for i, c in enumerate(clients):
                    nursery.start_soon(c.register, f"{t}.*.{i},all")
            for i in range(count):
                await post_event(api, t, "one", str(i))
            every = await post_event(api, t, "every", "all")

            async def check(i: int, c: Client) -> None:
                frames = await c.until(lambda f: f.get("Key") == "all", 60)
                assert [f["Key"] for f in events(frames)] == [str(i), "all"]

            async with trio.open_nursery() as nursery:
                for i, c in enumerate(clients):
                    nursery.start_soon(check, i, c)
    assert every["Seq"] > 0


# ------------------------------------------------------------------ providers
async def _create(api: httpx.AsyncClient, name: str, provider: str, **params: Any) -> dict:
    r = await api.post("/plugins", json={"Name": name, "Provider": provider, "Params": params})
    assert r.status_code == 201, r.text
    assert r.json()["Available"], r.json()
    return r.json()


async def _logged(api: httpx.AsyncClient, name: str, pattern: str) -> list[re.Match[str]]:
    log = (await api.get(f"/plugins/{name}/log", params={"lines": "500"})).json()
    return [m for line in log if (m := re.search(pattern, line))]


async def _wait_logged(api: httpx.AsyncClient, name: str, pattern: str, want: set[int],
                       limit: float = 30.0) -> list[int]:
    """Seqs (group 1 of ``pattern``) logged by the instance, once all of ``want`` are."""
    async def check() -> list[int] | None:
        seqs = [int(m.group(1)) for m in await _logged(api, name, pattern)]
        return seqs if want <= set(seqs) else None

    return await wait_for(check, limit)


def _first_occurrences(seqs: list[int]) -> list[int]:
    return list(dict.fromkeys(seqs))


async def test_has_publish_delivers_in_order_across_a_restart(plugin_drpd: DrpdProcess) -> None:
    async with api_client(plugin_drpd) as api:
        await _create(api, "pub1", "sdk_echo", **{"echo/greeting": "hi", "echo/log-events": True})
        t = unique()
        sent = [await post_event(api, t, "n", str(i)) for i in range(10)]
        r = await api.post("/plugins/pub1/restart", params={"wait": "false"})
        assert r.status_code == 200, r.text
        # published while the provider restarts: queued, delivered after it
        sent += [await post_event(api, t, "n", str(i)) for i in range(10, 20)]
        await wait_plugin(api, "pub1", lambda p: p["Available"] and p["Runtime"]["Restarts"] >= 1)
        sent += [await post_event(api, t, "n", str(i)) for i in range(20, 30)]
        expected = [e["Seq"] for e in sent]
        seqs = await _wait_logged(api, "pub1", rf"event (\d+) {t} ", set(expected))
        assert _first_occurrences(seqs) == expected
        # at least once around the restart: at most the event in flight repeats
        assert len(seqs) - len(set(seqs)) <= 1, seqs
        pid = (await api.get("/plugins/pub1")).json()["Runtime"]["Pid"]
        assert pid > 0


async def test_a_slow_has_publish_provider_delays_only_itself(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "sdk_echo")
    # a queue of 20: the slow instance (5 events/s) misses most of the 40
    # posted in well under a second; the quick one, a few ms per event, has
    # room for the burst (at 10 it missed one once the API posted in 2 ms)
    with DrpdProcess(state, env={**FAST, "DRPD_EVENT_QUEUE": "20"}) as d:
        async with api_client(d) as api:
            await _create(api, "slow", "sdk_echo", **{"echo/greeting": "hi",
                                                       "echo/log-events": True,
                                                       "echo/publish-delay": 0.2})
            await _create(api, "quick", "sdk_echo", **{"echo/greeting": "hi",
                                                        "echo/log-events": True})
            t = unique()
            start = time.perf_counter()
            sent = [await post_event(api, t, "n", str(i)) for i in range(40)]
            posting = time.perf_counter() - start
            expected = [e["Seq"] for e in sent]
            seqs = await _wait_logged(api, "quick", rf"event (\d+) {t} ", set(expected))
            assert seqs == expected
            assert posting < 0.2 * 40 / 2, "the API waited for the slow provider"

            async def missed() -> list[str]:
                p = (await api.get("/plugins/slow")).json()
                return [e for e in p["PluginErrors"] if "missed" in e]

            entries = await wait_for(missed, 30)
            assert re.search(r"missed \d+ event\(s\)", entries[0])
            # what it did get, it got in order
            got = [int(m.group(1)) for m in await _logged(api, "slow", rf"event (\d+) {t} ")]
            assert got == sorted(got) and set(got) <= set(expected)


async def test_provider_events_reach_websocket_subscribers(plugin_drpd: DrpdProcess) -> None:
    name = unique("pub")
    async with api_client(plugin_drpd) as api, connect(plugin_drpd) as c:
        await c.register("echo.configured.*")
        await c.register(f"plugins.*.{name}")
        await _create(api, name, "sdk_echo", **{"echo/greeting": "howdy",
                                                "echo/publish-on-config": True})
        frames = await c.until(lambda f: f.get("Action") == "available" and f["Key"] == name)
        by_action = {f["Action"]: f for f in events(frames)}
        configured = by_action["configured"]
        assert configured["Type"] == "echo" and configured["Key"] == name
        assert configured["Principal"] == f"plugin:{name}"
        assert configured["Object"] == {"Greeting": "howdy"}
        assert by_action["create"]["Seq"] < by_action["started"]["Seq"] < configured["Seq"] \
            < by_action["available"]["Seq"]
        assert by_action["started"]["Principal"] == "drpd"
        r = await api.post(f"/plugins/{name}/restart")
        assert r.status_code == 200
        frames = await c.until(lambda f: f.get("Action") == "restarted" and f["Key"] == name)
        assert frames[-1]["Object"] == {"Reason": "requested"}
        await api.delete(f"/plugins/{name}")


async def test_sdk_selected_events_resume_after_a_dropped_connection(
        plugin_drpd: DrpdProcess) -> None:
    port = int(plugin_drpd.endpoint.rsplit(":", 1)[1])
    proxy = Proxy(port)
    async with trio.open_nursery() as nursery, api_client(plugin_drpd) as api:
        await nursery.start(proxy.run)
        # the provider reaches drpd's API (and so its websocket) through the proxy
        body = wrapper_bytes("sdk_watcher", {"RS_ENDPOINT": f"https://127.0.0.1:{proxy.port}"})
        r = await api.post("/plugin_providers/sdk_watcher", content=body)
        assert r.status_code in (200, 201), r.text
        assert r.json()["HasPublish"] is False
        name = unique("w")
        await _create(api, name, "sdk_watcher")
        assert proxy.connections >= 1  # registered before READY!
        key = unique("k")
        sent = [await post_event(api, "watch", "a", key) for _ in range(3)]
        machine = (await api.post("/machines", json={"Name": unique("m")})).json()
        await post_event(api, "ignored", "a", key)  # not selected
        await _wait_logged(api, name, rf"watch (\d+) watch a {key}", {e["Seq"] for e in sent})
        proxy.pause()
        await wait_for(lambda: _logged(api, name, "event stream interrupted"), 30)
        # published while its connection is down
        sent += [await post_event(api, "watch", "a", key) for _ in range(3)]
        r = await api.patch(f"/machines/{machine['Uuid']}", json={"Description": "changed"},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        proxy.resume()
        sent += [await post_event(api, "watch", "a", key) for _ in range(2)]
        expected = [e["Seq"] for e in sent]
        seqs = await _wait_logged(api, name, rf"watch (\d+) watch a {key}", set(expected))
        assert seqs == expected, "lost or repeated events"
        machine_events = await _wait_logged(
            api, name, rf"publish (\d+) machines (\w+) {machine['Uuid']}", set(), 5)
        actions = [m.group(2) for m in await _logged(
            api, name, rf"publish (\d+) machines (\w+) {machine['Uuid']}")]
        assert actions == ["create", "update"] and len(machine_events) == 2
        assert not await _logged(api, name, rf"ignored a {key}")
        assert proxy.connections >= 2
        await api.delete(f"/plugins/{name}")
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ drpcli events watch
async def _watch(drpd: DrpdProcess, *args: str, endpoint: str | None = None,
                 env: dict[str, str] | None = None) -> trio.Process:
    environ = dict(drpd.env)
    environ.update(env or {})
    flags = ["-E", endpoint] if endpoint else []
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "drpd.cli.main", *flags, "events", "watch", "--compact", *args],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def _until_printed(api: httpx.AsyncClient, out: Lines, type_: str) -> list[dict]:
    """Post probes until the watcher prints one (it has registered by then)."""
    probes: list[dict] = []
    with trio.fail_after(30):
        while True:
            probes.append(await post_event(api, type_, "probe", str(len(probes))))
            with trio.move_on_after(0.5):
                line = await out.next(30)
                return [p for p in probes if p["Seq"] >= json.loads(line)["Seq"]]


async def test_cli_watch_prints_events_and_stops_on_sigint(shared_drpd: DrpdProcess,
                                                           api: httpx.AsyncClient) -> None:
    t = unique()
    proc = await _watch(shared_drpd, f"{t}.*.*", f"{t}x.create.*")
    assert proc.stdout is not None and proc.stderr is not None
    out = Lines(proc.stdout)
    try:
        probes = await _until_printed(api, out, t)
        posted = [await post_event(api, t, "a", "k.with.dots"),
                  await post_event(api, t + "x", "update", "no"),
                  await post_event(api, t + "x", "create", "yes")]
        lines = [await out.next() for _ in range(len(probes) - 1 + 2)]
        printed = [json.loads(line) for line in lines]
        assert [p["Seq"] for p in printed] == [p["Seq"] for p in probes[1:]] + [
            posted[0]["Seq"], posted[2]["Seq"]]
        assert all(p.get("Type") != "websocket" for p in printed)  # no acknowledgements
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            code = await proc.wait()
        assert code == 0
        assert await out.rest() == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_watch_resumes_after_a_dropped_connection(shared_drpd: DrpdProcess,
                                                            api: httpx.AsyncClient) -> None:
    port = int(shared_drpd.endpoint.rsplit(":", 1)[1])
    proxy = Proxy(port)
    t = unique()
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        proc = await _watch(shared_drpd, f"{t}.*.*", endpoint=f"https://127.0.0.1:{proxy.port}")
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        try:
            expected = [p["Seq"] for p in await _until_printed(api, out, t)]
            proxy.pause()
            line = await err.next(30)
            assert "interrupted" in line and "resuming" in line
            expected += [(await post_event(api, t, "behind", str(i)))["Seq"] for i in range(5)]
            proxy.resume()
            expected += [(await post_event(api, t, "after", str(i)))["Seq"] for i in range(3)]
            printed = [json.loads(await out.next()) for _ in range(len(expected) - 1)]
            assert [expected[0]] + [p["Seq"] for p in printed] == expected
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        nursery.cancel_scope.cancel()


async def test_cli_watch_refusals_are_one_line(shared_drpd: DrpdProcess) -> None:
    for args, env, words in [
        (["machines"], {}, "expected <type>.<action>.<key>"),
        ([], {"RS_KEY": "rocketskates:wrong"}, "401"),
    ]:
        proc = await _watch(shared_drpd, *args, env=env)
        assert proc.stdout is not None and proc.stderr is not None
        err = Lines(proc.stderr)
        lines = await err.rest(30)
        assert await proc.wait() == 1
        assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], lines
    # events post exists too
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "drpd.cli.main", "events", "post",
             '{"Type": "cli", "Action": "posted", "Key": "k"}'],
            env=shared_drpd.env, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Seq"] > 0
