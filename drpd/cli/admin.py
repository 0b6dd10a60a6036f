"""Commands that are not plain object CRUD: info, tokens, passwords, events,
plugin restarts. Plugin actions, providers' uploads, files and the catalog
join as modules of their own, registered the same way."""

from __future__ import annotations

from typing import Any

from .inputs import load_object, parse_duration
from .registry import NO_OUTPUT, Args, CliError, Context, command, group

group("info", "the server's version, ports and features")
group("events", "the event bus")
group("nodes", "the drpd nodes sharing the store")


@command("get", "", "show the server's /info", ("info",))
def info(ctx: Context, a: Args) -> Any:
    return ctx.client.info()


@command("list", "", "every drpd node sharing the store, with its state and heartbeat",
         ("nodes",))
def list_nodes(ctx: Context, a: Args) -> Any:
    return ctx.client.json("GET", "/nodes")


#: what ``users token`` may narrow, as DRP's drpcli names it
_TOKEN_WORDS = ("ttl", "scope", "action", "specific", "roles")


@command("token", "<name> [<options>...]",
         "issue a bearer token for a user: [ttl <seconds>] [scope <s>] [action <a>] "
         "[specific <k>] [roles <r1,r2>] (a narrower token)", ("users",))
def token(ctx: Context, a: Args) -> Any:
    words: list[str] = a["options"]
    if len(words) % 2:
        raise CliError(f"{words[-1]!r} needs a value: token <name> "
                       + " ".join(f"[{w} <value>]" for w in _TOKEN_WORDS))
    options: dict[str, str] = {}
    for word, value in zip(words[::2], words[1::2], strict=True):
        if word not in _TOKEN_WORDS:
            raise CliError(f"unknown token option {word!r}: use {', '.join(_TOKEN_WORDS)}")
        options[word] = value
    if "ttl" in options:
        seconds = parse_duration(options["ttl"])
        if seconds < 1 or seconds != int(seconds):
            raise CliError(f"bad ttl {options['ttl']!r}: expected a whole number of seconds")
        options["ttl"] = str(int(seconds))
    return ctx.client.token(a["name"], **options)


@command("password", "<name> <password>", "set a user's password", ("users",))
def password(ctx: Context, a: Args) -> Any:
    return ctx.client.set_password(a["name"], a["password"])


@command("restart", "<name>", "restart a plugin instance without editing it", ("plugins",))
def restart(ctx: Context, a: Args) -> Any:
    answer = ctx.client.restart_plugin(a["name"])
    return NO_OUTPUT if answer is None else answer


@command("post", "<event>", "publish an event (JSON, YAML, a file or -)", ("events",))
def post_event(ctx: Context, a: Args) -> Any:
    event = load_object(a["event"], ctx.stdin)
    if not isinstance(event, dict):
        raise CliError("an event is an object with Type, Action, Key, Object")
    answer = ctx.client.post_event(event)
    return NO_OUTPUT if answer is None else answer


@command("upload", "<file>", "install or replace a content bundle (JSON or YAML, or - for stdin)",
         ("contents",))
def upload_content(ctx: Context, a: Args) -> Any:
    import msgspec

    bundle = load_object(a["file"], ctx.stdin)
    if not isinstance(bundle, dict) or not isinstance(bundle.get("meta"), dict):
        raise CliError("a content bundle is an object with meta (Name, Version, ...) and sections")
    name = bundle["meta"].get("Name")
    if not isinstance(name, str) or not name:
        raise CliError("the bundle's meta has no Name")
    body = msgspec.json.encode(bundle)
    if name in ctx.client.content_names():
        return ctx.client.replace_content(name, body)
    return ctx.client.create_content(body)
