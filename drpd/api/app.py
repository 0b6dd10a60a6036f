"""The quart-trio application of the control API (``/api/v3``)."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..access import Authorizer
from ..metrics import Metrics
from ..models import DrpError, NotFound
from . import (
    actions,
    catalog_routes,
    contents,
    events,
    files,
    guard,
    metrics,
    objects,
    plugins,
    queries,
    sealing,
    system,
    ui,
)
from .context import ApiContext
from .current import bind_quart, g, request
from .errors import drp_error, http_error, unexpected_error

#: routes (endpoint, method) that need no credentials: bound to the route
#: that serves them, so another handler matching the same path (the generic
#: object router for ``POST /api/v3/healthz``) never runs unauthenticated
OPEN_ROUTES = frozenset({("system.healthz", "GET"), ("system.healthz", "HEAD")})


def create_app(context: ApiContext) -> QuartTrio:
    """The quart app of every route but the websocket (``events.WsFront``)."""
    app = QuartTrio("drpd", static_folder=None)  # files are served by drpd.static
    app.config["DRPD"] = context
    # Bodies are read through objects.iter_body, which applies the limit of
    # each route (JSON bodies, provider uploads) and the body timeout.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["BODY_TIMEOUT"] = context.settings.body_timeout
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    if context.access is None:
        context.access = Authorizer(context.store, default_user=context.auth.default_user)

    @app.before_request
    async def current_context() -> None:
        objects.CURRENT.set(context)
        bind_quart()

    # metrics (issue 7): request counts by URL rule, GET /api/v3/metrics;
    # before authenticate, so that requests it refuses are timed too
    metrics.instrument(app, context.metrics or Metrics(process=False))
    system.register(context)
    plugins.register(context)
    actions.register(context)
    sealing.register(context)

    @app.before_request
    async def check_credentials() -> None:
        await authenticate(context)

    app.register_blueprint(system.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(catalog_routes.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(plugins.bp)
    app.register_blueprint(actions.bp)
    app.register_blueprint(contents.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(queries.bp)
    app.register_blueprint(objects.bp)
    app.register_error_handler(DrpError, drp_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def not_found(path: str) -> Response:
        await objects.read_body()
        raise NotFound(f"no such path /{path}")

    return app


async def authenticate(context: ApiContext) -> None:
    """Who is asking (401 unless the credentials are good), and may they ask for this route."""
    routed = request.routing_exception is None
    if routed and (request.method in ("GET", "HEAD") and (
            (request.endpoint, request.method) in OPEN_ROUTES
            or request.blueprint == "ui")):
        return  # the page's own files need no credentials; its API calls do
    g.principal = await context.auth.check_header(
        request.headers.get("Authorization"), request.args.get("token"),
        request.remote_addr,
    )
    if routed:
        guard.check_route()

