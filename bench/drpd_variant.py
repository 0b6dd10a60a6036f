"""drpd with its store's commit changed, for ``bench/create_floor.py`` only.

    python bench/drpd_variant.py VARIANT serve --state-dir ... (drpd's own arguments)

VARIANT is one of:

- ``shipped``: drpd as it is (the same wrapper, so start-up is alike);
- ``inline``: the store's SQLite calls run on the event loop instead of
  its thread, fsync included (never allowed in drpd: a commit would stall
  every other request; measured to show what the hand-off costs);
- ``no-commit``: the commit does nothing, the hand-off to the store's
  thread is kept (not durable: measured to show what the commit costs);
- ``neither``: no commit and no hand-off (drpd's request handling alone).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drpd.store import sqlite  # noqa: E402

VARIANTS = ("shipped", "inline", "no-commit", "neither")


async def _inline(self: sqlite.SQLiteStore, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _no_commit(self: sqlite.SQLiteStore, rows: list[Any], seq: int) -> None:
    return None


def patch(variant: str) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    if variant in ("inline", "neither"):
        sqlite.SQLiteStore._run = _inline  # type: ignore[method-assign,assignment]
    if variant in ("no-commit", "neither"):
        sqlite.SQLiteStore._commit_sync = _no_commit  # type: ignore[method-assign]


if __name__ == "__main__":
    patch(sys.argv[1])
    from drpd.daemon import main

    sys.exit(main(sys.argv[2:]))
