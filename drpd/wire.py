"""The provider wire protocol (docs/protocol.md), spelled once for both sides.

drpd (``drpd.plugins``) and the provider SDK (``drpd.sdk``) import the
paths, verbs and envelopes from here, so the two cannot drift apart. Light
on purpose: msgspec and drpd's models only, because every provider process
imports it at start.

- ``<binary> serve|listen <plugin.sock> <server.sock>`` runs a provider;
  it prints :data:`READY` on stdout once it answers on its plugin socket.
- drpd calls the provider at :data:`PLUGIN_PREFIX` + ``config`` /
  ``action`` / ``publish`` / ``stop`` (all POST).
- The provider calls drpd at :data:`SERVER_PREFIX` + ``publish`` / ``log``
  / ``leaving`` (POST) and ``objects/<prefix>`` (GET); DRP's older
  :data:`SERVER_PREFIX_OLD` is accepted too.
- Every answer that is not a result is a DRP ``Error``; success without a
  result is ``Error(Code=200)`` (:func:`ok`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from .models.errors import Error

#: the long-running verbs: drpd tries ``serve`` and falls back to DRP's ``listen``
SERVE, LISTEN = "serve", "listen"
#: the line a provider prints on stdout once it answers on its plugin socket
READY = "READY!"

#: what drpd calls on the provider's plugin socket (POST)
PLUGIN_PREFIX = "/api-plugin/v4/"
CONFIG_PATH = PLUGIN_PREFIX + "config"
ACTION_PATH = PLUGIN_PREFIX + "action"
PUBLISH_PATH = PLUGIN_PREFIX + "publish"
STOP_PATH = PLUGIN_PREFIX + "stop"

#: what the provider calls on drpd's server socket
SERVER_PREFIX = "/api-server-plugin/v4/"
#: the spelling of older DRP releases, accepted by drpd
SERVER_PREFIX_OLD = "/api-plugin-server/v4/"
SERVER_PREFIXES = (SERVER_PREFIX, SERVER_PREFIX_OLD)
SERVER_PUBLISH = "publish"
SERVER_LOG = "log"
SERVER_LEAVING = "leaving"
SERVER_OBJECTS = "objects/"

_encode = msgspec.json.Encoder().encode
_OK = _encode(Error(Code=200))


class LogLine(msgspec.Struct):
    """A provider's ``POST log`` body (Go's logger writes more fields; ignored)."""

    Time: Any = None
    Level: Any = "info"
    Message: Any = ""


def ok() -> tuple[int, bytes]:
    """Success without a result."""
    return 200, _OK


def error(code: int, message: str, *, type_: str = "API_ERROR", model: str = "",
          key: str = "") -> tuple[int, bytes]:
    """A DRP ``Error`` answer with one message."""
    return code, _encode(Error(Model=model, Key=key, Type=type_, Messages=[message], Code=code))


def plugin_error(code: int, message: str, *, model: str = "", key: str = "") -> tuple[int, bytes]:
    """An error a provider answers (``Type`` ``PLUGIN_ERROR``)."""
    return error(code, message, type_="PLUGIN_ERROR", model=model, key=key)


def server_path(target: str) -> str | None:
    """The part of a server-socket target after its prefix, or None if it has none."""
    path = target.split("?", 1)[0]
    for prefix in SERVER_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix):]
    return None


def error_messages(body: bytes, limit: int = 300) -> list[str]:
    """The ``Messages`` of an ``Error`` body, else the body's start as one message."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return [body[:limit].decode("utf-8", "replace")] if body else []
    if isinstance(decoded, dict) and isinstance(decoded.get("Messages"), list):
        return [str(m) for m in decoded["Messages"]]
    return [str(decoded)[:limit]]
