"""What drpd serves each provider on its server socket (docs/protocol.md §3)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from .. import wire
from ..models import BadRequest, Event, decode_as
from ..store import public_view

if TYPE_CHECKING:
    from .manager import PluginManager
    from .supervisor import Supervisor

_encode = msgspec.json.Encoder().encode
_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


_ok = wire.ok
_error = wire.error


class ServerApi:
    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    async def handle(self, sup: Supervisor, method: str, target: str,
                     body: bytes) -> tuple[int, bytes]:
        path = wire.server_path(target)
        if path is None:
            return _error(404, f"no such path {target}")
        if path == wire.SERVER_PUBLISH and method == "POST":
            limit = self.manager.settings.max_event_size
            if len(body) > limit:
                return _error(413, f"an event of {len(body)} bytes is over max_event_size "
                                   f"({limit})")
            try:
                event = decode_as(Event, body, what="events",
                                  max_depth=self.manager.settings.max_json_depth)
            except BadRequest as exc:
                return _error(400, f"bad event: {exc}")
            event.Principal = f"plugin:{sup.name}"
            event.Seq = 0
            await self.manager.store.emit(event)
            return _ok()
        if path == wire.SERVER_LOG and method == "POST":
            try:
                line = msgspec.json.decode(body, type=wire.LogLine)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                return _error(400, f"bad log line: {exc!r}"[:300])
            if not sup.log_allowed():  # counted; accepted, so the provider goes on
                return _ok()
            level = _LEVELS.get(str(line.Level).lower(), logging.INFO)
            sup.log_lines.append(f"{line.Time or ''} log: {line.Message}")
            logging.getLogger(f"drpd.plugin.{sup.name}").log(level, "%s", line.Message)
            return _ok()
        if path == wire.SERVER_LEAVING and method == "POST":
            await self.manager.set_left(sup.name, True)
            sup.leave()
            return _ok()
        if path.startswith(wire.SERVER_OBJECTS) and method == "GET":
            prefix = path[len(wire.SERVER_OBJECTS):].strip("/")
            if prefix not in self.manager.store.kinds:
                return _error(404, f"no such object type {prefix!r}")
            items = [public_view(prefix, r.obj) for r in self.manager.store.list(prefix)]
            return 200, _encode(items)
        return _error(404, f"no such path {target}")
