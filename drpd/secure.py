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

import base64
import os
from pathlib import Path
from typing import Any

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from .models import NotFound, Unprocessable
from .models.depth import DEFAULT_MAX_DEPTH, too_deep
from .store import Store

SEALED = "SecureData"
#: DRP's SecureData fields, as drpcli sends a client-sealed value
BOX_FIELDS = frozenset({"Key", "Nonce", "Payload"})
_BOX_INFO = b"drpd secure params: the NaCl box key clients seal to"


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


def is_box(value: Any) -> bool:
    """A DRP ``SecureData`` (base64 Key 32 bytes, Nonce 24, Payload >= 16)."""
    if not (isinstance(value, dict) and value.keys() == BOX_FIELDS):
        return False
    try:
        key, nonce, payload = (base64.b64decode(value[f], validate=True)
                               for f in ("Key", "Nonce", "Payload"))
    except (TypeError, ValueError):
        return False
    return len(key) == 32 and len(nonce) == 24 and len(payload) >= 16


_TOO_DEEP = f"the SecureData holds JSON nested more than {DEFAULT_MAX_DEPTH} levels deep"


class BoxError(Unprocessable):
    """A client-sealed value that does not open with drpd's key (422)."""


class SecureParams:
    def __init__(self, key: bytes, store: Store) -> None:
        self._fernet = Fernet(key)
        self.store = store
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        self._box_seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                              info=_BOX_INFO).derive(key)
        self._box: Any = None

    @property
    def _box_key(self) -> Any:
        """PyNaCl is loaded on first use: only client-sealed values need it."""
        if self._box is None:
            from nacl.public import PrivateKey

            self._box = PrivateKey(self._box_seed)
        return self._box

    @property
    def public_key(self) -> bytes:
        """The 32-byte Curve25519 key clients seal Secure values to."""
        return bytes(self._box_key.public_key)

    def open_box(self, value: dict[str, Any]) -> Any:
        """The clear value of a client-sealed ``SecureData``; BoxError when it
        was not sealed to drpd's key or was tampered with."""
        import msgspec
        from nacl.exceptions import CryptoError
        from nacl.public import Box, PublicKey

        raw = {f: base64.b64decode(value[f]) for f in ("Key", "Nonce", "Payload")}
        try:
            clear = Box(self._box_key, PublicKey(raw["Key"])).decrypt(raw["Payload"], raw["Nonce"])
        except CryptoError:
            raise BoxError("the SecureData does not open with this drpd's key "
                           "(seal it to GET .../pubkey)") from None
        try:
            opened = msgspec.json.decode(clear)
        except msgspec.DecodeError:
            raise BoxError("the SecureData does not hold JSON") from None
        except RecursionError:
            raise BoxError(_TOO_DEEP) from None
        if too_deep(opened, DEFAULT_MAX_DEPTH):
            raise BoxError(_TOO_DEEP)
        return opened

    def is_secure(self, name: str) -> bool:
        record = self.store.get("params", name)
        return record is not None and bool(record.obj.Secure)

    def seal(self, value: Any) -> Any:
        if is_sealed(value):
            return value
        if is_box(value):
            value = self.open_box(value)
        token = self._fernet.encrypt(msgspec.json.encode(value)).decode()
        return {SEALED: token}

    def reveal(self, value: Any) -> Any:
        if is_box(value):
            try:
                return self.open_box(value)
            except BoxError:
                return value  # not for us: shown as it is, refused when stored
        if not is_sealed(value):
            return value
        try:
            return msgspec.json.decode(self._fernet.decrypt(value[SEALED].encode()))
        except InvalidToken:
            return value  # sealed with another key: leave it sealed

    def seal_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Seal the values of secure params (others unchanged)."""
        if not any(self.is_secure(name) for name in params):
            return params
        return {k: self.seal(v) if self.is_secure(k) else v for k, v in params.items()}

    async def seal_stored(self, name: str, *, principal: str) -> int:
        """Seal the clear values of param ``name`` stored on every object.

        Called when a param becomes Secure after values were stored: from then
        on they are sealed like every new one. Each object is rewritten on its
        own (the store's per-object atomic modify), so a concurrent write to
        it is never lost. Returns how many objects were sealed.
        """
        sealed = 0
        for kind in list(self.store.kinds.values()):
            if not kind.has_params:
                continue
            for record in self.store.list(kind.prefix):
                if name not in record.obj.Params or is_sealed(record.obj.Params[name]):
                    continue

                def seal(old: Any) -> Any:
                    if name not in old.Params or is_sealed(old.Params[name]):
                        return old
                    return msgspec.structs.replace(
                        old, Params={**old.Params, name: self.seal(old.Params[name])})

                try:
                    await self.store.modify(kind.prefix, kind.key_of(record.obj), seal,
                                            principal=principal)
                except (NotFound, Unprocessable):
                    continue  # deleted meanwhile, or a client-sealed value not for us
                sealed += 1
        return sealed

    def reveal_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if not any(is_sealed(v) for v in params.values()):
            return params
        return {k: self.reveal(v) for k, v in params.items()}
