"""drpcli's global flags, taken from anywhere on the command line, as cobra does.

DRP's drpcli declares its flags on the root command (cobra's persistent
flags), so ``drpcli machines list -F yaml`` and ``drpcli -F yaml machines
list`` are the same. :func:`split_globals` takes every global flag out of the
words wherever it stands and leaves the rest, in order, for the command;
a ``--`` word stops it (the words after it are values even when they look
like flags: ``set k param p to -- -E``) and is left for the command.

Forms: ``--format yaml``, ``--format=yaml``, ``-F yaml``, ``-Fyaml``,
``-F=yaml``. Flags upstream has that only shape its table output or its
proxies are refused in one line rather than silently ignored (README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .registry import UsageError

USAGE = "drpcli [global flags] <prefix> <command> [args...] [global flags]"


@dataclass(frozen=True)
class Flag:
    long: str
    short: str = ""
    value: bool = True
    help: str = ""
    #: accepted for scripts written for upstream, with no effect here
    ignored: bool = False
    #: refused with this reason
    unsupported: str = ""


FLAGS: tuple[Flag, ...] = (
    Flag("endpoint", "E", help="drpd's API (env RS_ENDPOINT)"),
    Flag("username", "U", help="user for HTTP Basic auth (env RS_KEY=user:password)"),
    Flag("password", "P", help="password for HTTP Basic auth"),
    Flag("token", "T", help="bearer token instead of a password (env RS_TOKEN)"),
    Flag("ca-cert", help="verify drpd's TLS certificate against FILE (env RS_CA_CERT)"),
    Flag("insecure", value=False, help="do not verify drpd's TLS certificate"),
    Flag("format", "F", help="json (default) or yaml (env RS_FORMAT)"),
    Flag("catalog", "c", help="the catalog to read (env RS_CATALOG)"),
    Flag("ref", "r", help="a reference object for update/set/add/remove (JSON, YAML, file)"),
    Flag("force", "f", value=False, help="send force=true on create and update"),
    Flag("debug", "d", value=False, help="print each request and its status on stderr"),
    Flag("exit-early", "X", value=False,
         help="exit 1 when an answer has a non-empty Errors (env RS_OBJECT_ERRORS_ARE_FATAL)"),
    Flag("help", "h", value=False, help="this help; `drpcli <prefix> help` lists commands"),
    Flag("version", value=False, help="print drpcli's version"),
    Flag("no-color", "N", value=False, ignored=True),
    Flag("no-token", "x", value=False, ignored=True),
    Flag("trace", "t", ignored=True),
    Flag("trace-token", "Z", ignored=True),
    Flag("colors", "C", unsupported="drpcli prints uncoloured JSON or YAML"),
    Flag("print-fields", "J", unsupported="drpcli has no text or table output; use jq"),
    Flag("no-header", "H", value=False,
         unsupported="drpcli has no text or table output; use jq"),
    Flag("truncate-length", "j", unsupported="drpcli has no text or table output; use jq"),
    Flag("download-proxy", "D", unsupported="set https_proxy for catalog downloads"),
    Flag("url-proxy", "u", unsupported="drpd does not pass actions through another DRP"),
)
# DRP's deprecated camelCase spellings
_ALIASES = {"traceToken": "trace-token", "noToken": "no-token", "exitEarly": "exit-early"}
_LONG = {f.long: f for f in FLAGS}
_SHORT = {f.short: f for f in FLAGS if f.short}


@dataclass
class Globals:
    """What the global flags said (None: not given)."""

    values: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.values


def _lookup(word: str) -> tuple[Flag | None, str | None]:
    """The flag ``word`` names and an attached value (``--f=v``, ``-Fv``)."""
    if word.startswith("--") and len(word) > 2:
        name, eq, value = word[2:].partition("=")
        flag = _LONG.get(_ALIASES.get(name, name))
        return flag, (value if eq else None)
    if word.startswith("-") and len(word) >= 2 and word[1] != "-":
        flag = _SHORT.get(word[1])
        if flag is None:
            return None, None
        rest = word[2:]
        if not rest:
            return flag, None
        if not flag.value:
            return None, None  # e.g. -dx: not ours
        return flag, rest.removeprefix("=")
    return None, None


#: flags of commands that share a global flag's spelling: in these commands
#: the word belongs to the command (``catalog item install x --version 1``)
COMMAND_OWNED = {"version": ("catalog",)}


def split_globals(argv: list[str]) -> tuple[Globals, list[str]]:
    """Take the global flags out of ``argv``; returns them and the other words."""
    found = Globals()
    words: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            words.extend(argv[i:])
            break
        flag, attached = _lookup(word)
        if flag is not None and flag.long in COMMAND_OWNED and words[:1] and \
                words[0] in COMMAND_OWNED[flag.long]:
            flag = None
        if flag is None:
            words.append(word)
            i += 1
            continue
        if flag.unsupported:
            raise UsageError(f"--{flag.long} is not supported by drpd's drpcli: "
                             f"{flag.unsupported}", USAGE)
        if flag.value:
            if attached is None:
                if i + 1 >= len(argv):
                    raise UsageError(f"--{flag.long} needs a value", USAGE)
                attached = argv[i + 1]
                i += 1
            value: Any = attached
        else:
            if attached is not None:
                low = attached.lower()
                if low not in ("true", "false", "1", "0"):
                    raise UsageError(f"--{flag.long} takes true or false, not {attached!r}", USAGE)
                value = low in ("true", "1")
            else:
                value = True
        if not flag.ignored:
            found.values[flag.long] = value
        i += 1
    return found, words


def flags_help() -> str:
    lines = []
    for f in FLAGS:
        if f.ignored or f.unsupported:
            continue
        names = (f"-{f.short}, " if f.short else "    ") + f"--{f.long}"
        if f.value:
            names += " " + f.long.split("-")[-1].upper()
        lines.append(f"  {names:<26}{f.help}")
    ignored = ", ".join(f"--{f.long}" for f in FLAGS if f.ignored)
    lines.append(f"  (accepted with no effect, for upstream scripts: {ignored})")
    return "\n".join(lines)
