from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """A stored object with its revision (sent as the ``ETag``)."""

    obj: Any
    rev: int

    @property
    def etag(self) -> str:
        return f'"{self.rev}"'
