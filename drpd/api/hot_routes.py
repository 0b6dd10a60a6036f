"""The object routes and ``POST /api/v3/events``, served without quart's request machinery.

Nearly all of the API's traffic is a few routes: an object's create, read,
update and delete, its params and actions, and posted events. Through
quart, the framework's own work on each request (werkzeug headers, request
and app contexts, URL routing, hooks, a response sent from a second task)
cost more than drpd's handler and its store write together (py-spy,
issue 19). Here the same handlers (``objects.collection``,
``objects.item``, ``events.post_event``, the system actions) are called on
the ASGI interface,
with what quart's hooks do, in the same order: the API context, the
metrics timer, authentication and the route's claim, then the handler, the
DRP ``Error`` answers, and the request count. The handlers read the request
through :mod:`drpd.api.current`, so they cannot tell the two fronts apart.

Only paths that quart's router reads the same way come here: ``/api/v3/``
then a prefix no other route owns (``files``, ``contents``, ...), and a
rest without an empty segment or a trailing slash (which werkzeug
redirects or refuses). Everything else, HEAD included, goes to quart.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qsl

import trio
from quart import Response
from quart.wrappers.response import DataBody
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.exceptions import HTTPException

from ..models import DrpError
from . import actions, events, objects
from .app import authenticate
from .context import ApiContext
from .current import Globals, serving_as
from .errors import drp_error, http_error, unexpected_error
from .metrics import METRICS_KEY, route_label

Handler = Callable[..., Awaitable[Response]]
_API = "/api/v3/"

_EMPTY_ARGS: ImmutableMultiDict[str, str] = ImmutableMultiDict()
#: endpoints whose paths this module may serve (others own the rest)
_SERVED = frozenset({"objects.collection", "objects.item", "not_found", "events.post_event",
                     "actions.system_actions", "actions.system_action"})


class ClientGone(Exception):
    """The client closed the connection before its request body was read."""


class Body:
    """The request body as quart's handlers read it: chunks, in order, once.

    Whoever iterates it (a handler's ``iter_body``, an error answer's
    drain) continues where the last one stopped. ``complete`` is set when
    the last chunk has been read: after that, the only message left is the
    client's disconnect, which :meth:`HotRoutes.watch` waits for.
    """

    __slots__ = ("_receive", "complete")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._receive = receive
        self.complete = trio.Event()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while not self.complete.is_set():
            message = await self._receive()
            if message["type"] != "http.request":
                raise ClientGone
            if not message.get("more_body", False):
                self.complete.set()
            yield message.get("body", b"")


class HotRequest:
    """What ``current.Request`` names, made from the ASGI scope without copying headers twice."""

    __slots__ = ("method", "path", "headers", "remote_addr", "endpoint", "view_args",
                 "blueprint", "body", "_query", "_args")

    routing_exception = None

    def __init__(self, scope: dict[str, Any], endpoint: str, view_args: dict[str, str],
                 body: Body) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = Headers([(name.decode("latin-1"), value.decode("latin-1"))
                                for name, value in scope["headers"]])
        client = scope.get("client")
        self.remote_addr: str | None = client[0] if client else "<local>"
        self.endpoint = endpoint
        self.view_args = view_args
        self.blueprint = endpoint.partition(".")[0]
        self.body = body
        self._query: bytes = scope.get("query_string", b"")
        self._args: ImmutableMultiDict[str, str] | None = None

    @property
    def args(self) -> ImmutableMultiDict[str, str]:
        if self._args is None:
            # as werkzeug reads a query (bytes it cannot decode stay quoted)
            self._args = ImmutableMultiDict(parse_qsl(
                self._query.decode(), keep_blank_values=True, errors="werkzeug.url_quote",
            )) if self._query else _EMPTY_ARGS
        return self._args

    @property
    def full_path(self) -> str:
        return f"{self.path}?{self._query.decode('latin-1')}"

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            length = int(value)
        except ValueError:
            return None
        return length if length >= 0 else None

    @property
    def mimetype(self) -> str:
        return self.headers.get("Content-Type", "").partition(";")[0].strip().lower()


class HotRoutes:
    """An ASGI app: the hot routes served here, every other request by ``app``."""

    def __init__(self, app: QuartTrio, context: ApiContext) -> None:
        self.app = app
        self.context = context
        self.metrics = app.config.get(METRICS_KEY)
        self.elsewhere = _owned_elsewhere(app)

    def route(self, method: str, path: str) -> tuple[Handler, str, dict[str, str], str] | None:
        """(handler, endpoint, view args, metrics rule) for a hot route, else None."""
        if not path.startswith(_API) or self.elsewhere is None:
            return None
        prefix, slash, rest = path[len(_API):].partition("/")
        if not prefix:
            return None
        if prefix in self.elsewhere:
            if prefix == "events" and not slash and method == "POST":
                return events.post_event, "events.post_event", {}, "/api/v3/events"
            if prefix == "system" and method in ("GET", "POST"):
                return _system_action(method, rest)
            return None
        if not slash:
            if method not in ("GET", "POST"):
                return None
            return (objects.collection, "objects.collection", {"prefix": prefix},
                    "/api/v3/<prefix>")
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE") or not _plain(rest):
            return None
        return (objects.item, "objects.item", {"prefix": prefix, "rest": rest},
                "/api/v3/<prefix>/<path:rest>")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = self.route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(cast(Any, scope), receive, send)
            return
        handler, endpoint, view_args, rule = found
        body = Body(receive)
        request = HotRequest(scope, endpoint, view_args, body)
        started = time.perf_counter()
        answered: list[Response] = []
        context_token = objects.CURRENT.set(self.context)
        try:
            with serving_as(request, Globals()):
                if self.may_wait(endpoint, view_args):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self.watch, body, receive, nursery.cancel_scope)
                        answered.append(await self.answer(handler, view_args))
                        nursery.cancel_scope.cancel()
                else:
                    answered.append(await self.answer(handler, view_args))
        except ClientGone:
            return
        finally:
            objects.CURRENT.reset(context_token)
        if not answered:
            return  # the client went away while it was served (watch)
        response = answered[0]
        if self.metrics is not None:
            self.metrics.observe_request(
                request.method, route_label(rule, view_args.get("prefix"), self.context.store.kinds),
                response.status_code, time.perf_counter() - started)
        await _send(response, send)

    def may_wait(self, endpoint: str, view_args: dict[str, str]) -> bool:
        """May this request wait on something outside drpd (a provider's action,
        an instance starting, a password hashed, another node)? Then it is
        cancelled if its client leaves, as quart does; a plain object or
        param write or read is done in milliseconds and is not watched."""
        if endpoint.startswith("actions."):
            return True
        rest = view_args.get("rest", "")
        sub = rest.partition("/")[2]
        return view_args.get("prefix") in self.context.hooks or (
            bool(sub) and not sub.startswith("params"))

    async def answer(self, handler: Handler, view_args: dict[str, str]) -> Response:
        """What quart's dispatch and error handlers would answer."""
        try:
            await authenticate(self.context)
            return await handler(**view_args)
        except DrpError as exc:
            return await drp_error(exc)
        except HTTPException as exc:
            return await http_error(exc)
        except ClientGone:
            raise
        except Exception as exc:  # noqa: BLE001 - a 500, logged, as quart's handler does
            return unexpected_error(exc)

    @staticmethod
    async def watch(body: Body, receive: Any, scope: trio.CancelScope) -> None:
        """Stop serving a request whose client has gone (as quart does)."""
        await body.complete.wait()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return


