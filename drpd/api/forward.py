"""Requests about an instance another drpd node runs, sent on to that node.

An action, a restart or a log read that reaches a node which does not run
the instance goes to the node that does (its API endpoint from the nodes
table), with the caller's own credentials, and its answer comes back
unchanged: status, body and content type. The caller is authorized again
there (tokens are signed with a key the nodes share). The owner's TLS
certificate is pinned from the nodes table, so a forwarded password never
goes to anyone else; a forwarded request is never forwarded again.
"""

from __future__ import annotations

import ssl

from quart import Response

from ..models import BadGateway, PayloadTooLarge
from ..plugins.interface import Remote
from .current import request
from .objects import ctx

#: marks a request one node sent another
FORWARDED = "X-Drpd-Forwarded"
#: headers that travel with a forwarded request
_PASSED = ("Authorization", "Content-Type", "Accept", "If-Match")


def forwarded() -> bool:
    """This request came from another node: answer it here, whatever happens."""
    return FORWARDED in request.headers


async def forward(remote: Remote, body: bytes) -> Response:
    """Send this request to ``remote`` and answer with what it answers."""
    import httpx  # only a node that forwards pays for it (~60 ms at start)

    if remote.endpoint.startswith("https:") and not remote.cert:
        raise BadGateway(f"node {remote.name} has not published its certificate yet: "
                         "try again in a moment")
    settings = ctx().settings
    headers = {name: request.headers[name] for name in _PASSED if name in request.headers}
    headers[FORWARDED] = "1"
    url = remote.endpoint + request.full_path.rstrip("?")
    limit = settings.max_upload_size
    verify = False if not remote.endpoint.startswith("https:") else \
        ssl.create_default_context(cadata=remote.cert)
    try:
        async with httpx.AsyncClient(verify=verify, timeout=settings.action_timeout + 10) as client:
            async with client.stream(request.method, url, content=body,
                                     headers=headers) as answer:
                chunks = []
                size = 0
                async for chunk in answer.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"node {remote.name} answered more than "
                                              f"{limit} bytes")
                    chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise BadGateway(f"node {remote.name} ({remote.endpoint}), which runs it, did not "
                         f"answer: {exc}") from None
    return Response(b"".join(chunks), status=answer.status_code,
                    content_type=answer.headers.get("content-type", "application/json"))
