"""The error tree every part of drpd raises, and its wire shape.

Raise one of these anywhere below the API; the API turns it into a DRP
``Error`` body whose ``Code`` is the HTTP status. Nothing else needs to know
about HTTP.

    DrpError                    (500)
    ├── BadRequest              (400) malformed JSON, wrong types, unknown fields
    ├── Unauthorized            (401)
    ├── Forbidden               (403) not allowed, read-only object
    ├── NotFound                (404)
    ├── MethodNotAllowed        (405)
    ├── RequestTimeout          (408) the request body did not arrive in time
    ├── Conflict                (409) duplicate key or unique field, failed PATCH test
    ├── PreconditionFailed      (412) If-Match mismatch
    ├── PayloadTooLarge         (413)
    ├── Unprocessable           (422) invalid name, schema failure, missing reference
    ├── TooManyRequests         (429) login back-off (with Retry-After)
    ├── BadGateway              (502) a provider answered nonsense or hung up
    ├── Unavailable             (503) plugin not available
    └── GatewayTimeout          (504) provider timed out
"""

from __future__ import annotations

import msgspec


class Error(msgspec.Struct, kw_only=True):
    """DRP's error body."""

    Model: str = ""
    Key: str = ""
    Type: str = ""
    Messages: list[str] = msgspec.field(default_factory=list)
    Code: int = 500


class DrpError(Exception):
    code = 500
    type = "API_ERROR"

    def __init__(self, *messages: str, model: str = "", key: str = "") -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)
        self.model = model
        self.key = key

    def to_error(self) -> Error:
        return Error(
            Model=self.model, Key=self.key, Type=self.type, Messages=self.messages, Code=self.code
        )


class BadRequest(DrpError):
    code = 400


class Unauthorized(DrpError):
    code = 401
    type = "AUTH_ERROR"


class Forbidden(DrpError):
    code = 403


class NotFound(DrpError):
    code = 404
    type = "NOT_FOUND"


class MethodNotAllowed(DrpError):
    code = 405


class RequestTimeout(DrpError):
    code = 408


class Conflict(DrpError):
    code = 409
    type = "CONFLICT"


class PreconditionFailed(DrpError):
    code = 412


class PayloadTooLarge(DrpError):
    code = 413


class Unprocessable(DrpError):
    code = 422
    type = "ValidationError"


class TooManyRequests(DrpError):
    code = 429

    def __init__(self, *messages: str, retry_after: int = 1, model: str = "", key: str = "") -> None:
        super().__init__(*messages, model=model, key=key)
        #: seconds, sent as the Retry-After header
        self.retry_after = retry_after


class BadGateway(DrpError):
    code = 502
    type = "PLUGIN_ERROR"


class Unavailable(DrpError):
    code = 503


class GatewayTimeout(DrpError):
    code = 504


class InsufficientStorage(DrpError):
    code = 507
    type = "STORAGE_ERROR"
