"""The commands every object prefix shares, driven by :data:`drpd.models.KINDS`.

Which commands a prefix gets follows from its :class:`~drpd.models.Kind`:
all can be listed, shown, waited on and destroyed; only ``writable`` ones
(not plugin_providers, which are uploaded) take ``create``/``update``/
``patch``; only those with ``has_params`` get the param commands. Content
bundles are uploaded whole, so they get no object writes either.
"""

from __future__ import annotations

import time
from typing import Any

from ..client import ClientError
from ..models import KINDS
from .inputs import load_object, parse_duration, parse_filters, parse_value
from .registry import NO_OUTPUT, Args, CliError, Context, command, group

_SUMMARIES = {
    "machines": "machines (keyed by Uuid; Name:<name> works too) and their params",
    "params": "param definitions: type schema, documentation, secure flag",
    "profiles": "profiles: named sets of params",
    "users": "API users, their tokens and passwords",
    "plugins": "plugin instances: a provider plus params, supervised by drpd",
    "plugin_providers": "installed plugin provider executables",
    "contents": "content bundles",
    "tasks": "tasks (stored and served, as in DRP)",
    "stages": "stages (stored and served, as in DRP)",
    "bootenvs": "boot environments (stored and served, as in DRP)",
    "templates": "templates (stored and served, as in DRP)",
}
for _prefix in KINDS:
    group(_prefix, _SUMMARIES.get(_prefix, f"{_prefix} objects"))

ALL = tuple(KINDS)
WRITABLE = tuple(p for p, k in KINDS.items() if k.writable and p != "contents")
WITH_PARAMS = tuple(p for p, k in KINDS.items() if k.has_params)

DEFAULT_WAIT = 10.0


@command("list", "[<filter>...]", "list objects; filters: Field=value, offset=N, limit=N", ALL)
def list_objects(ctx: Context, a: Args) -> Any:
    filters = parse_filters(a["filter"])
    return ctx.client.list(ctx.prefix, filters)


@command("show", "<key>", "show one object", ALL)
def show(ctx: Context, a: Args) -> Any:
    return ctx.client.get(ctx.prefix, a["key"])


@command("exists", "<key>", "exit 0 if the object exists, else 1", ALL)
def exists(ctx: Context, a: Args) -> Any:
    if not ctx.client.exists(ctx.prefix, a["key"]):
        raise ClientError(f"{ctx.prefix} {a['key']} does not exist", code=404)
    return NO_OUTPUT


@command("create", "<obj>", "create from JSON, YAML, a file, - (stdin), or just a name", WRITABLE)
def create(ctx: Context, a: Args) -> Any:
    obj = load_object(a["obj"], ctx.stdin)
    if isinstance(obj, str | int | float) and not isinstance(obj, bool):
        # DRP's drpcli accepts a bare name: `drpcli profiles create p1`.
        obj = {"Name": str(obj)}
    if not isinstance(obj, dict):
        raise CliError(f"create needs an object, got {_json_type(obj)}")
    return ctx.client.create(ctx.prefix, obj)


@command("update", "<key> <obj>", "merge a partial object into the stored one", WRITABLE)
def update(ctx: Context, a: Args) -> Any:
    obj = load_object(a["obj"], ctx.stdin)
    if not isinstance(obj, dict):
        raise CliError(f"update needs a (partial) object, got {_json_type(obj)}")
    return ctx.client.merge_patch(ctx.prefix, a["key"], obj)


@command("patch", "<key> <json-patch>", "apply an RFC 6902 JSON Patch", WRITABLE)
def patch(ctx: Context, a: Args) -> Any:
    ops = load_object(a["json-patch"], ctx.stdin)
    if not isinstance(ops, list):
        raise CliError(
            f"a JSON Patch is a list of operations, got {_json_type(ops)} "
            f"(to merge a partial object use: drpcli {ctx.group} update)"
        )
    return ctx.client.json_patch(ctx.prefix, a["key"], ops)


@command("destroy", "<key>", "delete the object and print it", ALL)
def destroy(ctx: Context, a: Args) -> Any:
    return ctx.client.delete(ctx.prefix, a["key"])


@command(
    "wait",
    "<key> <field> <value> [<timeout>]",
    f"wait until field equals value (timeout in seconds, default {DEFAULT_WAIT:g})",
    ALL,
)
def wait(ctx: Context, a: Args) -> Any:
    """Polls ``show``; fails when the object vanishes or time runs out.

    The value is compared JSON-parsed (``true``, ``3``), and also as the raw
    word against a string field, so ``wait k Name 9`` matches ``"9"``.
    """
    key, field_path, word = a["key"], a["field"], a["value"]
    timeout = DEFAULT_WAIT if a["timeout"] is None else parse_duration(a["timeout"])
    wanted = parse_value(word)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        obj = ctx.client.get(ctx.prefix, key)
        found, current = field_of(obj, field_path)
        if found and ((current == wanted and _same_type(current, wanted)) or current == word):
            return obj
        left = deadline - time.monotonic()
        if left <= 0:
            shown = _short(current) if found else "absent"
            raise CliError(
                f"timed out after {timeout:g}s waiting for {ctx.prefix} {key} "
                f"{field_path} = {word} (it is {shown})"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, 1.0)


def field_of(obj: Any, path: str) -> tuple[bool, Any]:
    """Look ``path`` up in ``obj``: the whole path as a key first, then split
    at each ``.`` in turn (``Runtime.State``, ``Params.a.b``), so names that
    contain dots still resolve; list items by index (``Errors.0``)."""
    if isinstance(obj, dict) and path in obj:
        return True, obj[path]
    if isinstance(obj, list) and path.isdigit() and int(path) < len(obj):
        return True, obj[int(path)]
    for i, ch in enumerate(path):
        if ch != ".":
            continue
        found, inner = field_of(obj, path[:i])
        if found:
            found, value = field_of(inner, path[i + 1 :])
            if found:
                return True, value
    return False, None


@command("params", "<key>", "show all params of the object", WITH_PARAMS)
def params(ctx: Context, a: Args) -> Any:
    return ctx.client.params(ctx.prefix, a["key"])


@command("get", "<key> param <name>", "show one param", WITH_PARAMS)
def get_param(ctx: Context, a: Args) -> Any:
    return ctx.client.get_param(ctx.prefix, a["key"], a["name"])


@command(
    "set",
    "<key> param <name> to <value>",
    "set one param (value: JSON, else a string)",
    WITH_PARAMS,
)
def set_param(ctx: Context, a: Args) -> Any:
    return ctx.client.set_param(ctx.prefix, a["key"], a["name"], parse_value(a["value"]))


@command("remove", "<key> param <name>", "remove one param", WITH_PARAMS)
def remove_param(ctx: Context, a: Args) -> Any:
    return ctx.client.delete_param(ctx.prefix, a["key"], a["name"])


def _same_type(a: Any, b: Any) -> bool:
    """``1 == True`` in Python but not in JSON."""
    return isinstance(a, bool) == isinstance(b, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
