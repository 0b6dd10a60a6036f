"""Three drpd nodes on one PostgreSQL (issue 16): every instance runs on
exactly one node, spread by weight; a killed node's instances run elsewhere
within seconds of its leases ending; a node cut off from the database stops
its providers before another node may start them, so no instance ever runs
twice; a node that comes back takes part again."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio

from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import install, wait_for
from .ws_helpers import Proxy, connect, events

LEASE = 4.0
ENV = {"DRPD_LEASE_SECONDS": str(LEASE), "DRPD_STOP_GRACE": "0.5",
       "DRPD_SHUTDOWN_TIMEOUT": "15", "DRPD_BACKOFF_INITIAL": "0.2"}


def running() -> Counter[str]:
    """How many live processes serve each instance now (their DRPD_PLUGIN)."""
    found: Counter[str] = Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z":
            continue
        for item in env:
            if item.startswith(b"DRPD_PLUGIN="):
                found[item.split(b"=", 1)[1].decode()] += 1
    return found


def node(tmp: Path, name: str, url: str, provider: bool = True) -> DrpdProcess:
    """A node; ``provider``: sdk_echo in its own plugin directory (else it
    gets it from the database, as another node installed it)."""
    state = tmp / name / "state"
    (state / "plugins").mkdir(parents=True)
    if provider:
        install(state / "plugins", "sdk_echo")
    return DrpdProcess(state, "--store", url, env={**ENV, "DRPD_NODE_NAME": name})


@asynccontextmanager
async def started(*nodes: DrpdProcess) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Start the nodes off the event loop (a proxy in it may carry their store)."""
    async with AsyncExitStack() as stack:
        for n in nodes:
            await trio.to_thread.run_sync(n.start)
            stack.push_async_callback(trio.to_thread.run_sync, n.stop)
        clients = [await stack.enter_async_context(api_client(n)) for n in nodes]

        async def all_alive() -> bool:
            listed = (await clients[0].get("/nodes")).json()
            return sum(1 for n in listed if n["State"] == "alive") == len(nodes)

        await wait_for(all_alive, 20)
        yield clients


async def create(api: httpx.AsyncClient, names: list[str]) -> None:
    for name in names:
        r = await api.post("/plugins", json={"Name": name, "Provider": "sdk_echo",
                                             "Params": {"echo/greeting": name}})
        assert r.status_code == 201, r.text


async def placed(api: httpx.AsyncClient, names: list[str], limit: float = 20,
                 not_on: str = "") -> dict[str, dict[str, Any]]:
    """Every instance Available (and not on node ``not_on``), as one node shows
    them; name -> its Runtime."""
    async def check() -> dict[str, dict[str, Any]] | None:
        shown = {p["Name"]: p for p in (await api.get("/plugins")).json()}
        if all(shown.get(n, {}).get("Available") and shown[n]["Runtime"]["Node"] != not_on
               for n in names):
            return {n: shown[n]["Runtime"] for n in names}
        return None

    try:
        return await wait_for(check, limit)
    except trio.TooSlowError:
        raise AssertionError((await api.get("/plugins")).text) from None


async def test_instances_spread_and_fail_over(tmp_path: Path, pg_url: str) -> None:
    # the provider is only in a's plugin directory: b and c install it from the database
    a, b, c = (node(tmp_path, n, pg_url, provider=n == "a") for n in ("a", "b", "c"))
    # one file space for the three, as a shared mount would give them
    (a.state_dir / "files").mkdir()
    for other in (b, c):
        (other.state_dir / "files").symlink_to(a.state_dir / "files")
    names = [f"sp{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    async with started(a, b, c) as (api_a, api_b, api_c):
        # one websocket on b sees the writes made through every node, in Seq order
        async with connect(b) as ws:
            await ws.register("profiles.*.*")
            for i, api in enumerate((api_a, api_c, api_b)):
                r = await api.post("/profiles", json={"Name": f"from-{i}"})
                assert r.status_code == 201, r.text
            seen = events(await ws.until(lambda f: f.get("Key") == "from-2"))
        assert [f["Key"] for f in seen] == ["from-0", "from-1", "from-2"]
        assert [f["Seq"] for f in seen] == sorted(f["Seq"] for f in seen)
        await create(api_a, names)
        runtimes = await placed(api_b, names)
        marks = a.state_dir / "files" / ".drpd-nodes"
        await wait_for(lambda: marks.is_dir() and len(os.listdir(marks)) == 3, 10)
        assert not [e for e in (await api_a.get("/info")).json()["errors"] if "file space" in e]
        # spread evenly (equal weights), each named by the node running it
        assert Counter(r["Node"] for r in runtimes.values()) == {"a": 2, "b": 2, "c": 2}
        assert all(count == 1 for name, count in running().items() if name in names)
        assert set(names) <= set(running())
        # actions, logs and restarts through a node that does not run the instance
        on_c = next(n for n, r in runtimes.items() if r["Node"] == "c")
        m = (await api_a.post("/machines", json={"Name": "fw-m"})).json()
        r = await api_a.post(f"/machines/{m['Uuid']}/actions/echo", params={"plugin": on_c},
                             json={"echo/greeting": "via a"})
        assert r.status_code == 200, r.text
        assert r.json()["Pid"] == runtimes[on_c]["Pid"]
        assert r.json()["Params"]["echo/greeting"] == "via a"
        r = await api_a.post(f"/machines/{m['Uuid']}/actions/echo")
        assert r.status_code == 409, r.text  # six instances offer it, on three nodes
        listed = (await api_a.get(f"/machines/{m['Uuid']}/actions")).json()
        assert "echo" in {a["Command"] for a in listed}
        r = await api_a.get(f"/plugins/{on_c}/log")
        assert r.status_code == 200 and isinstance(r.json(), list), r.text
        r = await api_b.post(f"/plugins/{on_c}/restart")
        assert r.status_code == 200, r.text
        # a token made by one node works on the others (the nodes share the key)
        token = (await api_a.get("/users/rocketskates/token")).json()["Token"]
        async with api_client(c, auth=None,
                              headers={"Authorization": f"Bearer {token}"}) as bearer:
            assert (await bearer.get("/info")).status_code == 200
            r = await bearer.get("/info", headers={"Authorization": f"Bearer {token}x"})
            assert r.status_code == 401
        runtimes = await placed(api_b, names)
        # SIGKILL the node running the first instance: it runs elsewhere
        victim = {"a": a, "b": b, "c": c}[runtimes[names[0]]["Node"]]
        lost = [n for n, r in runtimes.items() if r["Node"] == victim.extra_env["DRPD_NODE_NAME"]]
        survivor = api_a if victim is not a else api_b
        killed_at = trio.current_time()
        victim.kill()
        gone = victim.extra_env["DRPD_NODE_NAME"]
        await placed(survivor, names, limit=LEASE + 10, not_on=gone)
        assert lost and trio.current_time() - killed_at < LEASE + 10
        assert all(count == 1 for name, count in running().items() if name in names)
        # a node that comes back takes part again: the next instance goes to it
        await trio.to_thread.run_sync(victim.start)
        back = gone
        extra = f"sp-back-{uuid.uuid4().hex[:6]}"

        async def rejoined() -> bool:
            listed = (await survivor.get("/nodes")).json()
            return any(n["Name"] == back and n["State"] == "alive" for n in listed)

        await wait_for(rejoined, 20)
        await create(survivor, [extra])
        assert (await placed(survivor, [extra]))[extra]["Node"] == back


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))