def _plain(rest: str) -> bool:
    """Does werkzeug's ``<path:...>`` take ``rest`` as it is? (An empty
    segment, or a slash at either end, it redirects or refuses: quart's.)"""
    return bool(rest) and rest[0] != "/" and rest[-1] != "/" and "//" not in rest


def _system_action(method: str, rest: str) -> tuple[Handler, str, dict[str, str], str] | None:
    """``/api/v3/system/actions[/<command>]``, as quart's rules in ``actions`` read it."""
    if rest == "actions":
        if method != "GET":
            return None
        return actions.system_actions, "actions.system_actions", {}, "/api/v3/system/actions"
    command = rest.removeprefix("actions/")
    if command == rest or not _plain(command):
        return None
    return (actions.system_action, "actions.system_action", {"command": command},
            "/api/v3/system/actions/<path:command>")


def _owned_elsewhere(app: QuartTrio) -> frozenset[str] | None:
    """The first path segments under ``/api/v3/`` that routes other than the
    object routes own; None when one of them starts with a variable (then
    any path may be theirs, and nothing is served here)."""
    owned = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in _SERVED or not rule.rule.startswith(_API):
            continue
        first = rule.rule[len(_API):].partition("/")[0]
        if "<" in first:
            return None
        owned.add(first)
    return frozenset(owned | {"events", "system"})


async def _send(response: Response, send: Any) -> None:
    headers = [(name.lower().encode(), value.encode()) for name, value in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": headers})
    content = response.response
    if isinstance(content, DataBody):
        await send({"type": "http.response.body", "body": content.data, "more_body": False})
        return
    async with content as chunks:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
