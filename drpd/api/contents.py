"""Content bundle routes: every write installs or removes a whole bundle at once."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Blueprint, Response, request

from ..content import ContentService, bundle_from, parse_bundle, summary
from ..models import BadRequest, NotFound, Unprocessable
from ..models.depth import too_deep
from .objects import ctx, json_response, max_depth, parse_json, principal, read_body
from .patching import json_patch, merge_patch

bp = Blueprint("contents", __name__)


def service() -> ContentService:
    return ctx().content


@bp.route("/api/v3/contents", methods=["GET", "POST"])
async def contents() -> Response:
    body = await read_body()
    if request.method == "GET":
        return json_response([summary(r.obj) for r in ctx().store.list("contents")])
    bundle = parse_bundle(body, what="content bundle", max_size=ctx().settings.max_body_size,
                              max_depth=max_depth())
    record = await service().install(bundle, principal=principal(), replace=False)
    return json_response(msgspec.to_builtins(record.obj), 201, etag=record.etag)


@bp.route("/api/v3/contents/<name>", methods=["PUT", "PATCH", "DELETE"])
async def content(name: str) -> Response:
    body = await read_body()
    if request.method == "DELETE":
        record = await service().remove(name, principal=principal())
        return json_response(msgspec.to_builtins(record.obj), etag=record.etag)
    current = ctx().store.get("contents", name)
    if current is None:
        raise NotFound(f"contents {name} not found", model="contents", key=name)
    if request.method == "PUT":
        bundle = parse_bundle(body, what="content bundle", max_size=ctx().settings.max_body_size,
                              max_depth=max_depth())
    else:
        patch: Any = parse_json(body)
        data = msgspec.to_builtins(current.obj)
        merge = request.mimetype == "application/merge-patch+json" or isinstance(patch, dict)
        if merge:
            patched = merge_patch(data, patch)
        else:
            patched = json_patch(data, patch, max_size=ctx().settings.max_body_size)
        if too_deep(patched, max_depth()):
            raise Unprocessable(f"the bundle would nest more than {max_depth()} levels deep",
                                model="contents", key=name)
        bundle = bundle_from(patched, what="patched bundle")
    if bundle.info.Name != name:
        raise BadRequest(f"the bundle is named {bundle.info.Name!r}, not {name!r}",
                         model="contents", key=name)
    record = await service().install(bundle, principal=principal())
    return json_response(msgspec.to_builtins(record.obj), etag=record.etag)
