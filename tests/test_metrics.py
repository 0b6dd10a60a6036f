"""Prometheus metrics: the collectors in-process, and a real drpd scraped."""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from drpd.metrics import Metrics, is_failing
from drpd.testing import DrpdProcess

from .helpers import api_client
from .plugin_helpers import alive, install, wait_for

FAST = {"DRPD_PLUGIN_DIR_POLL": "0.2", "DRPD_STOP_GRACE": "2", "DRPD_BACKOFF_INITIAL": "1"}


def samples(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels); parsing is the check."""
    if isinstance(text, bytes):
        text = text.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@dataclass
class FakeSup:
    state: str = "running"
    available: bool = True
    errors: list[str] = field(default_factory=list)
    restarts: int = 0
    crashes: int = 0


@dataclass
class FakeManager:
    supervisors: dict[str, FakeSup]


class FakeBus:
    published = 12
    subscribers = 3


def test_state_read_at_scrape_time() -> None:
    m = Metrics(process=False)
    sups = {"a": FakeSup(restarts=2, crashes=1),
            "b": FakeSup(state="backoff", available=False, errors=["crashed: exit status 3"]),
            "c": FakeSup(state="left", available=False, errors=["the provider left"])}
    manager = FakeManager(sups)
    bus = FakeBus()
    m.bind(manager=manager, bus=bus, version="9.9")
    got = samples(m.render())
    assert got[("drpd_plugin_instances", (("state", "running"),))] == 1
    assert got[("drpd_plugin_instances", (("state", "backoff"),))] == 1
    assert got[("drpd_plugin_instances", (("state", "waiting"),))] == 0
    assert got[("drpd_plugin_instances_failing", ())] == 1  # left on purpose is not failing
    assert got[("drpd_plugin_restarts_total", (("instance", "a"),))] == 2
    assert got[("drpd_plugin_crashes_total", (("instance", "a"),))] == 1
    assert got[("drpd_plugin_available", (("instance", "b"),))] == 0
    assert got[("drpd_events_published_total", ())] == 12
    assert got[("drpd_event_subscribers", ())] == 3
    assert got[("drpd_build_info", (("version", "9.9"),))] == 1
    # bus counters another part may add appear without a change here
    assert ("drpd_events_dropped_total", ()) not in got
    bus.dropped = 4  # type: ignore[attr-defined]
    # the next scrape sees the changes: nothing to keep in step
    sups["b"].crashes = 5
    del sups["c"]
    got = samples(m.render())
    assert got[("drpd_events_dropped_total", ())] == 4
    assert got[("drpd_plugin_crashes_total", (("instance", "b"),))] == 5
    assert ("drpd_plugin_available", (("instance", "c"),)) not in got


def test_observe_action_counts_calls_and_latency() -> None:
    mine = Metrics(process=False)
    # the dispatcher gets this bound method by constructor (no process-wide singleton)
    mine.observe_action("plain_provider", "ping", 0.003, 200)
    mine.observe_action("plain_provider", "ping", 0.2, 200)
    mine.observe_action("plain_provider", "ping", 61.0, 504)
    got = samples(mine.render())
    calls = ("drpd_action_calls_total",)
    assert got[(*calls, (("command", "ping"), ("provider", "plain_provider"), ("status", "200")))] == 2
    assert got[(*calls, (("command", "ping"), ("provider", "plain_provider"), ("status", "504")))] == 1
    labels = (("command", "ping"), ("provider", "plain_provider"))
    assert got[("drpd_action_duration_seconds_count", labels)] == 3
    assert got[("drpd_action_duration_seconds_bucket", (*labels[:1], ("le", "0.005"),
                                                        *labels[1:]))] == 1
    assert got[("drpd_action_duration_seconds_bucket", (*labels[:1], ("le", "+Inf"),
                                                        *labels[1:]))] == 3


def test_is_failing() -> None:
    assert not is_failing(FakeSup())
    assert not is_failing(FakeSup(state="starting", available=False))
    assert is_failing(FakeSup(state="starting", available=False, errors=["crashed"]))
    assert is_failing(FakeSup(state="waiting", available=False, errors=["missing param"]))


async def test_scrape_counts_a_crash_and_requests(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install(state / "plugins", "plain_provider")
    with DrpdProcess(state, env={**FAST, "DRPD_METRICS_PORT": "0"}) as drpd:
        async with api_client(drpd) as api:
            r = await api.post("/plugins", json={"Name": "m1", "Provider": "plain_provider"})
            assert r.json()["Available"], r.text
            pid = r.json()["Runtime"]["Pid"]
            assert (await api.get("/info", auth=("rocketskates", "wrong"))).status_code == 401
            assert (await api.get("/plugins/m1")).status_code == 200
            assert (await api.get("/nosuchkind-x1")).status_code == 404
            assert (await api.get("/metrics", auth=None)).status_code == 401
            assert (await api.get("/healthz", auth=None)).text == "ok\n"

            first = samples((await api.get("/metrics")).text)
            assert first[("drpd_plugin_instances", (("state", "running"),))] == 1
            assert first[("drpd_plugin_available", (("instance", "m1"),))] == 1
            assert first[("drpd_plugin_crashes_total", (("instance", "m1"),))] == 0
            assert first[("drpd_process_open_fds", ())] > 0

            os.kill(pid, signal.SIGKILL)

            async def recovered() -> dict | None:
                got = samples((await api.get("/metrics")).text)
                crashed = got[("drpd_plugin_crashes_total", (("instance", "m1"),))] == 1
                back = got[("drpd_plugin_available", (("instance", "m1"),))] == 1
                return got if crashed and back else None

            after = await wait_for(recovered, 15)
            assert not alive(pid)
            assert after[("drpd_plugin_restarts_total", (("instance", "m1"),))] >= 1
            # requests by URL rule, not by raw path (bounded label values); the
            # object router's <prefix> is named only when it is a stored kind
            routes = {dict(labels)["route"]: value for (name, labels), value in after.items()
                      if name == "drpd_api_requests_total"}
            assert not [r for r in routes if "m1" in r or "x1" in r], routes
            statuses = {(dict(labels)["route"], dict(labels)["status"])
                        for (name, labels), _ in after.items() if name == "drpd_api_requests_total"}
            assert ("/api/v3/info", "401") in statuses
            assert ("/api/v3/plugins", "201") in statuses
            assert ("/api/v3/plugins/<path:rest>", "200") in statuses
            assert ("/api/v3/<prefix>", "404") in statuses
            assert ("/api/v3/metrics", "200") in statuses
            assert ("/api/v3/healthz", "200") in statuses
            assert after[("drpd_api_request_duration_seconds_count",
                          (("method", "GET"), ("route", "/api/v3/info")))] >= 1
            # an action call is counted per provider, command and status
            assert (await api.post("/system/actions/ping?plugin=m1")).status_code == 200
            scraped = samples((await api.get("/metrics")).text)
            calls = {labels: value for (name, labels), value in scraped.items()
                     if name == "drpd_action_calls_total"}
            assert calls == {(("command", "ping"), ("provider", "plain_provider"),
                              ("status", "200")): 1}, calls

        # the unauthenticated listener serves the same numbers and nothing else
        match = re.search(r"metrics without authentication on (http://\S+/metrics)",
                          drpd.log_text())
        assert match, drpd.log_text()
        async with httpx.AsyncClient(timeout=10) as plain:
            r = await plain.get(match.group(1))
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            assert samples(r.text)[("drpd_plugin_crashes_total", (("instance", "m1"),))] == 1
            assert (await plain.get(match.group(1).replace("/metrics", "/info"))).status_code == 404
            assert (await plain.post(match.group(1))).status_code == 405