async def test_a_node_cut_off_never_leaves_an_instance_running_twice(
        tmp_path: Path, pg_url: str) -> None:
    proxy = Proxy(urlsplit(pg_url).port or 5432)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        a, b = node(tmp_path, "a", pg_url), node(tmp_path, "b", pg_url)
        c = node(tmp_path, "c", _via(pg_url, proxy.port))
        names = [f"pt{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
        most: Counter[str] = Counter()

        async def sample() -> None:
            while True:
                now = await trio.to_thread.run_sync(running)
                for name in names:
                    most[name] = max(most[name], now[name])
                await trio.sleep(0.02)

        async with started(a, b, c) as (api_a, _, api_c):
            await create(api_a, names)
            runtimes = await placed(api_a, names)
            on_c = [n for n, r in runtimes.items() if r["Node"] == "c"]
            assert on_c, runtimes
            sampling = trio.CancelScope()

            async def sampled() -> None:
                with sampling:
                    await sample()

            nursery.start_soon(sampled)
            proxy.pause()  # c's connections cut, new ones held: c cannot reach the database
            try:
                await placed(api_a, names, limit=LEASE + 10, not_on="c")
                # c refuses writes with a clear 503 meanwhile
                with trio.fail_after(20):
                    r = await api_c.post("/machines", json={"Name": "while-cut"})
                assert r.status_code == 503, r.text
                # and it still stops in time, its heartbeat and leases stuck or not
                await trio.to_thread.run_sync(c.stop)
            finally:
                proxy.resume()
            await trio.to_thread.run_sync(c.start)
            # c is back: it takes part again, and nothing ran twice at any time
            async def c_alive() -> bool:
                listed = (await api_a.get("/nodes")).json()
                return any(n["Name"] == "c" and n["State"] == "alive" for n in listed)

            await wait_for(c_alive, 20)
            sampling.cancel()
        nursery.cancel_scope.cancel()  # the proxy, once every node stopped
        assert all(most[name] == 1 for name in names), most


async def test_providers_reach_every_node(tmp_path: Path, pg_url: str) -> None:
    """Uploaded through one node, a provider is installed on every node (its
    executable from the database, checked by Sha256); removed through
    another, it is gone from all of them."""
    a, b = node(tmp_path, "a", pg_url, provider=False), node(tmp_path, "b", pg_url, provider=False)
    source = Path(__file__).parent / "providers" / "plain_provider.py"
    async with started(a, b) as (api_a, api_b):
        r = await api_a.post("/plugin_providers/plain_provider", content=source.read_bytes())
        assert r.status_code == 201, r.text
        sha = r.json()["Sha256"]
        copy = b.state_dir / "plugins" / "plain_provider"

        def fetched() -> bool:
            import hashlib

            return copy.is_file() and hashlib.sha256(copy.read_bytes()).hexdigest() == sha

        await wait_for(fetched, 15)
        assert os.access(copy, os.X_OK)
        names = [f"pp{i}" for i in range(4)]
        for name in names:
            r = await api_b.post("/plugins", json={"Name": name, "Provider": "plain_provider"})
            assert r.status_code == 201, r.text
        runtimes = await placed(api_a, names)
        assert {r["Node"] for r in runtimes.values()} == {"a", "b"}
        # their file spaces are two directories: each says so

        async def unshared() -> bool:
            errors = (await api_a.get("/info")).json()["errors"]
            return any("is not shared with node(s) b" in e for e in errors)

        await wait_for(unshared, 10)
        for name in names:
            r = await api_a.delete(f"/plugins/{name}")
            assert r.status_code == 200, r.text
        r = await api_b.delete("/plugin_providers/plain_provider")
        assert r.status_code == 200, r.text
        original = a.state_dir / "plugins" / "plain_provider"
        await wait_for(lambda: not original.exists(), 15)
        assert (await api_a.get("/plugin_providers/plain_provider")).status_code == 404
