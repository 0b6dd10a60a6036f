"""Name rules of API.md, shared by the API, the store and the CLI."""

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


def is_valid_provider_name(name: str) -> bool:
    return (
        len(name) <= MAX_NAME
        and _PROVIDER_NAME.fullmatch(name) is not None
        and name not in (".", "..")
    )


def check_name(name: str, *, model: str, param: bool = False) -> None:
    ok = is_valid_param_name(name) if param else is_valid_name(name)
    if not ok:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise Unprocessable(f"invalid name {shown!r}", model=model, key=shown)
