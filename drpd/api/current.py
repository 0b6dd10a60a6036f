"""The request being served, whichever front serves it: quart or ``hot_routes``.

The object routes are served two ways: by quart (every route), and, for the
routes that carry nearly all of the traffic, by :mod:`drpd.api.hot_routes`
on the ASGI interface without quart's request machinery (which cost more
than the handlers themselves). The handlers are the same code either way:
they read ``request`` and ``g`` from here, which stand for quart's objects
while quart serves the request and for ``hot_routes``' own ones otherwise.

Outside a request served by either (an app's own tests calling a helper),
the names fall back to quart's, which raise as quart does.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, cast

import quart
from werkzeug.datastructures import Headers, MultiDict


class Request(Protocol):
    """The part of a request the handlers use; quart's ``Request`` has all of it."""

    method: str
    path: str
    headers: Headers
    remote_addr: str | None

    @property
    def args(self) -> MultiDict[str, str]: ...
    @property
    def full_path(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def mimetype(self) -> str: ...
    @property
    def body(self) -> AsyncIterable[bytes]: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def view_args(self) -> Mapping[str, Any] | None: ...
    @property
    def blueprint(self) -> str | None: ...
    @property
    def routing_exception(self) -> Exception | None: ...


class Globals:
    """Per-request values (``g``): the principal, its claims, a timer."""

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)


_REQUEST: ContextVar[Request] = ContextVar("drpd_request")
_GLOBALS: ContextVar[Any] = ContextVar("drpd_globals")


@contextmanager
def serving_as(request_: Request, globals_: Any) -> Iterator[None]:
    """``request`` and ``g`` stand for these inside the block, and only there:
    the task that serves a connection's hot requests goes on to serve the
    next, or hands the connection to hypercorn, whose tasks copy its context."""
    request_token = _REQUEST.set(request_)
    globals_token = _GLOBALS.set(globals_)
    try:
        yield
    finally:
        _GLOBALS.reset(globals_token)
        _REQUEST.reset(request_token)


def bind(request_: Request, globals_: Any) -> None:
    """Make ``request`` and ``g`` stand for these (in this task's context)."""
    _REQUEST.set(request_)
    _GLOBALS.set(globals_)


def bind_quart() -> None:
    """Make ``request`` and ``g`` stand for quart's (a quart ``before_request`` hook)."""
    bind(cast(Request, quart.request._get_current_object()),  # type: ignore[attr-defined]
         quart.g._get_current_object())


def serving() -> bool:
    """Is a request being served (by either front)?"""
    return _REQUEST.get(None) is not None or quart.has_request_context()


def _request() -> Any:
    found = _REQUEST.get(None)
    return found if found is not None else quart.request


def _globals() -> Any:
    found = _GLOBALS.get(None)
    return found if found is not None else quart.g


class _RequestProxy:
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(_request(), name)


class _GlobalsProxy:
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(_globals(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_globals(), name, value)

    def get(self, name: str, default: Any = None) -> Any:
        return _globals().get(name, default)


#: the request being served
request: Request = cast(Request, _RequestProxy())
#: the values of the request being served (quart's ``g``, or a ``Globals``)
g: Any = _GlobalsProxy()
