"""The non-object routes: info, health, tokens, passwords (events: events.py)."""

from __future__ import annotations

import platform
import socket
import time
from typing import Any

import msgspec
from quart import Blueprint, Response

from ..auth import DEFAULT_USER, MAX_TOKEN
from ..claims import Claim, problems
from ..models import (
    BadRequest,
    Info,
    Kind,
    NotFound,
    Stat,
    TokenResponse,
    Unprocessable,
    decode_as,
)
from ..store import public_view
from . import guard
from .current import g, request
from .objects import ctx, finish, json_response, prehash, principal, read_body, resolve

bp = Blueprint("system", __name__)

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


#: DRP feature flags drpd honours, then drpd's own; Go-SDK providers test for
#: DRP's (ipmi will not configure without ``secure-param-upgrade``)
FEATURES = ("api-v3", "secure-params", "secure-param-upgrade", "plugin-v4",
            "plugins-v4", "events-seq", "etag")


def info() -> Info:
    c = ctx()
    stats = [Stat(name=f"{prefix}.count", count=len(c.store.list(prefix)))
             for prefix in ("machines", "subnets") if prefix in c.store.kinds]
    return Info(
        version=c.version,
        arch=_ARCH.get(platform.machine(), platform.machine()),
        os=platform.system().lower(),
        uptime=int(time.monotonic() - c.started),
        features=list(FEATURES),
        api_port=c.api_port,
        file_port=c.static_port,
        address=c.address,
        server_hostname=socket.gethostname(),
        stats=stats,
        errors=list(c.info_errors),
        catalog_url=c.settings.catalog_url,
        local_id=next((n.Id for n in c.nodes.list() if n.Self), "drpd") if c.nodes else "drpd",
    )


@bp.route("/api/v3/info", methods=["GET"])
async def get_info() -> Response:
    await read_body()
    return json_response(info())


@bp.route("/api/v3/nodes", methods=["GET"])
async def get_nodes() -> Response:
    """The drpd nodes sharing this store (one on SQLite), with their heartbeats."""
    await read_body()
    nodes = ctx().nodes
    return json_response(nodes.list() if nodes is not None else [])


@bp.route("/api/v3/healthz", methods=["GET"])
async def healthz() -> Response:
    await read_body()
    return Response("ok\n", content_type="text/plain")


async def user_token(kind: Kind, key: str, rest: list[str]) -> Response:
    await read_body()
    if request.method != "GET" or rest:
        raise NotFound(f"no such route under users/{key}")
    c = ctx()
    if c.store.get("users", key) is None and not (c.auth.default_user and key == DEFAULT_USER):
        raise NotFound(f"users {key} not found", model="users", key=key)
    raw = request.args.get("ttl")
    ttl = c.settings.token_ttl if raw is None else parse_ttl(raw)
    if ttl > c.settings.max_token_ttl:
        # refused, not shortened: a client asking for a year must not be
        # surprised by a token that ends sooner (DRP has no cap to follow)
        raise Unprocessable(f"ttl {ttl} s is longer than this drpd allows "
                            f"(max_token_ttl {c.settings.max_token_ttl} s)", model="users", key=key)
    claims = token_claims(key)
    token = c.auth.issue(key, ttl, claims=claims)
    if len(token) > MAX_TOKEN:
        raise Unprocessable(f"a token with these {len(claims or ())} claims would be too long: "
                            "ask for fewer (roles=, or scope/action/specific)",
                            model="users", key=key)
    return json_response(TokenResponse(Token=token, Info=info()))


def token_claims(user: str) -> list[Claim] | None:
    """What a new token of ``user`` holds (None: all the user holds, at each use).

    DRP's narrowing: ``?roles=a,b`` and/or ``?scope=&action=&specific=``
    name what the token may do; what its user does not hold is dropped
    silently. A token made for somebody else never holds more than its
    maker either (so a ``token`` claim on ``rocketskates`` is no way to
    superuser), and always lists its claims.
    """
    c = ctx()
    assert c.access is not None
    args = request.args
    wanted: list[Claim] | None = None
    if args.get("roles"):
        wanted = []
        for name in (n.strip() for n in args["roles"].split(",") if n.strip()):
            role = c.store.get("roles", name)
            if role is None:
                raise Unprocessable(f"no such role {name!r}", model="users", key=user)
            wanted.extend(role.obj.Claims or ())
    if any(args.get(name) for name in ("scope", "action", "specific")):
        claim = Claim(scope=args.get("scope") or "*", action=args.get("action") or "*",
                      specific=args.get("specific") or "*")
        found = problems(claim)
        if found:
            raise Unprocessable("; ".join(found), model="users", key=user)
        wanted = [*(wanted or ()), claim]
    held = c.access.user(user)
    if user == g.principal.name and not g.principal.plugin and g.principal.claims is None:
        return None if wanted is None else list(held.narrowed_to(wanted).claims)
    maker = guard.rights()
    if wanted is None and held.contains(maker):
        return list(maker.claims)  # the user holds all the maker does: the maker's
    base = list(held.claims) if wanted is None else list(held.narrowed_to(wanted).claims)
    return list(maker.narrowed_to(base).claims)


_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_ttl(raw: str) -> int:
    """Seconds from ``?ttl=``: a number of seconds, or with a unit as drpcli
    writes it (``600``, ``30m``, ``1h``, ``3y``); 400 otherwise."""
    text = raw.strip().lower()
    number = text.rstrip("smhdwy")
    unit = text[len(number):]
    if not number.isdigit() or len(number) > 12 or unit not in _TTL_UNITS:
        raise BadRequest(f"ttl must be a number of seconds (or with s, m, h, d, w, y), "
                         f"not {raw[:40]!r}")
    ttl = int(number) * _TTL_UNITS[unit]
    if ttl <= 0:
        raise BadRequest("ttl must be positive")
    return ttl


class _PasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    Password: str


async def user_password(kind: Kind, key: str, rest: list[str]) -> Response:
    body = await read_body()
    if request.method != "PUT" or rest:
        raise NotFound(f"no such route under users/{key}")
    password = decode_as(_PasswordBody, body, what="users").Password
    if not password:
        raise BadRequest("Password must not be empty", model="users", key=key)
    c = ctx()
    if c.store.get("users", key) is None and c.auth.default_user and key == DEFAULT_USER:
        raise NotFound(
            f"{DEFAULT_USER} is drpd's built-in loopback user and has no stored password: "
            f"create it first (`drpcli users create '{{\"Name\":\"{DEFAULT_USER}\",\"Password\":\"...\"}}'`)",
            model="users", key=key)
    resolve(kind, key)
    hashed = await prehash(kind, password)

    def mutate(old: Any) -> Any:
        return finish(kind, old, msgspec.structs.replace(old, Password=password), hashed)

    guard.route_covers_write()  # ``users password`` (or oneself), asked by check_route
    new = await ctx().store.modify("users", key, mutate, principal=principal())
    return json_response(public_view("users", new.obj), etag=new.etag)


def register(c: Any) -> None:
    c.extras[("users", "token")] = user_token
    c.extras[("users", "password")] = user_password


@bp.route("/api/v3/openapi.json", methods=["GET"])
async def openapi() -> Response:
    from .openapi import build

    await read_body()
    c = ctx()
    return json_response(build(c.store.kinds, c.version))
