"""Every error leaves drpd as a DRP ``Error`` body with the right status."""

from __future__ import annotations

import logging

import msgspec
from quart import Response
from werkzeug.exceptions import HTTPException

from ..models import DrpError, Error

log = logging.getLogger("drpd.api")
_encode = msgspec.json.Encoder().encode


def error_response(error: Error, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(error), status=error.Code, content_type="application/json",
                    headers=headers)


def drp_error(exc: DrpError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="drpd"'} if exc.code == 401 else None
    if exc.code in (408, 413):
        # the rest of the body was not read: this connection cannot be reused
        headers = {"Connection": "close"}
    return error_response(exc.to_error(), headers)


def http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    message = exc.description or exc.name
    if code == 413:
        message = "request body too large"
    elif code == 408:
        message = "request body not received in time"
    response = error_response(Error(Type="API_ERROR", Messages=[message], Code=code))
    if code == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error while serving a request", exc_info=exc)
    return error_response(Error(Type="API_ERROR", Messages=[f"internal error: {exc}"], Code=500))
