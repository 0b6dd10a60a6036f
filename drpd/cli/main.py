"""drpcli's entry point: global flags, dispatch, and the one-line error rule.

Whatever goes wrong -- a bad word, bad JSON, a refused connection, an
untrusted certificate, a 4xx from drpd -- drpcli writes exactly one line,
``Error: ...``, to stderr and exits 1, so scripts can rely on ``$?`` and on
stderr being one line. Only answers go to stdout.

Global flags go anywhere, as with DRP's drpcli (``drpcli machines list -F
yaml``); :mod:`drpd.cli.flags` takes them out. A ``--`` word ends flags, so
a value that looks like one can still be given (``to -- -E``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

from .. import __version__
from ..client import DEFAULT_ENDPOINT, Client, ClientError
from . import actions, admin, catalog, events, extended, files, objects, params, providers  # noqa: F401 -- registers commands
from .flags import USAGE, Globals, flags_help, split_globals
from .output import FORMATS, Text, render
from .registry import NO_OUTPUT, CliError, Context, UsageError, bind, commands_for, groups

if TYPE_CHECKING:
    import httpx

GLOBAL_HELP = f"""\
usage: {USAGE}

Talks to drpd's REST API and prints answers as JSON (or YAML with -F yaml).
Default endpoint: {DEFAULT_ENDPOINT}.

global flags (anywhere on the line):
{{flags}}

Without --ca-cert, the certificate of a loopback endpoint (127.0.0.0/8, ::1,
localhost) is accepted as is; any other endpoint must present one the
system trusts.

prefixes:
"""


def global_help() -> str:
    width = max(len(g.name) for g in groups())
    lines = [f"  {g.name:<{width}}  {g.summary}" for g in groups()]
    return GLOBAL_HELP.format(flags=flags_help()) + "\n".join(lines) + "\n"


def group_help(name: str) -> str:
    cmds = commands_for(name)
    lines = [f"usage: drpcli {name} <command> [args...]", "", "commands:"]
    for cmd in cmds.values():
        lines.append(f"  {cmd.usage(name)}")
        lines.append(f"      {cmd.summary}")
    return "\n".join(lines) + "\n"


def run(
    argv: list[str],
    *,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run one drpcli invocation; returns the exit status.

    The streams, the environment and the transport are parameters so tests
    can drive the whole command line in-process; :func:`main` passes the
    real ones.
    """
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    environ: Mapping[str, str] = os.environ if env is None else env
    try:
        opts, words = split_globals(argv)
        if opts.get("version") and not words:
            stdout.write(f"Version: v{__version__}\n")
            return 0
        if opts.get("help") or words[:1] in (["help"], ["-h"], ["--help"]):
            if opts.get("help") and words and commands_for(words[0]):
                stdout.write(group_help(words[0]))
            else:
                stdout.write(global_help())
            return 0
        if not words:
            raise UsageError("missing <prefix>; see drpcli --help", USAGE)
        fmt = opts.get("format") or environ.get("RS_FORMAT") or "json"
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}: drpcli prints {' or '.join(FORMATS)}"
                             " (no text or table output; use jq)", USAGE)
        fatal_errors = bool(opts.get("exit-early")) or (
            environ.get("RS_OBJECT_ERRORS_ARE_FATAL", "").lower() == "true")

        def make_client() -> Client:
            return Client(
                opts.get("endpoint"),
                opts.get("username"),
                opts.get("password"),
                opts.get("token"),
                opts.get("ca-cert"),
                bool(opts.get("insecure")),
                env=env,
                transport=transport,
                debug=stderr if opts.get("debug") else None,
            )

        result = dispatch(words, stdin, stdout, make_client, opts, stderr)
        if result is not NO_OUTPUT:
            stdout.write(render(result, fmt))
            stdout.flush()
        if fatal_errors:
            problems = _object_errors(result)
            if problems:
                raise CliError(f"the answer has Errors: {'; '.join(problems)}")
        return 0
    except (CliError, ClientError) as exc:
        stderr.write(f"Error: {exc.line()}\n")
        return 1
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        stderr.write("Error: interrupted\n")
        return 130
    except Exception as exc:  # the promise is one line, never a traceback
        detail = " ".join(str(exc).split())
        stderr.write(f"Error: internal error: {type(exc).__name__}: {detail}\n")
        return 1


def _object_errors(result: Any) -> list[str]:
    """``Errors`` of an answer (an object, or each object of a list)."""
    items = result if isinstance(result, list) else [result]
    found: list[str] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("Errors"), list):
            found.extend(str(e) for e in item["Errors"])
    return found


def dispatch(
    words: list[str],
    stdin: IO[str],
    stdout: IO[str],
    make_client: Callable[[], Client],
    opts: Globals | None = None,
    stderr: IO[str] | None = None,
) -> object:
    """Find the command for ``<prefix> <command>``, bind its words, run it."""
    group_name = words[0]
    cmds = commands_for(group_name)
    if group_name == "version" and len(words) == 1:
        return Text(f"Version: v{__version__}")
    if not cmds:
        if group_name.startswith("-"):
            raise UsageError(f"unknown global flag {group_name!r}", USAGE)
        known = ", ".join(g.name for g in groups())
        raise UsageError(f"unknown prefix {group_name!r} (known: {known})")
    if len(words) < 2:
        raise UsageError(f"missing command; commands: {', '.join(cmds)} (drpcli {group_name} help)")
    name = words[1]
    if name in ("help", "-h", "--help"):
        stdout.write(group_help(group_name))
        return NO_OUTPUT
    cmd = cmds.get(name)
    if cmd is None:
        raise UsageError(f"unknown command {name!r} for {group_name}; commands: {', '.join(cmds)}")
    usage = cmd.usage(group_name)
    rest = words[2:]
    ctx = Context(
        group=group_name,
        prefix=group_name,
        stdin=stdin,
        make_client=make_client,
        usage=usage,
        stdout=stdout,
        globals=opts,
        stderr=stderr,
    )
    try:
        return cmd.run(ctx, bind(cmd, rest, usage))
    finally:
        ctx.close()


def main() -> None:
    """The ``drpcli`` console script."""
    try:
        code = run(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`drpcli ... | head`): not our failure, and
        # Python must not complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
