"""The store: durable objects of every kind, and the change feed.

``Store`` is the interface the API and the plugin manager use; ``SQLiteStore``
is the embedded backend. A networked backend implements the same interface.

Contract:
- Reads (``get``, ``list``) answer from memory and never wait.
- Writes are serialised; each commits durably *before* it returns, and its
  ``Event`` is handed to the change hook in commit order, with a ``Seq`` that
  increases by one per event and continues across restarts.
- A write is all or nothing: a failing ``mutate`` callback, a unique clash or
  a revision mismatch raises a ``DrpError`` and changes nothing.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..models import Event, Kind
from .records import Record, public_view

#: called with each committed change, in commit order; must not block
ChangeHook = Callable[[Event], None]
#: given the current object (or None), returns the object to store
Mutator = Callable[[Any | None], Any]


class Store(Protocol):
    kinds: dict[str, Kind]

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...

    def get(self, prefix: str, key: str) -> Record | None: ...
    def list(self, prefix: str) -> list[Record]: ...
    def find(self, prefix: str, field: str, value: str) -> Record | None: ...
    def stored_prefixes(self) -> builtins.list[str]: ...
    def add_kind(self, kind: Kind) -> None: ...
    @property
    def last_seq(self) -> int: ...

    async def create(self, prefix: str, obj: Any, *, principal: str) -> Record: ...
    async def modify(
        self,
        prefix: str,
        key: str,
        mutate: Mutator,
        *,
        principal: str,
        if_rev: int | None = None,
        action: str = "update",
    ) -> Record: ...
    async def delete(
        self, prefix: str, key: str, *, principal: str, if_rev: int | None = None
    ) -> Record: ...
    async def transact(
        self, changes: Iterable[tuple[str, str, Any | None]], *, principal: str
    ) -> builtins.list[Record]: ...
    async def emit(self, event: Event) -> Event: ...
    async def backup(self, dest: str | os.PathLike[str]) -> None: ...


from ..config import POSTGRES_SCHEMES  # noqa: E402
from .sqlite import SQLiteStore  # noqa: E402


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """A store URL fit for logs and errors: its password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def make_store(url: str, sqlite_path: str | os.PathLike[str], *,
               on_change: ChangeHook | None = None) -> Store:
    """The store ``store_url`` names: PostgreSQL, else the embedded SQLite file."""
    if is_postgres(url):
        from .postgres import PostgresStore

        return PostgresStore(url, on_change=on_change)
    return SQLiteStore(sqlite_path, on_change=on_change)


__all__ = ["ChangeHook", "Mutator", "Record", "SQLiteStore", "Store", "is_postgres",
           "make_store", "public_view", "redact"]
