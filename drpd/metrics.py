"""Prometheus metrics: what drpd counts, and how it is scraped.

Two kinds of numbers, kept apart on purpose:

- **Events drpd observes as they happen** (an action call and its latency,
  an API request and its status) go into ``prometheus_client`` counters and
  histograms the moment they happen, through ``observe_action`` and the
  hooks ``instrument`` adds to the API app.
- **State that already lives somewhere** (instances by state, each
  instance's restarts and crashes, the event bus's counters, subscribers)
  is read at scrape time by a custom collector. Nothing has to remember to
  update a gauge, the numbers cannot drift from the truth, and the bus and
  the supervisors need no metrics code of their own. An instance's series
  disappear with the instance, so cardinality follows the store.

Everything is registered in one ``CollectorRegistry`` per ``Metrics``
object, never in prometheus_client's global registry: a test can build
several, and nothing a library registers globally leaks into drpd's scrape.

Who calls what: the daemon creates one ``Metrics`` and ``bind``s the plugin
side and the bus to it; the action dispatcher gets its ``observe_action``
by constructor; the API app counts requests through ``drpd.api.metrics``
(which also serves ``/api/v3/metrics``). This module imports nothing of
drpd: it sits below every part that reports to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: supervisor states (drpd/plugins/supervisor.py), each exported even at 0
#: so a dashboard's series do not come and go
STATES = ("waiting", "starting", "running", "backoff", "stopping", "left", "stopped")
#: bus attributes exported as counters when the bus has them: the events
#: engineer may add counters; they appear here without a change to drpd.bus
BUS_COUNTERS = (
    ("published", "drpd_events_published", "Events published on the bus."),
    ("delivered", "drpd_events_delivered", "Events delivered to subscribers."),
    ("dropped", "drpd_events_dropped",
     "Events dropped because a subscriber's queue was full."),
)
ACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0, 30.0, 60.0)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
               30.0)
UNMATCHED = "<unmatched>"


class Metrics:
    """drpd's metrics and the registry they are scraped from."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.action_calls = Counter(
            "drpd_action_calls", "Action calls, by provider, command and HTTP status.",
            ["provider", "command", "status"], registry=self.registry)
        self.action_seconds = Histogram(
            "drpd_action_duration_seconds", "Time from an action call to its answer.",
            ["provider", "command"], buckets=ACTION_BUCKETS, registry=self.registry)
        self.api_requests = Counter(
            "drpd_api_requests",
            "API requests, by method, route (the URL rule, not the raw path) and status.",
            ["method", "route", "status"], registry=self.registry)
        self.api_seconds = Histogram(
            "drpd_api_request_duration_seconds", "Time to answer an API request.",
            ["method", "route"], buckets=API_BUCKETS, registry=self.registry)
        self.denied = Counter(
            "drpd_api_denied",
            "Requests refused for a missing claim (403), by the claim's scope and action.",
            ["scope", "action"], registry=self.registry)
        self.state = StateCollector()
        self.registry.register(self.state)
        if process:
            # CPU, memory and open file descriptors (200 instances hold many)
            ProcessCollector(namespace="drpd", registry=self.registry)

    def bind(self, *, manager: Any = None, bus: Any = None, version: str = "") -> None:
        """Name what the scrape-time collector reads (duck-typed, see ``StateCollector``)."""
        self.state.manager = manager
        self.state.bus = bus
        self.state.version = version

    def observe_action(self, provider: str, command: str, seconds: float,
                       status: int | str) -> None:
        """Count one action call and its latency; call it once per call, any outcome.

        ``status`` is the HTTP status the caller got (200, 422, 503, 504, ...).
        Never raises and never blocks: safe on the action path.
        """
        self.action_calls.labels(provider, command, str(status)).inc()
        self.action_seconds.labels(provider, command).observe(max(0.0, seconds))

    def observe_request(self, method: str, route: str, status: int | str,
                        seconds: float | None) -> None:
        self.api_requests.labels(method, route, str(status)).inc()
        if seconds is not None:
            self.api_seconds.labels(method, route).observe(max(0.0, seconds))

    def render(self) -> bytes:
        """The Prometheus text format of everything (runs the collectors)."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Reads drpd's state at scrape time.

    ``manager`` needs ``supervisors``: a mapping of instance name to objects
    with ``state``, ``available``, ``errors``, ``restarts`` and (optionally)
    ``crashes``. ``bus`` needs ``subscribers`` and any of the attributes in
    ``BUS_COUNTERS``. Either may be None (not running yet).
    """

    def __init__(self) -> None:
        self.manager: Any = None
        self.bus: Any = None
        self.version = ""
        self.started = time.time()

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())

    def _collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("drpd_build_info", "drpd's version; always 1.",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily("drpd_start_time_seconds",
                                "When this drpd started, seconds since the epoch.",
                                value=self.started)
        if self.manager is not None:
            yield from self._instances(dict(self.manager.supervisors))
        if self.bus is not None:
            yield from self._bus(self.bus)

    def _instances(self, supervisors: dict[str, Any]) -> Iterator[Metric]:
        by_state = dict.fromkeys(STATES, 0)
        available = GaugeMetricFamily(
            "drpd_plugin_available", "1 while the instance is Available.", labels=["instance"])
        restarts = CounterMetricFamily(
            "drpd_plugin_restarts",
            "Starts of an instance after its first one (crashes, failed starts, restarts).",
            labels=["instance"])
        crashes = CounterMetricFamily(
            "drpd_plugin_crashes",
            "Provider processes that exited unasked after they were configured.",
            labels=["instance"])
        failing = 0
        for name in sorted(supervisors):
            sup = supervisors[name]
            by_state[sup.state] = by_state.get(sup.state, 0) + 1
            available.add_metric([name], 1 if sup.available else 0)
            restarts.add_metric([name], sup.restarts)
            crashes.add_metric([name], getattr(sup, "crashes", 0))
            failing += is_failing(sup)
        states = GaugeMetricFamily("drpd_plugin_instances", "Plugin instances, by state.",
                                   labels=["state"])
        for state, count in by_state.items():
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily(
            "drpd_plugin_instances_failing",
            "Instances not available because of an error (crash, failed start, bad params).",
            value=failing)
        yield available
        yield restarts
        yield crashes

    def _bus(self, bus: Any) -> Iterator[Metric]:
        for attr, name, doc in BUS_COUNTERS:
            value = getattr(bus, attr, None)
            if isinstance(value, int | float):
                yield CounterMetricFamily(name, doc, value=value)
        subscribers = getattr(bus, "subscribers", None)
        if isinstance(subscribers, int):
            yield GaugeMetricFamily(
                "drpd_event_subscribers",
                "Subscriptions to the event bus (websocket connections and internal consumers).",
                value=subscribers)


def is_failing(sup: Any) -> bool:
    """Not available because something went wrong (not: starting, left on purpose)."""
    return not sup.available and bool(sup.errors) and sup.state != "left"


class MetricsApp:
    """A bare ASGI app for the unauthenticated ``metrics_port`` listener.

    It answers ``GET /metrics`` (Prometheus' default path) and nothing
    else, without the API's framework: a scraper gets the numbers even when
    the API is busy, and the port exposes nothing but them.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] not in ("/metrics", "/api/v3/metrics"):
            status, ctype, body = 404, "text/plain", b"not found: try /metrics\n"
        elif scope["method"] not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain", b"method not allowed\n"
        else:
            status, ctype, body = 200, CONTENT_TYPE_LATEST, self.metrics.render()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})
