from __future__ import annotations

from dataclasses import dataclass, field
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
    """The object as builtins, without what is never shown (``HIDDEN_FIELDS``).

    Part of the store's interface: events, the API and providers all show
    an object this way, whatever backend stored it.
    """
    data = msgspec.to_builtins(obj)
    if prefix in HIDDEN_FIELDS and isinstance(data, dict):
        for name in HIDDEN_FIELDS[prefix]:
            data.pop(name, None)
    return data


#: fields stored but never shown, patched, filtered or quoted in an error
HIDDEN_FIELDS = {
    "users": ("Password", "PasswordHash", "Secret"),
    "plugins": ("Secret",),
}


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What one lease round saw (drpd.leases): who holds which instance now."""

    #: instance -> the node holding a valid lease on it
    owners: dict[str, str]
    #: instance -> its holder's last status report (other nodes' instances)
    statuses: dict[str, bytes]
    #: live node id -> its API endpoint and its name
    endpoints: dict[str, str]
    names: dict[str, str]
    #: live node id -> its API's TLS certificate (PEM; empty without TLS)
    certs: dict[str, str] = field(default_factory=dict)
