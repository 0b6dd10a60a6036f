"""Event patterns ``<type>.<action>.<key>`` and the websocket's two commands.

This is the protocol half of the event websocket (docs/api.md, "Events and the
websocket"), kept free of I/O and of trio so that three parts can share it
without paying for each other: the bus (:mod:`drpd.bus`) matches events
against patterns, the websocket route (:mod:`drpd.api.events`) parses what
clients send, and the provider SDK validates a provider's selected events
when the provider module is imported (``define`` must stay light).

Grammar, as DRP has it: a pattern is split on its *first two* dots only, so
keys may contain dots (``machines.update.m1.example.com``); each of the three
parts is ``*`` (anything) or a comma-separated list of exact values
(``machines,plugins.create,delete.*``); inside a value ``\\1``, ``\\2`` and
``\\3`` stand for a dot, a comma and an asterisk (DRP's escapes). A client
sends the text frames ``register <pattern>`` and ``deregister <pattern>``.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["Command", "Pattern", "PatternError", "parse_command"]

_PART_NAMES = ("type", "action", "key")
#: a frame longer than this is refused before it is parsed
MAX_FRAME = 4096


class PatternError(ValueError):
    """A pattern or a command frame that does not follow the grammar; the
    message says what is wrong in words a client author can act on."""


class Pattern:
    """One parsed ``<type>.<action>.<key>``; ``None`` in a part means ``*``.

    Two patterns are the same registration when their ``text`` is the same
    (the text as sent, without surrounding blanks), as in DRP, where the
    pattern string is the registration's name.
    """

    __slots__ = ("text", "types", "actions", "keys")

    def __init__(self, text: str) -> None:
        text = text.strip()
        if not text:
            raise PatternError("empty pattern: expected <type>.<action>.<key>, e.g. machines.*.*")
        if any(c.isspace() for c in text):
            raise PatternError(f"pattern {text!r} contains blanks: expected <type>.<action>.<key>")
        parts = text.split(".", 2)
        if len(parts) != 3:
            raise PatternError(
                f"pattern {text!r} has {len(parts)} part{'s' if len(parts) > 1 else ''}: "
                "expected <type>.<action>.<key> (use * for any)"
            )
        self.text = text
        self.types, self.actions, self.keys = (
            _part(value, name, text) for value, name in zip(parts, _PART_NAMES, strict=True)
        )

    def matches(self, type_: str, action: str, key: str) -> bool:
        return (
            (self.types is None or type_ in self.types)
            and (self.actions is None or action in self.actions)
            and (self.keys is None or key in self.keys)
        )

    def matches_event(self, event: Any) -> bool:
        """``matches`` on anything with ``Type``, ``Action`` and ``Key`` (an ``Event``)."""
        return self.matches(event.Type, event.Action, event.Key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"

    def __str__(self) -> str:
        return self.text


#: DRP's escapes inside a list value (Go's ``api.ValueInList``): ``\\1`` is
#: a dot, ``\\2`` a comma, ``\\3`` an asterisk
_ESCAPES = (("\\1", "."), ("\\2", ","), ("\\3", "*"))


def _unescape(item: str) -> str:
    for escape, char in _ESCAPES:
        item = item.replace(escape, char)
    return item


def _part(value: str, name: str, text: str) -> frozenset[str] | None:
    if value == "*":
        return None
    if "*" in value.split(","):
        return None
    items = [_unescape(item) for item in value.split(",")]
    if any(not item for item in items):
        raise PatternError(f"pattern {text!r} has an empty {name} (use * for any)")
    return frozenset(items)


Verb = Literal["register", "deregister"]


class Command:
    """A parsed client frame: ``register`` or ``deregister`` one pattern."""

    __slots__ = ("verb", "pattern")

    def __init__(self, verb: Verb, pattern: Pattern) -> None:
        self.verb = verb
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"Command({self.verb!r}, {self.pattern.text!r})"


def parse_command(frame: str) -> Command:
    """Parse one text frame sent by a websocket client; raise PatternError."""
    if len(frame) > MAX_FRAME:
        raise PatternError(f"frame of {len(frame)} characters is over the limit of {MAX_FRAME}")
    verb, _, rest = frame.strip().partition(" ")
    if verb not in ("register", "deregister"):
        shown = verb[:40] or frame[:40]
        raise PatternError(
            f"unknown command {shown!r}: send `register <type>.<action>.<key>` "
            "or `deregister <type>.<action>.<key>`"
        )
    return Command(verb, Pattern(rest))  # type: ignore[arg-type]
