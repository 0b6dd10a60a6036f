"""The param commands of machines, profiles and plugins, as DRP's drpcli has them.

    drpcli machines params <key> [<json>]            (all; with <json>: replace all)
    drpcli machines get <key> param <name> [--aggregate] [--decode]
    drpcli machines set <key> param <name> to <value>
    drpcli machines add <key> param <name> to <value>   (refuses a param already set)
    drpcli machines remove <key> param <name>

Values after ``to`` are JSON when they parse as JSON, else the word itself
(API.md). A param defined ``Secure`` is sealed here, to the object's
``pubkey``, before it is sent (DRP's ``maybeEncryptParam``): its value never
crosses the wire in clear. With the global ``-r <ref>`` (the params as the
caller last saw them), ``set``, ``add`` and ``remove`` apply only if the
stored value is still ref's: a JSON Patch with a ``test`` first, so a change
made meanwhile answers 409 instead of being overwritten.
"""

from __future__ import annotations

from typing import Any

from .inputs import load_object, parse_value
from .objects import WITH_PARAMS, json_pointer
from .registry import Args, CliError, Context, command


def _query(a: Args) -> list[tuple[str, str]] | None:
    query = [(name, "true") for name in ("aggregate", "decode", "compose") if a.get("--" + name)]
    if a.get("--params"):
        query.append(("params", str(a["--params"])))
    return query or None


def _sealed(ctx: Context, key: str, name: str, value: Any) -> Any:
    if value is None or not ctx.client.is_secure_param(name):
        return value
    return ctx.client.seal_for(ctx.prefix, key, value)


def _ref(ctx: Context) -> Any:
    ref = ctx.flag("ref")
    return None if ref is None else load_object(ref, ctx.stdin)


@command("params", "<key> [<json>]",
         "show all params of the object; with <json> (a map, or - for stdin) replace them all",
         WITH_PARAMS, flags={"aggregate": False, "decode": False, "params": True})
def params(ctx: Context, a: Args) -> Any:
    key = a["key"]
    if a["json"] is None:
        return ctx.client.params(ctx.prefix, key, _query(a))
    values = load_object(a["json"], ctx.stdin)
    if not isinstance(values, dict):
        raise CliError("params takes a map of param names to values")
    values = {name: _sealed(ctx, key, name, v) for name, v in values.items()}
    ref = _ref(ctx)
    if ref is None:
        return ctx.client.set_params(ctx.prefix, key, values)
    answer = ctx.client.json_patch(ctx.prefix, key, [
        {"op": "test", "path": "/Params", "value": ref},
        {"op": "replace", "path": "/Params", "value": values}])
    return answer.get("Params", {}) if isinstance(answer, dict) else answer


@command("get", "<key> param <name>",
         "show one param (--aggregate: as the object has it through its profiles; "
         "--decode: Secure values in clear)", WITH_PARAMS,
         flags={"aggregate": False, "decode": False, "compose": False})
def get_param(ctx: Context, a: Args) -> Any:
    return ctx.client.get_param(ctx.prefix, a["key"], a["name"], _query(a))


@command("set", "<key> param <name> to <value>",
         "set one param (value: JSON, else a string; Secure params sealed before sending)",
         WITH_PARAMS)
def set_param(ctx: Context, a: Args) -> Any:
    key, name = a["key"], a["name"]
    value = parse_value(a["value"])
    wire = _sealed(ctx, key, name, value)
    ref = ctx.flag("ref")
    if ref is None:
        answer = ctx.client.set_param(ctx.prefix, key, name, wire)
        return value if wire is not value else answer
    path = json_pointer("Params", name)
    ctx.client.json_patch(ctx.prefix, key, [
        {"op": "test", "path": path, "value": load_object(ref, ctx.stdin)},
        {"op": "replace", "path": path, "value": wire}])
    return value


@command("add", "<key> param <name> to <value>",
         "add one param; refuses a param the object already has", WITH_PARAMS)
def add_param(ctx: Context, a: Args) -> Any:
    key, name = a["key"], a["name"]
    value = parse_value(a["value"])
    current = _ref(ctx)
    if current is None:
        current = ctx.client.params(ctx.prefix, key)
    if not isinstance(current, dict):
        raise CliError("the -r reference must be the object's params map")
    if name in current:
        single = ctx.prefix[:-1] if ctx.prefix.endswith("s") else ctx.prefix
        raise CliError(f"Key, {name}, already present on {single} {key}")
    wire = _sealed(ctx, key, name, value)
    # the test makes it atomic: a param added meanwhile answers 409
    ctx.client.json_patch(ctx.prefix, key, [
        {"op": "test", "path": "/Params", "value": current},
        {"op": "add", "path": json_pointer("Params", name), "value": wire}])
    return value


@command("remove", "<key> param <name>", "remove one param; prints its value", WITH_PARAMS)
def remove_param(ctx: Context, a: Args) -> Any:
    key, name = a["key"], a["name"]
    ref = ctx.flag("ref")
    if ref is None:
        return ctx.client.delete_param(ctx.prefix, key, name)
    path = json_pointer("Params", name)
    before = load_object(ref, ctx.stdin)
    ctx.client.json_patch(ctx.prefix, key, [
        {"op": "test", "path": path, "value": before},
        {"op": "remove", "path": path}])
    return before
