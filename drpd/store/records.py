from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class Record:
    """A stored object with its revision (sent as the ``ETag``)."""

    obj: Any
    rev: int

    @property
    def etag(self) -> str:
        return f'"{self.rev}"'


def public_view(prefix: str, obj: Any) -> Any:
    """The object as builtins, without what is never shown (password hashes).

    Part of the store's interface: events, the API and providers all show
    an object this way, whatever backend stored it.
    """
    data = msgspec.to_builtins(obj)
    if prefix == "users" and isinstance(data, dict):
        data.pop("PasswordHash", None)
        data.pop("Password", None)
    return data
