"""Provider actions: ``actions``, ``action`` and ``runaction``, as DRP's drpcli has them.

    drpcli machines actions <key>
    drpcli machines action <key> <command>
    drpcli machines runaction <key> <command> [<name> <value> ...] [--plugin <instance>]
    drpcli system actions | system action <command> | system runaction <command> ...

Every object prefix gets them: which prefixes really have actions is the
server's business (it answers an empty list or a 404), so a provider that
adds actions on profiles or on its own StoreObjects prefix needs no drpcli
change. ``<command>`` may be ``<provider>:<command>``.

``runaction`` takes its params as upstream does: one argument that is a
JSON or YAML map, a file holding one, or ``-`` (stdin); or ``name value``
pairs, each value decoded as YAML (``yes`` is true, ``[a, b]`` a list,
``k: v`` a map, ``9`` a number, ``"9"`` a string;
:func:`~drpd.cli.inputs.parse_yaml_value`). ``--plugin <instance>`` (or
``--plugin=<instance>``) may stand anywhere after the command words;
``--plugin ""`` names no instance (upstream's own callback task sends it
when its param is unset). After a ``--`` word nothing is taken for a flag, so
a value may be the word ``--plugin``. The answer is the provider's result as
it sent it.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from .inputs import load_object, parse_yaml_value
from .objects import ALL
from .registry import Args, Context, UsageError, command, group

group("system", "system-wide actions of plugin providers")

PLUGIN_FLAG = "--plugin"

#: the pattern of ``runaction`` after the key: the ``name value`` pairs bind
#: as ``name`` (the first word) and ``value`` (the rest) and are re-split by
#: :func:`parse_run_words`, which also takes ``--plugin`` from anywhere.
RUN_PATTERN = "<command> [<name> <value>...] [--plugin <instance>]"


def split_plugin_flag(words: list[str], usage: str) -> tuple[list[str], str | None]:
    """Take ``--plugin <instance>`` / ``--plugin=<instance>`` out of ``words``.

    Returns the other words in order and the instance (None when absent).
    A ``--`` word ends flag parsing and is dropped.
    """
    rest: list[str] = []
    plugin: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            rest.extend(words[i + 1 :])
            break
        if word == PLUGIN_FLAG or word.startswith(PLUGIN_FLAG + "="):
            if word == PLUGIN_FLAG:
                if i + 1 >= len(words):
                    raise UsageError(f"{PLUGIN_FLAG} needs an instance name", usage)
                value = words[i + 1]
                i += 2
            else:
                value = word[len(PLUGIN_FLAG) + 1 :]
                i += 1
            if not value:  # --plugin "": no instance named, as upstream
                continue
            if plugin is not None and plugin != value:
                raise UsageError(f"{PLUGIN_FLAG} given twice ({plugin!r}, {value!r})", usage)
            plugin = value
            continue
        if word.startswith("--") and len(word) > 2:
            raise UsageError(
                f"unknown flag {word!r} (only {PLUGIN_FLAG}; put -- before a value "
                "that starts with --)",
                usage,
            )
        rest.append(word)
        i += 1
    return rest, plugin


def parse_pairs(words: list[str], usage: str) -> dict[str, Any]:
    """``name value`` pairs to the params map (a later name wins)."""
    if len(words) % 2:
        raise UsageError(f"param {words[-1]!r} has no value", usage)
    params: dict[str, Any] = {}
    for name, value in zip(words[::2], words[1::2], strict=True):
        if not name:
            raise UsageError("empty param name", usage)
        params[name] = parse_yaml_value(value)
    return params


def parse_params(words: list[str], stdin: IO[str], usage: str) -> dict[str, Any]:
    """One map argument (JSON, YAML, a file, ``-``), or ``name value`` pairs."""
    if len(words) == 1:
        params = load_object(words[0], stdin)
        if not isinstance(params, dict):
            raise UsageError(f"{words[0]!r} is not a map of params (JSON or YAML), "
                             "nor are the params given as name value pairs", usage)
        return params
    return parse_pairs(words, usage)


def parse_run_words(
    words: list[str], positional: int, usage: str, stdin: IO[str] | None = None
) -> tuple[list[str], dict[str, Any], str | None]:
    """Split ``runaction``'s words into ``positional`` leading words (key,
    command), the params and the ``--plugin`` choice."""
    rest, plugin = split_plugin_flag(words, usage)
    names = ("<key>", "<command>")[-positional:]
    if len(rest) < positional:
        raise UsageError(f"missing {names[len(rest)]}", usage)
    params = parse_params(rest[positional:], stdin if stdin is not None else sys.stdin, usage)
    return rest[:positional], params, plugin


def _bound_words(a: Args, *leading: str) -> list[str]:
    """The words :func:`~drpd.cli.registry.match` bound to ``RUN_PATTERN``
    (preceded by ``leading`` captures), back in their original order: the
    pattern binds every word, so nothing is lost or reordered."""
    words = [a[name] for name in leading]
    if a["name"] is not None:
        words.append(a["name"])
    return words + list(a["value"])


def _key(a: Args, ctx: Context) -> str:
    key = a["key"]
    if not key:
        raise UsageError("empty <key>", ctx.usage)
    return key


# -- on objects ------------------------------------------------------------


def _on_objects(group_name: str) -> bool:
    return group_name in ALL


@command("actions", "<key>", "list the provider actions available on the object", _on_objects,
         flags={"plugin": True})
def list_actions(ctx: Context, a: Args) -> Any:
    return ctx.client.actions(ctx.prefix, _key(a, ctx), a.get("--plugin") or None)


@command(
    "action",
    "<key> <command>",
    "show one available action (<command> may be <provider>:<command>)",
    _on_objects,
    flags={"plugin": True},
)
def show_action(ctx: Context, a: Args) -> Any:
    return ctx.client.action(ctx.prefix, _key(a, ctx), a["command"], a.get("--plugin") or None)


@command(
    "runaction",
    "<key> " + RUN_PATTERN,
    "run a provider action (params: one JSON/YAML map, a file, -, or name value pairs "
    "decoded as YAML); prints the provider's answer",
    _on_objects,
    raw=True,
)
def run_action(ctx: Context, a: Args) -> Any:
    (key, cmd), params, plugin = parse_run_words(_bound_words(a, "key", "command"), 2, ctx.usage,
                                                 ctx.stdin)
    if not key:
        raise UsageError("empty <key>", ctx.usage)
    return ctx.client.run_action(ctx.prefix, key, cmd, params, plugin)


# -- on the system ---------------------------------------------------------


@command("actions", "", "list the system-wide actions", ("system",), flags={"plugin": True})
def list_system_actions(ctx: Context, a: Args) -> Any:
    return ctx.client.actions("system", None, a.get("--plugin") or None)


@command("action", "<command>", "show one system action", ("system",), flags={"plugin": True})
def show_system_action(ctx: Context, a: Args) -> Any:
    return ctx.client.action("system", None, a["command"], a.get("--plugin") or None)


@command(
    "runaction",
    RUN_PATTERN,
    "run a system action (params as for an object's runaction); prints the provider's answer",
    ("system",),
    raw=True,
)
def run_system_action(ctx: Context, a: Args) -> Any:
    (cmd,), params, plugin = parse_run_words(_bound_words(a, "command"), 1, ctx.usage, ctx.stdin)
    return ctx.client.run_action("system", None, cmd, params, plugin)
