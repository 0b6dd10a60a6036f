"""The command table drpcli dispatches on, and the argument patterns.

drpcli's grammar is DRP's: ``drpcli <group> <command> <words...>`` where the
words read like a sentence (``set <key> param <name> to <value>``). That does
not fit argparse's flags-and-positionals model, so each command declares a
*pattern* in the same notation as its usage line and :func:`match` binds the
words to it. The usage line shown on a mistake is then the pattern itself and
can never drift from what is accepted.

Adding a command is one decorated function (:func:`command`); a new group of
commands (``files``, ``catalog``, ...) is a :func:`group` call plus its
commands, in a module imported by :mod:`drpd.cli.main`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client import Client, Settings


class CliError(Exception):
    """A failure drpcli reports as one ``Error:`` line and exit status 1."""

    def line(self) -> str:
        return " ".join(str(self).split())


class UsageError(CliError):
    """The words did not fit the command; carries the usage line to show."""

    def __init__(self, problem: str, usage: str = "") -> None:
        self.problem = problem
        self.usage = usage
        super().__init__(f"{problem}; usage: {usage}" if usage else problem)


#: What a handler returns when it has nothing to print (``exists``).
NO_OUTPUT: Any = object()

Args = dict[str, Any]


@dataclass
class Context:
    """What a command handler may use: the target, the client, stdin.

    ``prefix`` is the REST prefix the command acts on (the group name for
    object kinds). The client is made on first use, so usage errors never
    depend on the endpoint being reachable or the TLS settings being right.
    """

    group: str
    prefix: str
    stdin: IO[str]
    make_client: Callable[[], Client]
    usage: str = ""
    #: where a command that prints more than its answer writes (nested help)
    stdout: IO[str] | None = None
    #: the global flags (drpd.cli.flags.Globals); None in tests that build a Context
    globals: Any = None
    stderr: IO[str] | None = None
    _client: Client | None = field(default=None, repr=False)

    def flag(self, name: str, default: Any = None) -> Any:
        """A global flag's value (``ref``, ``force``, ``catalog``, ...)."""
        return default if self.globals is None else self.globals.get(name, default)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    @property
    def settings(self) -> Settings:
        return self.client.settings

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


Handler = Callable[[Context, Args], Any]


@dataclass(frozen=True)
class Command:
    name: str
    pattern: str
    summary: str
    run: Handler
    applies: Callable[[str], bool]
    #: the command's own ``--flags``: name -> takes a value; None: the
    #: command reads flags itself from its words
    flags: dict[str, bool] | None = None

    def usage(self, group: str) -> str:
        text = f"drpcli {group} {self.name} {self.pattern}".rstrip()
        if self.flags:
            text += " " + " ".join(f"[--{n}{' <v>' if v else ''}]" for n, v in self.flags.items())
        return text


@dataclass(frozen=True)
class Group:
    name: str
    summary: str


_COMMANDS: list[Command] = []
_GROUPS: dict[str, Group] = {}


def group(name: str, summary: str) -> None:
    """Declare a first word drpcli accepts (an object prefix or ``info``...)."""
    _GROUPS.setdefault(name, Group(name, summary))


def groups() -> list[Group]:
    return list(_GROUPS.values())


def command(
    name: str, pattern: str, summary: str, groups: Iterable[str] | Callable[[str], bool],
    flags: dict[str, bool] | None = None,
    raw: bool = False,
) -> Callable[[Handler], Handler]:
    """Register ``run`` as ``drpcli <group> <name> <pattern>`` for ``groups``
    (names, or a predicate on the group name). Later registrations of the
    same name for the same group win, so a specialised command can override
    a generic one. ``flags`` are the command's own ``--flags`` (name ->
    takes a value), bound as ``--name`` in its args; ``raw`` commands get
    every word and read their flags themselves."""
    if callable(groups):
        applies = groups
    else:
        names = frozenset(groups)

        def applies(g: str) -> bool:
            return g in names

    def register(run: Handler) -> Handler:
        _COMMANDS.append(Command(name, pattern, summary, run, applies,
                                 None if raw else dict(flags or {})))
        return run

    return register


