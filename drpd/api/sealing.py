"""``GET /<prefix>/<key>/pubkey``: the key clients seal Secure params to.

DRP's drpcli (``maybeEncryptParam``) reads it before it sets a Secure param
and sends the value as a ``SecureData`` box; :mod:`drpd.secure` opens it.
The answer is the 32-byte key as a JSON base64 string, as Go encodes a
``[]byte``. Any existing object of a prefix with Params has one.
"""

from __future__ import annotations

import base64
from typing import Any

from quart import Response

from ..models import Kind, MethodNotAllowed, NotFound
from .context import ApiContext
from .current import request
from .objects import ctx, json_response, read_body, resolve


async def pubkey(kind: Kind, key: str, rest: list[str]) -> Response:
    await read_body()
    if rest or not kind.has_params:
        raise NotFound(f"{kind.prefix}/{key} has no pubkey", model=kind.prefix, key=key)
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed("pubkey is read-only", model=kind.prefix, key=key)
    resolve(kind, key)  # 404 for an object that is not there, as DRP
    secure: Any = ctx().secure
    if secure is None:
        raise NotFound("secure params are not enabled on this drpd", model=kind.prefix, key=key)
    return json_response(base64.b64encode(secure.public_key).decode())


def register(context: ApiContext) -> None:
    context.extras[("*", "pubkey")] = pubkey
