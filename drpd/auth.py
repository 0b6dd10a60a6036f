"""Passwords, signed tokens and the credential check every API request passes.

Who may do what (README, "Security"):

- Passwords are stored as scrypt hashes (slow on purpose). Hashing runs in a
  worker thread, at most ``HASH_CONCURRENCY`` at a time and with at most
  ``HASH_QUEUE`` waiting (more are answered 429): a flood of guesses costs
  a bounded amount of memory and CPU, and never stalls the trio loop.
- An unknown user, a user without a password and the built-in default user
  cost one hash like a real one (against a dummy hash), so the time of an
  answer does not tell who exists.
- Only a real password logs a user in. The built-in ``rocketskates`` with
  ``r0cketsk8ts`` is the one exception, only while drpd binds a loopback
  address and no stored user of that name exists.
- Repeated failures back off, per user and per client address (IPv6 by its
  /64): after ``failures_allowed`` failures each further one doubles a wait
  (up to ``backoff_max`` seconds) during which Basic logins for that user or
  from that address answer 429 with ``Retry-After``. A credential verified
  recently (the cache below) still works, so an attacker cannot lock a
  working client out. The failure tables are bounded in entries.
- A verified Basic credential is remembered for a short while (keyed by a
  keyed digest of user, password and the stored hash), so a client that
  sends Basic on every request costs one slow hash per ``basic_auth_cache``
  seconds.
- Tokens are ``<payload>.<hmac>``, both base64url, signed with a key kept in
  the state directory. The HMAC also covers a per-user secret and the
  password hash, so a password change ends every token of that user; an
  instance token covers its instance's random ``Secret``, so a destroyed
  instance's token never works for a new instance of the same name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
import trio

from .models import TooManyRequests, Unauthorized
from .models.objects import Claim

_T = TypeVar("_T")

DEFAULT_USER = "rocketskates"
DEFAULT_PASSWORD = "r0cketsk8ts"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: slow hashes running at once (each scrypt takes 16 MB for ~40 ms)
HASH_CONCURRENCY = max(1, min(4, (os.cpu_count() or 2) // 2))
#: logins waiting for a hash at most; more are answered 429 at once
HASH_QUEUE = 32
#: longest token accepted, bytes (a real one is ~150)
MAX_TOKEN = 4096
#: entries in each failure table (users, client addresses)
MAX_FAILURE_ENTRIES = 10_000


def new_secret() -> str:
    """A per-user or per-instance token secret: changing it ends its tokens."""
    return secrets.token_hex(16)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=_b64(salt), digest=_b64(digest)
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt" or (int(n), int(r), int(p)) != (_SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]):
            # only drpd's own parameters: a stored hash asking for 1 GB is refused
            return False
        got = hashlib.scrypt(
            password.encode("utf-8", "surrogatepass"), salt=_unb64(salt), dklen=32,
            n=int(n), r=int(r), p=int(p),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


#: scrypt of the default password: checking it costs what a real user costs
_DEFAULT_HASH = ("scrypt$16384$8$1$ZHJwZC1kZWZhdWx0LXNhbHQ$"
                 "XD9iM8tebzspHI9468q5XaHGSL1THbjX615Fr6jNDN0")
#: a hash no password matches, checked for unknown users and users without one
_DUMMY_HASH = "scrypt$16384$8$1$ZHJwZC1kdW1teS1zYWx0$" + "A" * 43


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


class TokenClaims(msgspec.Struct, kw_only=True, omit_defaults=True):
    u: str  # user or "plugin:<instance>"
    e: int = 0  # expiry, unix seconds; 0 never
    i: str = ""  # plugin instance name for instance tokens
    n: str = ""  # nonce, so two tokens issued in the same second differ
    #: a narrowed token's claims as (scope, action, specific); None: all its user holds
    c: list[tuple[str, str, str]] | None = None


@dataclass(frozen=True)
class Principal:
    """Who a request acts as; what it may do is drpd.access's answer."""

    name: str
    #: the plugin instance a provider's token names
    plugin: str = ""
    #: how it was shown: "basic" or "token"
    via: str = ""
    #: a narrowed token's own claims (None: everything its user holds)
    claims: tuple[Claim, ...] | None = None