def commands_for(group_name: str) -> dict[str, Command]:
    found: dict[str, Command] = {}
    for cmd in _COMMANDS:
        if cmd.applies(group_name):
            found[cmd.name] = cmd
    return found


# -- a command's own flags ---------------------------------------------------

_FLAG_WORD = re.compile(r"^--[A-Za-z][A-Za-z0-9-]*(=.*)?$", re.DOTALL)


def take_flags(words: list[str], allowed: dict[str, bool], usage: str
               ) -> tuple[list[str], dict[str, Any]]:
    """Take ``--name value`` / ``--name=value`` / ``--name`` (booleans) out of
    ``words`` wherever they are; a ``--`` word ends flags and is dropped.
    Returns the other words and ``{name: value}`` (True for booleans)."""
    rest: list[str] = []
    found: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            rest.extend(words[i + 1:])
            break
        if not _FLAG_WORD.match(word):
            rest.append(word)
            i += 1
            continue
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            known = ", ".join(f"--{n}" for n in allowed) or "none"
            raise UsageError(f"unknown flag --{name} (flags: {known}; "
                             "put -- before a value that starts with --)", usage)
        if allowed[name]:
            if not eq:
                if i + 1 >= len(words):
                    raise UsageError(f"--{name} needs a value", usage)
                value = words[i + 1]
                i += 1
            found[name] = value
        else:
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"--{name} takes true or false, not {value!r}", usage)
            found[name] = (value.lower() in ("true", "1")) if eq else True
        i += 1
    return rest, found


def bind(cmd: Command, words: list[str], usage: str) -> Args:
    """The args of ``cmd`` from its words: its flags, then its pattern."""
    if cmd.flags is None:
        return match(cmd.pattern, words, usage)
    rest, found = take_flags(words, cmd.flags, usage)
    args = match(cmd.pattern, rest, usage)
    for name in cmd.flags:
        args["--" + name] = found.get(name)
    return args


# -- patterns --------------------------------------------------------------

_TOKEN = re.compile(r"\[[^\]]*\]|\S+")


@dataclass(frozen=True)
class _Item:
    literal: str = ""
    capture: str = ""
    rest: bool = False


def _items(text: str) -> list[_Item]:
    out = []
    for word in text.split():
        if word.startswith("<"):
            rest = word.endswith("...")
            out.append(_Item(capture=word.rstrip(".").strip("<>"), rest=rest))
        else:
            out.append(_Item(literal=word))
    return out


def match(pattern: str, words: list[str], usage: str) -> Args:
    """Bind ``words`` to ``pattern``; raise :class:`UsageError` on a misfit.

    Notation: ``<name>`` one word; ``<name>...`` all remaining words (a
    list); ``literal`` that exact word; ``[...]`` an optional trailing group,
    taken when words remain and its first literal (if any) matches.
    Optional captures that are absent are ``None`` (``[]`` for rests).
    """
    args: Args = {}
    pos = 0
    for token in _TOKEN.findall(pattern):
        optional = token.startswith("[")
        items = _items(token.strip("[]") if optional else token)
        if optional:
            for item in items:
                if item.capture:
                    args[item.capture] = [] if item.rest else None
            if pos >= len(words):
                continue
            first = items[0]
            if first.literal and words[pos] != first.literal:
                continue
        for item in items:
            if item.rest:
                if not optional and pos >= len(words):
                    raise UsageError(f"missing <{item.capture}>", usage)
                args[item.capture] = words[pos:]
                pos = len(words)
                continue
            if pos >= len(words):
                want = f"<{item.capture}>" if item.capture else repr(item.literal)
                raise UsageError(f"missing {want}", usage)
            word = words[pos]
            if item.literal:
                if word != item.literal:
                    raise UsageError(f"expected {item.literal!r}, got {word!r}", usage)
            else:
                args[item.capture] = word
            pos += 1
    if pos < len(words):
        raise UsageError(f"unexpected argument {words[pos]!r}", usage)
    return args
