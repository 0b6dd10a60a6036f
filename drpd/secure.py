"""Secure params: values encrypted at rest, shown sealed, given to providers in clear.

A param whose ``params`` object says ``Secure: true`` has its values sealed
wherever they are stored (machines, profiles, plugin instances):
``{"SecureData": "<Fernet token>"}``, with a key kept in the state
directory (0600). The API returns the sealed form unless ``?decode=true``
(as DRP returns the encrypted payload), so an object read and written back
keeps its secrets; providers get clear text in config, action params and
action models; events carry only the sealed form.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from .store import Store

SEALED = "SecureData"


def load_or_create_key(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key


def is_sealed(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str))


class SecureParams:
    def __init__(self, key: bytes, store: Store) -> None:
        self._fernet = Fernet(key)
        self.store = store

    def is_secure(self, name: str) -> bool:
        record = self.store.get("params", name)
        return record is not None and bool(record.obj.Secure)

    def seal(self, value: Any) -> Any:
        if is_sealed(value):
            return value
        import msgspec

        token = self._fernet.encrypt(msgspec.json.encode(value)).decode()
        return {SEALED: token}

    def reveal(self, value: Any) -> Any:
        if not is_sealed(value):
            return value
        import msgspec

        try:
            return msgspec.json.decode(self._fernet.decrypt(value[SEALED].encode()))
        except InvalidToken:
            return value  # sealed with another key: leave it sealed

    def seal_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Seal the values of secure params (others unchanged)."""
        if not any(self.is_secure(name) for name in params):
            return params
        return {k: self.seal(v) if self.is_secure(k) else v for k, v in params.items()}

    def reveal_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if not any(is_sealed(v) for v in params.values()):
            return params
        return {k: self.reveal(v) for k, v in params.items()}
