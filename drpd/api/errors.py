"""Every error leaves drpd as a DRP ``Error`` body with the right status."""

from __future__ import annotations

import logging

import msgspec
import trio
from quart import Response
from werkzeug.exceptions import HTTPException

from ..models import DrpError, Error, TooManyRequests
from .current import request, serving

log = logging.getLogger("drpd.api")
_encode = msgspec.json.Encoder().encode


def error_response(error: Error, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(error), status=error.Code, content_type="application/json",
                    headers=headers)


#: an error answer reads at most this much of an unread request body before
#: giving up on the connection
_DRAIN_LIMIT = 1 << 20
_DRAIN_SECONDS = 2.0


async def _drain() -> bool:
    """Read what is left of the request body, so keep-alive keeps working.

    An error raised before a handler read its body (bad credentials, an
    unknown route or method) would otherwise leave the body in the
    connection and stall the client's next request (STACK-NOTES.md).
    Returns False when the body is too big or too slow to drain; the answer
    then closes the connection instead.
    """
    if not serving():
        return True
    length = request.content_length
    if length is not None and length > _DRAIN_LIMIT:
        return False
    size = 0
    with trio.move_on_after(_DRAIN_SECONDS) as scope:
        try:
            async for chunk in request.body:
                size += len(chunk)
                if size > _DRAIN_LIMIT:
                    return False
        except HTTPException:
            return False
    return not scope.cancelled_caught


async def drp_error(exc: DrpError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="drpd"'} if exc.code == 401 else {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.code in (408, 413) or not await _drain():
        # the rest of the body was not read: this connection cannot be reused
        headers["Connection"] = "close"
    return error_response(exc.to_error(), headers)


async def http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    message = exc.description or exc.name
    if code == 413:
        message = "request body too large"
    elif code == 408:
        message = "request body not received in time"
    response = error_response(Error(Type="API_ERROR", Messages=[message], Code=code))
    if code in (408, 413) or not await _drain():
        response.headers["Connection"] = "close"
    allowed = getattr(exc, "valid_methods", None)  # werkzeug's MethodNotAllowed
    if code == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error while serving a request", exc_info=exc)
    return error_response(Error(Type="API_ERROR", Messages=[f"internal error: {exc}"], Code=500))
