"""``drpcli extended -l <prefix> <command> ...``: the generic object commands
against any prefix, above all the ones providers declare as ``StoreObjects``.

drpcli cannot know those prefixes in advance (they come and go with
providers), so ``extended`` takes the prefix as a word (``-l``, or
``--ldata`` as DRP spells it in full) and runs the same handlers the
built-in prefixes use -- ``list``, ``show``, ``exists``, ``create``,
``update``, ``patch``, ``destroy``, ``wait``, and the provider actions --
with that prefix. Objects of a StoreObjects prefix are keyed by ``Id``, so a
bare word given to ``create`` becomes ``{"Id": word}``.

The nested commands are registered under the group name
``extended -l <prefix>``, so their usage lines read exactly as typed
(``drpcli extended -l incrementers show <key>``) and
``drpcli extended -l <prefix> help`` lists them.
"""

from __future__ import annotations

from typing import Any

from . import actions, objects
from .inputs import load_object
from .registry import (
    NO_OUTPUT,
    Args,
    CliError,
    Command,
    Context,
    UsageError,
    bind,
    command,
    commands_for,
    group,
)

NESTED = "extended -l "

group("extended", "any prefix, e.g. a provider's StoreObjects: extended -l <prefix> <command>")


def _nested(group_name: str) -> bool:
    return group_name.startswith(NESTED)


#: the generic handlers ``extended`` reuses, by command name
_GENERIC: dict[str, Any] = {
    "list": objects.list_objects,
    "show": objects.show,
    "exists": objects.exists,
    "update": objects.update,
    "patch": objects.patch,
    "destroy": objects.destroy,
    "wait": objects.wait,
    "actions": actions.list_actions,
    "action": actions.show_action,
    "runaction": actions.run_action,
}


def _generic_command(name: str) -> Command:
    """The registered generic command ``name`` (its pattern and summary),
    found by its handler, so a prefix's specialised override is never
    picked up by mistake."""
    for prefix in objects.ALL:
        cmd = commands_for(prefix).get(name)
        if cmd is not None and cmd.run is _GENERIC[name]:
            return cmd
    raise RuntimeError(f"no generic {name!r} command is registered")


def create(ctx: Context, a: Args) -> Any:
    """``create`` keyed by ``Id``: a bare word is ``{"Id": word}``."""
    obj = load_object(a["obj"], ctx.stdin)
    if isinstance(obj, str | int | float) and not isinstance(obj, bool):
        obj = {"Id": str(obj)}
    if not isinstance(obj, dict):
        raise CliError("create needs an object (or an Id)")
    return ctx.client.create(ctx.prefix, obj)


command("create", "<obj>", "create from JSON, YAML, a file, - (stdin), or just an Id", _nested)(
    create
)
for _name in _GENERIC:
    _cmd = _generic_command(_name)
    command(_name, _cmd.pattern, _cmd.summary, _nested, flags=_cmd.flags,
            raw=_cmd.flags is None)(_cmd.run)


_SUBCOMMANDS = ", ".join(commands_for(NESTED + "x"))
_PATTERN = "<prefix> <command> [<args>...]"
_SUMMARY = (
    f"run a generic command on <prefix> ({_SUBCOMMANDS}); "
    "drpcli extended -l <prefix> help shows their usage"
)


@command("-l", _PATTERN, _SUMMARY, ("extended",))
def run_extended(ctx: Context, a: Args) -> Any:
    prefix, name, words = a["prefix"], a["command"], a["args"]
    if not prefix or prefix.startswith("-") or "/" in prefix:
        raise UsageError(f"bad prefix {prefix!r}", ctx.usage)
    group_name = NESTED + prefix
    cmds = commands_for(group_name)
    if name in ("help", "-h", "--help"):
        from .main import group_help  # main imports this module

        if ctx.stdout is not None:
            ctx.stdout.write(group_help(group_name))
        return NO_OUTPUT
    cmd = cmds.get(name)
    if cmd is None:
        raise UsageError(
            f"unknown command {name!r} for extended -l {prefix}; commands: {', '.join(cmds)}"
        )
    usage = cmd.usage(group_name)
    nested = Context(
        group=group_name,
        prefix=prefix,
        stdin=ctx.stdin,
        make_client=ctx.make_client,
        usage=usage,
        stdout=ctx.stdout,
        globals=ctx.globals,
        stderr=ctx.stderr,
    )
    try:
        return cmd.run(nested, bind(cmd, words, usage))
    finally:
        nested.close()


command("--ldata", _PATTERN, "the same as -l", ("extended",))(run_extended)