class UserSecrets(Protocol):
    """What auth reads of a stored user (``models.User``)."""

    @property
    def PasswordHash(self) -> str: ...  # noqa: N802
    @property
    def Secret(self) -> str: ...  # noqa: N802


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


def client_key(address: str | None) -> str:
    """The back-off key of a client address: IPv6 by its /64 (one host has many)."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class FailureTable:
    """Failed logins per key, with an exponential back-off; at most ``limit`` keys.

    A key is forgotten once it has been quiet for ``forget`` seconds; when
    the table is full the key that failed longest ago goes first.
    """

    def __init__(self, *, allowed: int, backoff_max: float, limit: int = MAX_FAILURE_ENTRIES,
                 forget: float = 900.0) -> None:
        self.allowed = allowed
        self.backoff_max = backoff_max
        self.limit = limit
        self.forget = forget
        #: key -> (failures, blocked until, last failure), in order of last failure
        self._entries: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait; 0 when it may try."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        if now - entry[2] > max(self.forget, entry[1] - entry[2]):
            del self._entries[key]
            return 0.0
        return max(0.0, entry[1] - now)

    def fail(self, key: str, now: float) -> None:
        count, _, _ = self._entries.pop(key, (0, 0.0, 0.0))
        count += 1
        blocked = 0.0
        if count > self.allowed:
            blocked = now + min(self.backoff_max, 2.0 ** min(count - self.allowed - 1, 30))
        self._entries[key] = (count, blocked, now)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def succeed(self, key: str) -> None:
        self._entries.pop(key, None)


class Authenticator:
    def __init__(
        self,
        key: bytes,
        *,
        user_of: Callable[[str], UserSecrets | None] = lambda name: None,
        instance_secret_of: Callable[[str], str | None] = lambda name: None,
        default_user: bool = False,
        cache_seconds: float = 60.0,
        failures_allowed: int = 5,
        backoff_max: float = 60.0,
        hash_concurrency: int = HASH_CONCURRENCY,
    ) -> None:
        self._key = key
        self._user_of = user_of
        self._instance_secret_of = instance_secret_of
        #: drpd binds a loopback address: the built-in default user may log in
        self.default_user = default_user
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, float] = {}
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(TokenClaims)
        self._limiter = trio.CapacityLimiter(hash_concurrency)
        self._waiting = 0
        #: credentials being verified now, so a burst of the same one costs one hash
        self._verifying: dict[bytes, tuple[trio.Event, list[TooManyRequests]]] = {}
        self.user_failures = FailureTable(allowed=failures_allowed, backoff_max=backoff_max)
        self.client_failures = FailureTable(allowed=failures_allowed * 4, backoff_max=backoff_max)

    # -- tokens ------------------------------------------------------------
    def issue(self, user: str, ttl: int | None, *, instance: str = "",
              claims: list[Claim] | None = None) -> str:
        """A token for ``user`` (or for plugin ``instance``), valid ``ttl`` seconds,
        holding only ``claims`` when given (never more than its user, drpd.access)."""
        expiry = 0 if ttl is None else int(time.time()) + ttl
        narrowed = None if claims is None else [(c.scope, c.action, c.specific) for c in claims]
        token_claims = TokenClaims(u=user, e=expiry, i=instance, n=secrets.token_hex(4),
                                   c=narrowed)
        return self._signed(token_claims)

    def _signed(self, claims: TokenClaims) -> str:
        # a token for an owner that does not exist is made, and never accepted
        binding = self._binding(claims) or b"-"
        payload = _b64(self._encoder.encode(claims))
        return f"{payload}.{self._sign(payload, binding)}"

    def _binding(self, claims: TokenClaims) -> bytes | None:
        """What a token is bound to besides drpd's key; None: its owner is gone."""
        if claims.i:
            secret = self._instance_secret_of(claims.i)
            return None if secret is None else b"i\0" + secret.encode()
        if claims.u.startswith(PROVIDER_PRINCIPAL):
            # a provider's define/unpack token: only ever short-lived
            return b"p\0" if claims.e > 0 else None
        user = self._user_of(claims.u)
        if user is None:
            if self.default_user and claims.u == DEFAULT_USER:
                return b"u\0\0"
            return None
        return b"u\0" + user.Secret.encode() + b"\0" + user.PasswordHash.encode()

    def _sign(self, payload: str, binding: bytes) -> str:
        mac = hmac.new(self._key, payload.encode() + b"\0" + binding, hashlib.sha256)
        return _b64(mac.digest())

    def check_token(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN or not token.isascii():
            raise Unauthorized("invalid token")
        payload, _, sig = token.partition(".")
        try:
            claims = self._decoder.decode(_unb64(payload))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            raise Unauthorized("invalid token") from None
        binding = self._binding(claims)
        if binding is None:
            if claims.i:
                raise Unauthorized("token revoked: its plugin instance is gone")
            raise Unauthorized("invalid token")
        if not sig or not hmac.compare_digest(sig.encode(), self._sign(payload, binding).encode()):
            raise Unauthorized("invalid token")
        if claims.e and claims.e < time.time():
            raise Unauthorized("token expired")
        narrowed = None if claims.c is None else tuple(
            Claim(scope=s, action=a, specific=p) for s, a, p in claims.c)
        return Principal(claims.u, claims.i, "token", narrowed)

    # -- passwords ---------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        """``hash_password`` in a worker thread, within the bound on slow hashes."""
        return await self._slow(hash_password, password)

    async def _slow(self, fn: Callable[..., _T], *args: str) -> _T:
        if self._waiting >= HASH_QUEUE + self._limiter.total_tokens:
            raise TooManyRequests("too many logins at once: try again", retry_after=1)
        self._waiting += 1
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self._waiting -= 1

    async def check_basic(self, user: str, password: str, client: str | None = None) -> Principal:
        cache_key = None
        stored = self._user_of(user)
        if stored is not None and stored.PasswordHash:
            target = stored.PasswordHash
        elif stored is None and self.default_user and user == DEFAULT_USER:
            target = _DEFAULT_HASH
        else:
            target = ""  # unknown, or a user without a password: never logs in
        now = time.monotonic()
        if target:
            cache_key = hashlib.blake2b(
                f"{user}\0{password}\0{target}".encode("utf-8", "surrogatepass"),
                key=self._key[:32],
            ).digest()
            if self._cache.get(cache_key, 0.0) > now:
                return Principal(user, via="basic")
            running = self._verifying.get(cache_key)
            if running is not None:
                # the same credential is being checked (a client's first burst
                # of requests): share that one hash instead of queueing more
                event, outcome = running
                await event.wait()
                if self._cache.get(cache_key, 0.0) > time.monotonic():
                    return Principal(user, via="basic")
                if outcome:
                    raise TooManyRequests(*outcome[0].messages, retry_after=outcome[0].retry_after)
                raise Unauthorized("bad username or password")
        address = client_key(client)
        wait = max(self.user_failures.wait(user, now), self.client_failures.wait(address, now))
        if wait > 0:
            raise TooManyRequests(
                f"too many failed logins: try again in {math.ceil(wait)} s",
                retry_after=math.ceil(wait))
        done = trio.Event()
        refused: list[TooManyRequests] = []
        if cache_key is not None:
            self._verifying[cache_key] = (done, refused)
        try:
            ok = await self._slow(verify_password, password, target or _DUMMY_HASH)
        except TooManyRequests as exc:
            refused.append(exc)  # those waiting on this check are refused alike
            raise
        finally:
            if cache_key is not None:
                del self._verifying[cache_key]
            done.set()
        now = time.monotonic()
        if not ok or not target or cache_key is None:
            self.user_failures.fail(user, now)
            self.client_failures.fail(address, now)
            raise Unauthorized("bad username or password")
        self.user_failures.succeed(user)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v > now}
            while len(self._cache) > 10_000:
                del self._cache[next(iter(self._cache))]
        self._cache[cache_key] = now + self._cache_seconds
        return Principal(user, via="basic")

    async def check_header(self, header: str | None, query_token: str | None = None,
                           client: str | None = None) -> Principal:
        if header:
            scheme, _, value = header.partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                return self.check_token(value.strip())
            if scheme == "basic":
                try:
                    raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
                    user, sep, password = raw.decode("utf-8").partition(":")
                except (ValueError, UnicodeError):
                    raise Unauthorized("malformed Basic credentials") from None
                if not sep:
                    raise Unauthorized("malformed Basic credentials")
                return await self.check_basic(user, password, client)
            raise Unauthorized("unsupported authorization scheme")
        if query_token:
            return self.check_token(query_token)
        raise Unauthorized("authentication required")
