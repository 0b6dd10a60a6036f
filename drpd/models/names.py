"""Name rules of docs/api.md, shared by the API, the store and the CLI."""

from __future__ import annotations

import re

from .errors import Unprocessable

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NAME = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None and name not in (".", "..")


def is_valid_param_name(name: str) -> bool:
    if not name or len(name) > MAX_NAME:
        return False
    segments = name.split("/")
    return all(is_valid_name(s) for s in segments)


#: first path segments of drpd's fixed routes under ``/api/v3/`` that are
#: not object prefixes: a provider's StoreObjects may not take one, or the
#: generic object routes would answer beside (or instead of) the fixed one.
#: tests/test_names.py checks that every fixed route of the app is here or
#: in KINDS.
FIXED_ROUTES = frozenset({
    "healthz", "info", "events", "files", "ws", "system", "metrics", "openapi.json", "indexes", "catalog",
    "nodes",
    "api-plugin", "api-server-plugin", "api-plugin-server",
})


def is_fixed_route(prefix: str) -> bool:
    return prefix.lower() in FIXED_ROUTES


def is_valid_provider_name(name: str) -> bool:
    """A provider's name is its file name in the plugin directory and a
    record's key: the name rules of every other object (no leading ``.``,
    which is drpd's own temporaries, nor ``-``)."""
    return is_valid_name(name) and _PROVIDER_NAME.fullmatch(name) is not None


def check_name(name: str, *, model: str, param: bool = False) -> None:
    ok = is_valid_param_name(name) if param else is_valid_name(name)
    if not ok:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise Unprocessable(f"invalid name {shown!r}", model=model, key=shown)
