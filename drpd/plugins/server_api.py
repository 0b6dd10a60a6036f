"""What drpd serves each provider on its server socket (docs/protocol.md §3).

One :class:`ServerApi` serves every instance; each supervisor's listener
is bound to its instance name. What it needs besides the store comes by
constructor as an :class:`InstanceHost` (the controller): where an
instance's log lines go, and what ``leaving`` does.
"""

from __future__ import annotations

import logging
from typing import Protocol

import msgspec

from .. import wire
from ..config import Settings
from ..models import BadRequest, Event, decode_as
from ..store import Store, public_view

_encode = msgspec.json.Encoder().encode
_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


class InstanceHost(Protocol):
    def log_line(self, name: str, source: str, line: str, level: int) -> None:
        """Keep and log a line an instance sent (rate-limited per instance)."""
        ...

    async def leave(self, name: str) -> None:
        """The instance's provider said ``leaving``: stop it and keep it stopped."""
        ...


class ServerApi:
    def __init__(self, settings: Settings, store: Store, host: InstanceHost) -> None:
        self.settings = settings
        self.store = store
        self.host = host

    async def handle(self, name: str, method: str, target: str,
                     body: bytes) -> tuple[int, bytes]:
        path = wire.server_path(target)
        if path is None:
            return wire.error(404, f"no such path {target}")
        if path == wire.SERVER_PUBLISH and method == "POST":
            limit = self.settings.max_event_size
            if len(body) > limit:
                return wire.error(413, f"an event of {len(body)} bytes is over max_event_size "
                                       f"({limit})")
            try:
                event = decode_as(Event, body, what="events",
                                  max_depth=self.settings.max_json_depth)
            except BadRequest as exc:
                return wire.error(400, f"bad event: {exc}")
            event.Principal = f"plugin:{name}"
            event.Seq = 0
            await self.store.emit(event)
            return wire.ok()
        if path == wire.SERVER_LOG and method == "POST":
            try:
                line = msgspec.json.decode(body, type=wire.LogLine)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                return wire.error(400, f"bad log line: {exc!r}"[:300])
            # rate-limited per instance (plugins/loglimit.py): counted, still accepted
            level = _LEVELS.get(str(line.Level).lower(), logging.INFO)
            self.host.log_line(name, "log", str(line.Message), level)
            return wire.ok()
        if path == wire.SERVER_LEAVING and method == "POST":
            await self.host.leave(name)
            return wire.ok()
        if path.startswith(wire.SERVER_OBJECTS) and method == "GET":
            prefix = path[len(wire.SERVER_OBJECTS):].strip("/")
            if prefix not in self.store.kinds:
                return wire.error(404, f"no such object type {prefix!r}")
            items = [public_view(prefix, r.obj) for r in self.store.list(prefix)]
            return 200, _encode(items)
        return wire.error(404, f"no such path {target}")
