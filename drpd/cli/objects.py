"""The commands every object prefix shares, driven by :data:`drpd.models.KINDS`.

Which commands a prefix gets follows from its :class:`~drpd.models.Kind`:
all can be listed, counted, shown, waited on and destroyed; only
``writable`` ones (not plugin_providers, which are uploaded) take
``create``/``update``/``patch``; those with ``has_params`` get the param
commands (:mod:`drpd.cli.params`). Content bundles are uploaded whole, so
they get no object writes either. Outputs follow DRP's drpcli: ``destroy``
prints ``Deleted <kind> <key>`` (``files destroy``: ``Deleted <path>``), ``wait`` prints ``complete``/``timeout``/
``interrupt``.
"""

from __future__ import annotations

import time
from typing import Any

from ..client import ClientError
from ..models import KINDS
from .inputs import load_object, parse_duration, parse_filter_words, parse_filters, parse_value
from .output import Text
from .registry import NO_OUTPUT, Args, CliError, Context, command, group

_SUMMARIES = {
    "machines": "machines (keyed by Uuid; Name:<name> works too) and their params",
    "params": "param definitions: type schema, documentation, secure flag",
    "profiles": "profiles: named sets of params",
    "users": "API users, their roles, tokens and passwords",
    "roles": "roles: named lists of claims that users hold",
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

#: upstream's default for ``wait``: one day
DEFAULT_WAIT = 86400.0

#: DRP's singular names, as ``destroy`` prints them
SINGULAR = {
    "machines": "machine", "params": "param", "profiles": "profile", "users": "user",
    "roles": "role", "plugins": "plugin", "plugin_providers": "plugin_provider", "contents": "content",
    "tasks": "task", "stages": "stage", "bootenvs": "bootenv", "templates": "template",
    "workflows": "workflow",
}

_LIST_FLAGS = {"limit": True, "offset": True, "slim": True, "params": True, "decode": False,
               "sort": True, "reverse": False}


def list_query(words: list[str], flags: Args) -> list[tuple[str, str]]:
    """The query of ``list``/``count``: the words in either of upstream's
    forms (``Name=m1 limit=1``, or ``Name Eq m1 sort Name reverse``), then
    the ``--limit``-style flags."""
    if words and "=" in words[0]:
        pairs = parse_filters(words)
    else:
        pairs = parse_filter_words(words)
    for name in ("limit", "offset", "slim", "params", "sort"):
        if flags.get("--" + name) is not None:
            pairs.append((name, str(flags["--" + name])))
    for name in ("decode", "reverse"):
        if flags.get("--" + name):
            pairs.append((name, "true"))
    return pairs


@command("list", "[<filter>...]",
         "list objects; filters: <index> <Eq|Ne|Lt|Lte|Gt|Gte|Re|In|Nin> <value>, "
         "<index> <Between|Except> <lo> <hi>, sort <index>, reverse, limit N, offset N "
         "(or Field=value)", ALL, flags=_LIST_FLAGS)
def list_objects(ctx: Context, a: Args) -> Any:
    return ctx.client.list(ctx.prefix, list_query(a["filter"], a))


@command("count", "[<filter>...]", "count the objects the filters of list select", ALL,
         flags={k: v for k, v in _LIST_FLAGS.items() if k in ("decode",)})
def count(ctx: Context, a: Args) -> Any:
    return ctx.client.count(ctx.prefix, list_query(a["filter"], a))


@command("indexes", "", "the indexes list filters and sorts on", ALL)
def indexes(ctx: Context, a: Args) -> Any:
    return ctx.client.indexes(ctx.prefix)


_SHOW_FLAGS = {"slim": True, "params": True, "decode": False}


def _show_query(a: Args) -> list[tuple[str, str]]:
    query = [(n, str(a["--" + n])) for n in ("slim", "params") if a.get("--" + n)]
    if a.get("--decode"):
        query.append(("decode", "true"))
    return query


@command("show", "<key>", "show one object (<key> may be <index>:<value>)", ALL,
         flags=_SHOW_FLAGS)
def show(ctx: Context, a: Args) -> Any:
    return ctx.client.get(ctx.prefix, a["key"], _show_query(a) or None)


@command("exists", "<key>", "exit 0 if the object exists, else 1", ALL)
def exists(ctx: Context, a: Args) -> Any:
    if not ctx.client.exists(ctx.prefix, a["key"]):
        raise ClientError(f"{ctx.prefix} {a['key']} does not exist", code=404)
    return NO_OUTPUT


@command("etag", "<key>", "print the object's revision (its ETag)", ALL)
def etag(ctx: Context, a: Args) -> Any:
    return Text(ctx.client.etag(ctx.prefix, a["key"]))


def _force(ctx: Context) -> list[tuple[str, str]] | None:
    return [("force", "true")] if ctx.flag("force") else None


@command("create", "<obj>", "create from JSON, YAML, a file, - (stdin), or just a name", WRITABLE)
def create(ctx: Context, a: Args) -> Any:
    obj = load_object(a["obj"], ctx.stdin)
    if isinstance(obj, str | int | float) and not isinstance(obj, bool):
        # DRP's drpcli accepts a bare name: `drpcli profiles create p1`.
        kind = KINDS.get(ctx.prefix)
        obj = {kind.key_field if kind is not None else "Name": str(obj)}
    if not isinstance(obj, dict):
        raise CliError(f"create needs an object, got {_json_type(obj)}")
    return ctx.client.create(ctx.prefix, obj, _force(ctx))


@command("update", "<key> <obj>",
         "merge a partial object into the stored one; with -r <ref>, only if the stored "
         "object still has ref's values where it changes", WRITABLE)
def update(ctx: Context, a: Args) -> Any:
    obj = load_object(a["obj"], ctx.stdin)
    if not isinstance(obj, dict):
        raise CliError(f"update needs a (partial) object, got {_json_type(obj)}")
    ref = ctx.flag("ref")
    if ref is None:
        return ctx.client.merge_patch(ctx.prefix, a["key"], obj, _force(ctx))
    base = load_object(ref, ctx.stdin)
    if not isinstance(base, dict):
        raise CliError(f"the -r reference must be an object, got {_json_type(base)}")
    ops = paranoid_patch(base, merge_patch(base, obj))
    if not ops:
        return base
    return ctx.client.json_patch(ctx.prefix, a["key"], ops, _force(ctx))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396, on plain values (what ``update`` means by merging)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def paranoid_patch(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON Patch from ``old`` to ``new`` that first tests each changed
    top-level field still holds ``old``'s value: DRP's ParanoidPatch, so a
    change made meanwhile by someone else fails (409) instead of being lost."""
    ops: list[dict[str, Any]] = []
    for key in sorted(set(old) | set(new)):
        if key in old and key in new and old[key] == new[key]:
            continue
        path = json_pointer(key)
        if key in old:
            ops.append({"op": "test", "path": path, "value": old[key]})
        if key not in new:
            ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "replace" if key in old else "add", "path": path,
                        "value": new[key]})
    return ops


@command("patch", "<key> <json-patch>", "apply an RFC 6902 JSON Patch", WRITABLE)
def patch(ctx: Context, a: Args) -> Any:
    ops = load_object(a["json-patch"], ctx.stdin)
    if not isinstance(ops, list):
        raise CliError(
            f"a JSON Patch is a list of operations, got {_json_type(ops)} "
            f"(to merge a partial object use: drpcli {ctx.group} update)"
        )
    return ctx.client.json_patch(ctx.prefix, a["key"], ops, _force(ctx))


@command("destroy", "<key>", "delete the object; prints Deleted <kind> <key>", ALL)
def destroy(ctx: Context, a: Args) -> Any:
    ctx.client.delete(ctx.prefix, a["key"])
    # `extended -l <prefix>` says "extended", as upstream's extended command does
    kind = "extended" if ctx.group != ctx.prefix else SINGULAR.get(ctx.prefix, ctx.prefix)
    return Text(f"Deleted {kind} {a['key']}")


@command(
    "wait",
    "<key> <field> <value> [<timeout>]",
    "wait until field equals value; prints complete, timeout or interrupt "
    "(timeout in seconds or 30s/5m/1h, default one day)",
    ALL,
)
def wait(ctx: Context, a: Args) -> Any:
    """Polls ``show`` as DRP's drpcli waits on events, and answers as it
    does: ``complete``, ``timeout`` or ``interrupt`` (Ctrl-C), exit status
    0 for all three; an object that is not there is an error.

    The value is compared JSON-parsed (``true``, ``3``), and also as the raw
    word against a string field, so ``wait k Name 9`` matches ``"9"``.
    """
    key, field_path, word = a["key"], a["field"], a["value"]
    timeout = DEFAULT_WAIT if a["timeout"] is None else parse_duration(a["timeout"])
    wanted = parse_value(word)
    deadline = time.monotonic() + timeout
    delay = 0.05
    try:
        while True:
            obj = ctx.client.get(ctx.prefix, key)
            found, current = field_of(obj, field_path)
            if found and ((current == wanted and _same_type(current, wanted)) or current == word):
                return Text("complete")
            left = deadline - time.monotonic()
            if left <= 0:
                return Text("timeout")
            time.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)
    except KeyboardInterrupt:
        return Text("interrupt")


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
