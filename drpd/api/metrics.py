"""The API's side of the metrics: request counts by route, and ``GET /api/v3/metrics``.

The numbers live in ``drpd.metrics.Metrics`` (below the API, importing
nothing of drpd); this module hooks the Quart app to it.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, request

from ..metrics import UNMATCHED, Metrics
from .current import g
from .objects import read_body

#: where ``instrument`` keeps the app's Metrics (hot_routes counts there too)
METRICS_KEY = "DRPD_METRICS"


def route_label(rule: str, prefix: object, kinds: object) -> str:
    """The URL rule, with ``<prefix>`` filled in when it names a stored kind.

    The generic object router serves every prefix from one rule; naming
    the kind (a bounded set: built-in ones and providers' StoreObjects)
    tells machines from profiles without letting a client mint labels.
    """
    if isinstance(prefix, str) and isinstance(kinds, dict) and prefix in kinds:
        return rule.replace("<prefix>", prefix, 1)
    return rule


def instrument(app: Any, metrics: Metrics) -> None:
    """Count every request of a Quart ``app`` by URL rule, and serve ``/api/v3/metrics``.

    Call it before the app registers its other ``before_request`` hooks, so
    requests refused by authentication are timed too. The route gets the
    app's authentication like every other path.
    """

    @app.before_request
    async def _metrics_start() -> None:
        g.metrics_t0 = time.perf_counter()

    app.config[METRICS_KEY] = metrics

    def route() -> str:
        if request.url_rule is None:
            return UNMATCHED
        context = app.config.get("DRPD")
        return route_label(request.url_rule.rule, (request.view_args or {}).get("prefix"),
                           getattr(getattr(context, "store", None), "kinds", {}))

    @app.after_request
    async def _metrics_count(response: Any) -> Any:
        t0 = g.get("metrics_t0")
        metrics.observe_request(request.method, route(), response.status_code,
                                None if t0 is None else time.perf_counter() - t0)
        return response

    @app.route("/api/v3/metrics", methods=["GET"])
    async def get_metrics() -> Response:
        await read_body()  # an unread body stalls a keep-alive connection (STACK-NOTES.md)
        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)
