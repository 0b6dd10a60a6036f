"""What drpd serves each provider on its server socket (PROTOCOL.md §3)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from ..models import Error, Event
from ..store.sqlite import public_view

if TYPE_CHECKING:
    from .manager import PluginManager
    from .supervisor import Supervisor

_encode = msgspec.json.Encoder().encode
_PREFIXES = ("/api-server-plugin/v4/", "/api-plugin-server/v4/")
_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


class LogLine(msgspec.Struct):
    Time: Any = None
    Level: Any = "info"
    Message: Any = ""


def _ok() -> tuple[int, bytes]:
    return 200, _encode(Error(Code=200))


def _error(code: int, message: str) -> tuple[int, bytes]:
    return code, _encode(Error(Type="API_ERROR", Messages=[message], Code=code))


class ServerApi:
    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    async def handle(self, sup: Supervisor, method: str, target: str,
                     body: bytes) -> tuple[int, bytes]:
        path = target.split("?", 1)[0]
        for prefix in _PREFIXES:
            if path.startswith(prefix):
                path = path[len(prefix):]
                break
        else:
            return _error(404, f"no such path {target}")
        if path == "publish" and method == "POST":
            try:
                event = msgspec.json.decode(body, type=Event)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return _error(400, f"bad event: {exc}")
            event.Principal = f"plugin:{sup.name}"
            event.Seq = 0
            await self.manager.store.emit(event)
            return _ok()
        if path == "log" and method == "POST":
            try:
                line = msgspec.json.decode(body, type=LogLine)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return _error(400, f"bad log line: {exc}")
            level = _LEVELS.get(str(line.Level).lower(), logging.INFO)
            sup.log_lines.append(f"{line.Time or ''} log: {line.Message}")
            logging.getLogger(f"drpd.plugin.{sup.name}").log(level, "%s", line.Message)
            return _ok()
        if path == "leaving" and method == "POST":
            await self.manager.set_left(sup.name, True)
            sup.leave()
            return _ok()
        if path.startswith("objects/") and method == "GET":
            prefix = path[len("objects/"):].strip("/")
            if prefix not in self.manager.store.kinds:
                return _error(404, f"no such object type {prefix!r}")
            items = [public_view(prefix, r.obj) for r in self.manager.store.list(prefix)]
            return 200, _encode(items)
        return _error(404, f"no such path {target}")
