"""Routes of the plugin side: provider uploads, instance restarts and logs."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response

from ..models import Kind, NotFound, Unprocessable
from ..models.names import is_valid_provider_name
from ..plugins.interface import PluginSide
from .current import request
from .forward import forward, forwarded
from .objects import (
    ctx,
    iter_body,
    json_response,
    present_provider,
    read_body,
    resolve,
    show,
    wants_wait,
)

bp = Blueprint("plugins", __name__)


def plugin_side() -> PluginSide:
    return ctx().plugin_side()


@bp.route("/api/v3/plugin_providers/<name>", methods=["POST", "DELETE"])
async def provider_write(name: str) -> Response:
    if request.method == "DELETE":
        await read_body()
        provider = await plugin_side().remove_provider(name)
        return json_response(msgspec.to_builtins(provider))
    if not is_valid_provider_name(name):
        await read_body()
        raise Unprocessable(f"invalid provider name {name!r}", model="plugin_providers")
    existed = plugin_side().has_provider(name)
    provider = await plugin_side().upload_provider(
        name, iter_body(ctx().settings.max_upload_size))
    # DRP's answer is {path, size} (Go's UploadPlugin reads just those); drpd adds the provider
    data = msgspec.to_builtins(provider)
    present_provider(data)
    data.update(path=f"/plugin_providers/{name}", size=provider.Size)
    return json_response(data, 200 if existed else 201)


@bp.route("/api/v3/plugin_providers/<name>/binary", methods=["GET"])
async def provider_binary(name: str) -> Response:
    await read_body()
    if not plugin_side().has_provider(name):
        raise NotFound(f"plugin_providers {name} not found", model="plugin_providers", key=name)
    path = plugin_side().binary_path(name)
    try:
        f = await trio.open_file(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"the file of provider {name} is gone", model="plugin_providers",
                       key=name) from None
    size = (await trio.to_thread.run_sync(os.fstat, f.wrapped.fileno())).st_size

    async def chunks() -> AsyncIterator[bytes]:
        async with f:
            while chunk := await f.read(256 * 1024):
                yield chunk

    return Response(chunks(), content_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Content-Length": str(size)})


async def plugin_restart(kind: Kind, key: str, rest: list[str]) -> Response:
    await read_body()
    if request.method != "POST" or rest:
        raise NotFound(f"no such route under plugins/{key}")
    record = resolve(kind, key)
    remote = None if forwarded() else await plugin_side().elsewhere(
        "plugins", None, plugin=None, instance=record.obj.Name)
    if remote is not None:
        return await forward(remote, b"")
    await plugin_side().restart(record.obj.Name, wait=wants_wait())
    return json_response(show(kind, ctx().store.get("plugins", record.obj.Name) or record))


async def plugin_log(kind: Kind, key: str, rest: list[str]) -> Response:
    await read_body()
    if request.method != "GET" or rest:
        raise NotFound(f"no such route under plugins/{key}")
    record = resolve(kind, key)
    remote = None if forwarded() else await plugin_side().elsewhere(
        "plugins", None, plugin=None, instance=record.obj.Name)
    if remote is not None:
        return await forward(remote, b"")
    lines = plugin_side().log_lines(record.obj.Name)
    raw = request.args.get("lines", "100")
    try:
        count = max(0, int(raw))
    except ValueError:
        raise Unprocessable(f"lines must be a number, not {raw!r}") from None
    return json_response(lines[-count:] if count else [])


def register(c: Any) -> None:
    c.extras[("plugins", "restart")] = plugin_restart
    c.extras[("plugins", "log")] = plugin_log
