"""The provider declaration and its command line (define, unpack, serve, listen).

Importing this module must stay cheap: ``define`` runs on every install
and should not pay for trio, h11 or httpx, so the serving machinery is
imported only when the verb is ``serve`` or ``listen``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import msgspec

from drpd.models.errors import Error
from drpd.models.names import is_valid_provider_name
from drpd.models.objects import Action, Event
from drpd.patterns import Pattern, PatternError

if TYPE_CHECKING:
    from ._context import Context

__all__ = [
    "ActionError",
    "ActionHandler",
    "ConfigHandler",
    "Provider",
    "PublishHandler",
    "StopHandler",
]

ConfigHandler = Callable[["Context", dict[str, Any]], Awaitable[None]]
ActionHandler = Callable[["Context", Action], Awaitable[Any]]
PublishHandler = Callable[["Context", Event], Awaitable[None]]
StopHandler = Callable[["Context"], Awaitable[None]]
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])

#: the line that tells drpd the plugin socket accepts connections (drpd.wire.READY)
READY = "READY!"
_USAGE = """\
usage: {prog} define
       {prog} unpack <dir>
       {prog} serve <plugin-socket> <server-socket>
       {prog} listen <plugin-socket> <server-socket>
"""


class ActionError(Exception):
    """Raise from a handler to answer drpd with a DRP ``Error`` of this ``code``.

    ``code`` becomes both the HTTP status and the Error's ``Code`` (drpd
    passes it on to the API caller), so use HTTP meanings: 400 bad params,
    404 no such thing, 409 conflict, 503 the device is unreachable.
    """

    def __init__(
        self, code: int, *messages: str, model: str = "", key: str = "", type: str = ""
    ) -> None:
        if not 400 <= code <= 599:
            raise ValueError(f"ActionError code must be 400-599, not {code}")
        super().__init__("; ".join(messages) or f"error {code}")
        self.code = code
        self.messages = list(messages) or [f"error {code}"]
        self.model = model
        self.key = key
        self.type = type

    def to_error(self, *, model: str = "", key: str = "") -> Error:
        return Error(
            Model=self.model or model,
            Key=self.key or key,
            Type=self.type or "PLUGIN_ERROR",
            Messages=self.messages,
            Code=self.code,
        )


@dataclass(frozen=True)
class ActionDef:
    """One declared action and the coroutine function that runs it."""

    command: str
    model: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    handler: ActionHandler

    def available(self) -> dict[str, Any]:
        return {
            "Command": self.command,
            "Model": self.model,
            "RequiredParams": list(self.required),
            "OptionalParams": list(self.optional),
        }


@dataclass(frozen=True)
class _File:
    name: str
    data: bytes | None
    source: Path | None
    mode: int


def _patterns(values: Iterable[str]) -> tuple[Pattern, ...]:
    if isinstance(values, str):
        raise TypeError("events must be a list of patterns, not a string")
    try:
        return tuple(Pattern(v) for v in values)
    except PatternError as exc:
        raise ValueError(str(exc)) from None


def _names(values: Iterable[object], what: str) -> tuple[str, ...]:
    """Provider authors' input, checked at run time whatever its annotation said."""
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of param names, not a string")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value:
            raise TypeError(f"{what} holds {value!r}, not a param name")
        out.append(value)
    return tuple(out)


