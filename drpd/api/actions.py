"""Action routes: list, show and run provider actions on objects and on the system."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Blueprint, Response

from ..models import BadRequest, Kind, NotFound
from ..plugins.interface import PluginSide
from .current import request
from .forward import forward, forwarded
from .objects import ctx, json_response, parse_json, read_body, resolve

bp = Blueprint("actions", __name__)


def plugin_side() -> PluginSide:
    return ctx().plugin_side()


async def _posted_params() -> dict[str, Any]:
    body = await read_body()
    if not body.strip():
        return {}
    params = parse_json(body)
    if not isinstance(params, dict):
        raise BadRequest("action params must be a JSON object of param name to value")
    return params


def _show(model: str, command: str, instance: str | None) -> Response:
    provider, _, plain = command.rpartition(":")
    for action in plugin_side().listing(model, instance=instance):
        if action.Command == plain and (not provider or action.Provider == provider):
            return json_response(msgspec.to_builtins(action))
    raise NotFound(f"no available action {command!r} on {model}", model=model, key=command)


async def _run(model: str, command: str, target: Any, instance: str | None) -> Response:
    if not forwarded():
        remote = await plugin_side().elsewhere(model, command, plugin=request.args.get("plugin"),
                                         instance=instance)
        if remote is not None:  # another node runs the instance: it answers
            return await forward(remote, await read_body())
    posted = await _posted_params()
    status, body = await plugin_side().run_action(
        model, command, plugin=request.args.get("plugin"), instance=instance, posted=posted,
        target=target)
    return Response(body, status=status, content_type="application/json")


async def object_actions(kind: Kind, key: str, rest: list[str]) -> Response:
    """``/<prefix>/<key>/actions[/<cmd>]``."""
    if len(rest) > 1:
        rest = ["/".join(rest)]
    record = resolve(kind, key)
    model = kind.prefix
    # actions on an instance itself run on that instance only
    instance = record.obj.Name if model == "plugins" else None
    if request.method in ("GET", "HEAD"):
        await read_body()
        if not rest:
            return json_response([msgspec.to_builtins(a)
                                  for a in plugin_side().listing(model, instance=instance)])
        return _show(model, rest[0], instance)
    if request.method != "POST" or not rest:
        await read_body()
        raise NotFound(f"POST /{model}/{key}/actions/<command> runs an action")
    return await _run(model, rest[0], record.obj, instance)


@bp.route("/api/v3/system/actions", methods=["GET"])
async def system_actions() -> Response:
    await read_body()
    return json_response([msgspec.to_builtins(a) for a in plugin_side().listing("system")])


@bp.route("/api/v3/system/actions/<path:command>", methods=["GET", "POST"])
async def system_action(command: str) -> Response:
    if request.method == "GET":
        await read_body()
        return _show("system", command, None)
    return await _run("system", command, None, None)


def register(c: Any) -> None:
    c.extras[("*", "actions")] = object_actions
