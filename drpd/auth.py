"""Passwords, signed tokens and the credential check every API request passes.

- Passwords are stored as scrypt hashes (slow on purpose); hashing runs in a
  worker thread so it never stalls the trio loop.
- A verified Basic credential is remembered for a short while (keyed by a
  fast digest of user, password and the stored hash), so a client that sends
  Basic on every request costs one slow hash per ``basic_auth_cache`` seconds.
- Tokens are ``<payload>.<hmac>``, both base64url, signed with a key kept in
  the state directory. A token carries its user and expiry; a plugin
  instance's token carries no expiry but names its instance, and stops
  working once that instance is gone (``token_revoked``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from .models import Unauthorized

DEFAULT_USER = "rocketskates"
DEFAULT_PASSWORD = "r0cketsk8ts"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=_b64(salt), digest=_b64(digest)
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: the principal of a token a provider's ``define``/``unpack`` gets (short-lived)
PROVIDER_PRINCIPAL = "plugin_provider:"


class TokenClaims(msgspec.Struct, kw_only=True):
    u: str  # user or "plugin:<instance>"
    e: int = 0  # expiry, unix seconds; 0 never
    i: str = ""  # plugin instance name for instance tokens
    n: str = ""  # nonce, so two tokens issued in the same second differ


@dataclass(frozen=True)
class Principal:
    name: str
    plugin: str = ""


def load_or_create_key(path: Path) -> bytes:
    """The token signing key; created 0600 on first start."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key


class Authenticator:
    def __init__(
        self,
        key: bytes,
        *,
        password_hash_of: Callable[[str], str | None],
        default_user: bool,
        cache_seconds: float = 60.0,
        token_revoked: Callable[[TokenClaims], bool] = lambda claims: False,
    ) -> None:
        self._key = key
        self._password_hash_of = password_hash_of
        self.default_user = default_user
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, float] = {}
        self._token_revoked = token_revoked
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(TokenClaims)

    # -- tokens ------------------------------------------------------------
    def issue(self, user: str, ttl: int | None, *, instance: str = "") -> str:
        expiry = 0 if ttl is None else int(time.time()) + ttl
        claims = TokenClaims(u=user, e=expiry, i=instance, n=secrets.token_hex(4))
        payload = _b64(self._encoder.encode(claims))
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def check_token(self, token: str) -> Principal:
        payload, _, sig = token.partition(".")
        if not sig or not hmac.compare_digest(sig, self._sign(payload)):
            raise Unauthorized("invalid token")
        try:
            claims = self._decoder.decode(_unb64(payload))
        except (msgspec.DecodeError, ValueError):
            raise Unauthorized("invalid token") from None
        if claims.e and claims.e < time.time():
            raise Unauthorized("token expired")
        if claims.i and self._token_revoked(claims):
            raise Unauthorized("token revoked: its plugin instance is gone")
        provider_token = claims.u.startswith(PROVIDER_PRINCIPAL) and claims.e > 0
        if not claims.i and not provider_token and self._password_hash_of(claims.u) is None and not (
            self.default_user and claims.u == DEFAULT_USER
        ):
            raise Unauthorized(f"token of unknown user {claims.u}")
        return Principal(claims.u, claims.i)

    # -- passwords ---------------------------------------------------------
    def _stored_hash(self, user: str) -> str | None:
        stored = self._password_hash_of(user)
        if stored is None and self.default_user and user == DEFAULT_USER:
            return ""
        return stored

    async def check_basic(self, user: str, password: str) -> Principal:
        stored = self._stored_hash(user)
        if stored is None:
            raise Unauthorized("bad username or password")
        if stored == "":  # the built-in default user on a loopback bind
            if hmac.compare_digest(password, DEFAULT_PASSWORD):
                return Principal(user)
            raise Unauthorized("bad username or password")
        cache_key = hashlib.blake2b(
            f"{user}\0{password}\0{stored}".encode(), key=self._key[:32]
        ).digest()
        now = time.monotonic()
        if self._cache.get(cache_key, 0.0) > now:
            return Principal(user)
        if not await trio.to_thread.run_sync(verify_password, password, stored):
            raise Unauthorized("bad username or password")
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v > now}
        self._cache[cache_key] = now + self._cache_seconds
        return Principal(user)

    async def check_header(self, header: str | None, query_token: str | None = None) -> Principal:
        if header:
            scheme, _, value = header.partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                return self.check_token(value.strip())
            if scheme == "basic":
                try:
                    user, sep, password = base64.b64decode(value.strip()).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise Unauthorized("malformed Basic credentials") from None
                if not sep:
                    raise Unauthorized("malformed Basic credentials")
                return await self.check_basic(user, password)
            raise Unauthorized(f"unsupported authorization scheme {scheme!r}")
        if query_token:
            return self.check_token(query_token)
        raise Unauthorized("authentication required")
