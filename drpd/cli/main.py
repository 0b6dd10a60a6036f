"""drpcli's entry point: global flags, dispatch, and the one-line error rule.

Whatever goes wrong -- a bad word, bad JSON, a refused connection, an
untrusted certificate, a 4xx from drpd -- drpcli writes exactly one line,
``Error: ...``, to stderr and exits 1, so scripts can rely on ``$?`` and on
stderr being one line. Only answers go to stdout.

Global flags come before the prefix (``drpcli -F yaml machines list``);
everything after the prefix belongs to the command, so values such as
``-1`` or ``-`` after ``to`` are never taken for flags.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, NoReturn

from ..client import DEFAULT_ENDPOINT, Client, ClientError
from . import actions, admin, catalog, events, extended, files, objects, providers  # noqa: F401 -- registers commands
from .output import FORMATS, render
from .registry import NO_OUTPUT, CliError, Context, UsageError, commands_for, groups, match

if TYPE_CHECKING:
    import httpx

USAGE = "drpcli [global flags] <prefix> <command> [args...]"

GLOBAL_HELP = f"""\
usage: {USAGE}

Talks to drpd's REST API and prints answers as JSON (or YAML with -F yaml).

global flags (before the prefix):
  -E, --endpoint URL      drpd's API (env RS_ENDPOINT; default {DEFAULT_ENDPOINT})
  -U, --username NAME     user for HTTP Basic auth (env RS_KEY=user:password)
  -P, --password PASS     password for HTTP Basic auth
  -T, --token TOKEN       bearer token instead of a password (env RS_TOKEN)
      --ca-cert FILE      verify drpd's TLS certificate against FILE (env RS_CA_CERT)
      --insecure          do not verify drpd's TLS certificate
  -F, --format FORMAT     json (default) or yaml
  -h, --help              this help; `drpcli <prefix> help` lists a prefix's commands

Without --ca-cert, the certificate of a loopback endpoint (127.0.0.0/8, ::1,
localhost) is accepted as is; any other endpoint must present one the
system trusts.

prefixes:
"""


class _FlagParser(argparse.ArgumentParser):
    """argparse for the global flags, reporting mistakes our way (one line,
    exit 1) instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, USAGE)


def _parser() -> _FlagParser:
    p = _FlagParser(prog="drpcli", add_help=False, allow_abbrev=False)
    p.add_argument("-E", "--endpoint")
    p.add_argument("-U", "--username")
    p.add_argument("-P", "--password")
    p.add_argument("-T", "--token")
    p.add_argument("--ca-cert")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("-F", "--format", choices=FORMATS, default="json")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("words", nargs=argparse.REMAINDER)
    return p


GLOBAL_FLAGS = frozenset(flag for action in _parser()._actions for flag in action.option_strings)


def global_help() -> str:
    width = max(len(g.name) for g in groups())
    lines = [f"  {g.name:<{width}}  {g.summary}" for g in groups()]
    return GLOBAL_HELP + "\n".join(lines) + "\n"


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
    try:
        opts = _parser().parse_args(argv)
        words: list[str] = opts.words
        if opts.help or words[:1] in (["help"], ["-h"], ["--help"]):
            stdout.write(global_help())
            return 0
        if not words:
            raise UsageError("missing <prefix>; see drpcli --help", USAGE)

        def make_client() -> Client:
            return Client(
                opts.endpoint,
                opts.username,
                opts.password,
                opts.token,
                opts.ca_cert,
                opts.insecure,
                env=env,
                transport=transport,
            )

        result = dispatch(words, stdin, stdout, make_client)
        if result is not NO_OUTPUT:
            stdout.write(render(result, opts.format))
            stdout.flush()
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


def dispatch(
    words: list[str],
    stdin: IO[str],
    stdout: IO[str],
    make_client: Callable[[], Client],
) -> object:
    """Find the command for ``<prefix> <command>``, bind its words, run it."""
    group_name = words[0]
    cmds = commands_for(group_name)
    if not cmds:
        if group_name in GLOBAL_FLAGS or group_name.startswith("-"):
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
    )
    try:
        return cmd.run(ctx, match(cmd.pattern, rest, usage))
    except CliError as exc:
        misplaced = [w for w in rest if w in GLOBAL_FLAGS]
        if misplaced:
            raise CliError(
                f"{exc.line()} (global flags such as {misplaced[0]} go before the prefix: "
                f"drpcli {misplaced[0]} ... {group_name} {name} ...)"
            ) from None
        raise
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