class Provider:
    """A plugin provider: its definition, its handlers and its ``main()``.

    Declare it at module level, register handlers with the decorators, and
    call :meth:`main` under ``if __name__ == "__main__"``. Every handler is
    a coroutine function whose first argument is the :class:`Context`.
    Mistakes in the declaration raise at import, so ``define`` fails and
    drpd refuses the provider with the traceback as its reason.

    ``has_publish`` defaults to "a publish handler is registered and no
    events are selected". Selected events (``events=[...]`` for the publish
    handler, or ``@provider.events(...)`` handlers) arrive over drpd's
    websocket instead, as DRP's ``SelectEvents`` does: only the matching
    ones, resumed without loss when the connection drops.
    """

    def __init__(
        self,
        name: str,
        version: str = "0.0.0",
        *,
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
        store_objects: dict[str, Any] | None = None,
        has_publish: bool | None = None,
        auto_start: bool = False,
        ignore_events: bool = False,
        content: str = "",
        documentation: str = "",
        events: Sequence[str] = (),
        extra_claims: Sequence[Mapping[str, str]] = (),
    ) -> None:
        if not is_valid_provider_name(name):
            raise ValueError(f"invalid provider name {name!r}: use [A-Za-z0-9_.-]+")
        self.name = name
        self.version = version
        self.required = _names(required, "required")
        self.optional = _names(optional, "optional")
        self.store_objects = dict(store_objects or {})
        #: claims beyond the least-privilege token, as ``{"scope", "action",
        #: "specific"}``: shown to the operator, who grants them per instance
        self.extra_claims = [dict(c) for c in extra_claims]
        self._has_publish = has_publish
        self.auto_start = auto_start
        self.ignore_events = ignore_events
        self.content = content
        self.documentation = documentation
        self.actions: dict[str, ActionDef] = {}
        self.config_handler: ConfigHandler | None = None
        self.publish_handler: PublishHandler | None = None
        self.stop_handler: StopHandler | None = None
        self._files: list[_File] = []
        #: patterns whose events go to the publish handler (``events=``)
        self.publish_patterns = _patterns(events)
        #: ``@provider.events(...)`` handlers and their patterns
        self.event_handlers: list[tuple[tuple[Pattern, ...], PublishHandler]] = []

    # ------------------------------------------------------------ declaration

    @property
    def has_publish(self) -> bool:
        if self._has_publish is None:
            return self.publish_handler is not None and not self.selects_events
        return self._has_publish

    @property
    def selects_events(self) -> bool:
        """True when events are to come over the websocket (``serve`` connects it)."""
        return bool(self.publish_patterns or self.event_handlers)

    def config(self, fn: _F) -> _F:
        """Register ``async def fn(ctx, params: dict)``; raise ActionError to refuse."""
        self.config_handler = fn
        return fn

    def action(
        self,
        command: str,
        *,
        model: str = "system",
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
    ) -> Callable[[_F], _F]:
        """Register ``async def fn(ctx, action: Action) -> JSON-able`` as ``command``.

        ``model`` is the object prefix the action applies to (``machines``,
        ``plugins``, ``system`` or one of ``store_objects``); drpd resolves
        ``required`` and ``optional`` params into ``action.Params``.
        """
        if not command or not isinstance(command, str):
            raise ValueError("an action needs a command name")
        if command in self.actions:
            raise ValueError(f"action {command!r} is declared twice")
        req, opt = _names(required, "required"), _names(optional, "optional")

        def register(fn: _F) -> _F:
            self.actions[command] = ActionDef(command, model or "system", req, opt, fn)
            return fn

        return register

    def publish(self, fn: _F) -> _F:
        """Register ``async def fn(ctx, event: Event)``, called for every event in order."""
        self.publish_handler = fn
        return fn

    def events(self, *patterns: str) -> Callable[[_F], _F]:
        """Register ``async def fn(ctx, event: Event)`` for events matching any of
        ``patterns`` (``<type>.<action>.<key>``, ``*`` and comma lists as on
        drpd's websocket), called in order, each event once per handler."""
        selected = _patterns(patterns)
        if not selected:
            raise ValueError("@provider.events needs at least one pattern, e.g. 'machines.*.*'")

        def register(fn: _F) -> _F:
            self.event_handlers.append((selected, fn))
            return fn

        return register

    def stop(self, fn: _F) -> _F:
        """Register ``async def fn(ctx)``, run when drpd stops the instance (or on SIGTERM)."""
        self.stop_handler = fn
        return fn

    def add_file(
        self,
        name: str,
        data: bytes | str | None = None,
        *,
        source: str | os.PathLike[str] | None = None,
        mode: int = 0o644,
    ) -> None:
        """Declare a file ``unpack <dir>`` writes as ``<dir>/<name>``.

        Give its bytes (``data``) or a file to copy (``source``, read only
        when unpacking). ``name`` is relative and may contain ``/``.
        """
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise ValueError(f"file name {name!r} must be relative, without '..'")
        if (data is None) == (source is None):
            raise ValueError("give exactly one of data and source")
        raw = data.encode() if isinstance(data, str) else data
        self._files.append(_File(name, raw, Path(source) if source else None, mode))

    def definition(self) -> dict[str, Any]:
        """The PluginProvider JSON that ``define`` prints (docs/protocol.md §1)."""
        return {
            "Name": self.name,
            "Version": self.version,
            "PluginVersion": 4,
            "AutoStart": self.auto_start,
            "HasPublish": self.has_publish,
            "IgnoreEvents": self.ignore_events,
            "AvailableActions": [a.available() for a in self.actions.values()],
            "RequiredParams": list(self.required),
            "OptionalParams": list(self.optional),
            "StoreObjects": self.store_objects,
            **({"ExtraClaims": self.extra_claims} if self.extra_claims else {}),
            "Documentation": self.documentation,
            "Content": self.content,
        }

    # ------------------------------------------------------------ command line

    def main(self, argv: Sequence[str] | None = None) -> NoReturn:
        """Run the verb in ``argv`` (default ``sys.argv[1:]``) and exit with its status."""
        args = list(sys.argv[1:] if argv is None else argv)
        sys.exit(self.run(args))

    def run(self, args: Sequence[str]) -> int:
        """Run one verb and return the exit status (``main`` without the exit)."""
        prog = os.path.basename(sys.argv[0]) or self.name
        verb = args[0] if args else ""
        if verb == "define" and len(args) == 1:
            sys.stdout.buffer.write(msgspec.json.encode(self.definition()) + b"\n")
            sys.stdout.flush()
            return 0
        if verb == "unpack" and len(args) == 2:
            return self._unpack(Path(args[1]))
        if verb in ("serve", "listen") and len(args) == 3:
            bound = None
            if not self.selects_events:
                # ready in the protocol's sense once the plugin socket accepts
                # connections: bind it with the standard library and say so
                # before trio and h11 load (most of a provider's start-up);
                # drpd's first request waits in the backlog meanwhile. A
                # provider that selects events subscribes first (_serve).
                from drpd.unixsock import bind_unix, check_connect

                try:
                    check_connect(args[2])  # drpd's server socket answers
                except (OSError, ValueError) as exc:
                    return self._cannot_serve(args[2], exc)
                try:
                    bound = bind_unix(args[1])
                except (OSError, ValueError) as exc:
                    return self._cannot_serve(args[1], exc)
                sys.stdout.write(READY + "\n")
                sys.stdout.flush()
            from ._serve import run_serve  # trio, h11: only for the long-running verb

            return run_serve(self, args[1], args[2], bound=bound)
        sys.stderr.write(_USAGE.format(prog=prog))
        return 2

    def _cannot_serve(self, path: str, exc: OSError | ValueError) -> int:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        sys.stderr.write(f"{self.name}: cannot serve: {path}: {reason}\n")
        return 1

    def _unpack(self, dest: Path) -> int:
        try:
            for f in self._files:
                target = dest / f.name
                target.parent.mkdir(parents=True, exist_ok=True)
                data = f.data if f.data is not None else f.source.read_bytes()  # type: ignore[union-attr]
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_bytes(data)
                tmp.chmod(f.mode)
                tmp.replace(target)
        except OSError as exc:
            sys.stderr.write(f"{self.name}: unpack into {dest} failed: {exc}\n")
            return 1
        return 0
