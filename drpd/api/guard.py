"""The claim check of every request (what a principal holds: drpd.access).

Three places ask, so nothing reaches the store unchecked:

- ``check_route`` (before every handler) asks for the claim of the route:
  ``machines get <uuid>``, ``users token <name>``, ``plugin_providers
  create <name>`` (an upload runs code), ``machines action:poweron <uuid>``;
- ``check_write`` (inside the store's write, on the object as it would be)
  asks ``create``, or DRP's ``update:/Field`` for each field a write
  changes, ``updateSecure`` for a Secure param, and never lets anyone give
  a role, a token or a plugin instance more than the writer holds;
- ``check_reveal`` asks ``getSecure`` before Secure params are shown in clear.

A refusal is a 403 whose message names the claim that would allow the
request; it is counted (``drpd_api_denied``) and logged with the principal,
route and claim, at most a few lines a second (a scan must not flood the log).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote

from ..access import Authorizer, effective_roles
from ..claims import ClaimSet, missing_claim_text, problems
from ..models import Forbidden, Kind, Unprocessable
from ..store import public_view
from .context import ApiContext
from .current import g, request

log = logging.getLogger("drpd.access")

#: routes any authenticated principal may use: they show no stored data
_ANYONE = frozenset({"system.openapi", "queries.all_indexes", "queries.prefix_indexes"})
#: routes that answer the same to everyone (the catch-all 404; the web page's
#: files are served before authentication, app.py)
_UNCLAIMED = frozenset({"not_found", "system.healthz", "ui.ui_bare", "ui.ui_file"})
#: sub-resources whose action is their own name
_NAMED_SUBS = {"token": "token", "password": "password", "restart": "restart", "log": "log",
               "pubkey": "get"}
#: server-owned fields a write never changes on purpose (shown, not written)
_SERVER_FIELDS = frozenset({"Validated", "Available", "Errors", "Runtime", "PluginErrors"})
#: characters of a caller's name, path or key a denial shows at most
_SHOWN = 200
#: at most this many denials are logged per second; the rest are counted
_LOG_RATE = 5.0


class _DenialLog:
    """A token bucket for denial log lines, with a count of what it held back."""

    def __init__(self, rate: float = _LOG_RATE) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()
        self.suppressed = 0

    def write(self, who: str, route: str, claim: str) -> None:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            self.suppressed += 1
            return
        self.tokens -= 1
        held_back, self.suppressed = self.suppressed, 0
        log.warning("denied %s: %s needs claim %s%s", who, route, claim,
                    f" ({held_back} denials not logged)" if held_back else "")


_denials = _DenialLog()


def _ctx() -> ApiContext:
    from .objects import ctx

    return ctx()


def authorizer() -> Authorizer:
    context = _ctx()
    assert context.access is not None, "create_app sets ApiContext.access"
    return context.access


def rights() -> ClaimSet:
    """What the request's principal holds (computed once per request)."""
    held = g.get("rights")
    if held is None:
        held = authorizer().rights(g.principal)
        g.rights = held
    return held


def allowed(scope: str, action: str, specific: str = "") -> bool:
    return rights().allows(scope, action, specific)


def need(scope: str, action: str, specific: str = "") -> None:
    """Refuse (403) unless the principal holds ``scope action specific``."""
    if rights().allows(scope, action, specific):
        return
    deny(scope, action, specific,
         missing_claim_text(scope, action[:_SHOWN], specific[:_SHOWN]))


def deny(scope: str, action: str, specific: str, message: str) -> None:
    """Count, log (rate-limited) and raise a 403."""
    principal = g.principal
    who = principal.name + (f" (plugin {principal.plugin})" if principal.plugin else "")
    metrics = _ctx().metrics
    if metrics is not None:
        metrics.denied.labels(scope, action.split(":", 1)[0]).inc()
    # names and paths come from the caller: bounded before they are logged or echoed
    _denials.write(who[:_SHOWN], f"{request.method} {request.path[:_SHOWN]}",
                   f"{scope} {action[:_SHOWN]} {specific[:_SHOWN] or '*'}")
    raise Forbidden(message, model=scope, key=specific[:_SHOWN])


# -- routes ------------------------------------------------------------------
def check_route() -> None:
    """Ask for the claim of the matched route (handlers ask for finer ones)."""
    endpoint = request.endpoint or ""
    method = request.method
    args = request.view_args or {}
    if endpoint in _ANYONE:
        return
    if endpoint in ("system.get_info", "system.get_nodes"):
        need("info", "get")
    elif endpoint == "get_metrics":
        need("metrics", "get")
    elif endpoint == "events.post_event":
        need("events", "post")
    elif endpoint == "files.files":
        path = args.get("raw", "")
        if method in ("GET", "HEAD"):
            need("files", "get" if path else "list", path)
        else:
            need("files", "delete" if method == "DELETE" else "post", path)
    elif endpoint == "catalog.install":
        need("plugin_providers", "create", args["name"])  # it installs, and so runs, code
    elif endpoint == "catalog.list_catalog":
        need("catalog", "list")
    elif endpoint == "plugins.provider_write":
        need("plugin_providers", "delete" if method == "DELETE" else "create", args["name"])
    elif endpoint == "plugins.provider_binary":
        need("plugin_providers", "get", args["name"])
    elif endpoint == "actions.system_actions":
        need("system", "actions")
    elif endpoint == "actions.system_action":
        command = args["command"]
        need("system", "actions" if method in ("GET", "HEAD") else f"action:{command}", command)
    elif endpoint == "contents.contents":
        need("contents", "list" if method in ("GET", "HEAD") else "create")
    elif endpoint == "contents.content":
        need("contents", "delete" if method == "DELETE" else "update", args["name"])
    elif endpoint == "objects.collection":
        prefix = args["prefix"]
        if prefix in _ctx().store.kinds:
            # a create is asked again with its key once the body is read (check_write)
            need(prefix, "list" if method in ("GET", "HEAD") else "create")
    elif endpoint == "objects.item":
        _check_item(args["prefix"], args["rest"], method)
    elif endpoint not in _UNCLAIMED:
        # a route this table does not know: only a superuser, until it is added
        if not rights().everything:
            deny("*", "*", "*", f"forbidden: {endpoint} is for superusers only")


def _specific(kind: Kind, raw_key: str) -> str:
    """The key a claim names: an index form (``Name:m1``) resolved when it can be."""
    if ":" not in raw_key or not kind.unique:
        return raw_key
    from .queries import find_by_index

    try:
        record = find_by_index(_ctx().store, kind, raw_key)
    except Exception:  # noqa: BLE001 - a malformed key is the handler's 4xx
        return raw_key
    return kind.key_of(record.obj) if record is not None else raw_key


def _check_item(prefix: str, rest: str, method: str) -> None:
    kind = _ctx().store.kinds.get(prefix)
    if kind is None:
        return  # the handler's 404
    if kind.param_key:
        key, sub = unquote(rest), []
    else:
        key, *sub = (unquote(segment) for segment in rest.split("/"))
    key = _specific(kind, key)
    reading = method in ("GET", "HEAD")
    if not sub:
        if reading:
            need(prefix, "get", key)
        elif method == "DELETE":
            need(prefix, "delete", key)
        elif not rights().allows_some(prefix, "update", key):
            # PUT and PATCH are checked field by field on what they change
            # (check_write); one who may change nothing is refused here
            need(prefix, "update", key)
        return
    name = sub[0]
    if name == "actions":
        if reading or len(sub) < 2:
            need(prefix, "actions", key)
        else:
            need(prefix, "action:" + "/".join(sub[1:]), key)
        return
    if prefix == "users" and name in ("token", "password") and key == g.principal.name \
            and not g.principal.plugin:
        return  # every user may get a token for itself and change its password (DRP)
    if name in _NAMED_SUBS:
        need(prefix, _NAMED_SUBS[name], key)
    elif name == "params" and reading:
        need(prefix, "get", key)
    elif name == "params":
        if not rights().allows_some(prefix, "update", key):
            param = "/".join(sub[1:]).replace("~", "~0").replace("/", "~1")
            need(prefix, "update:/Params" + (f"/{param}" if param else ""), key)
    else:
        need(prefix, "get" if reading else "update", key)


def visible(kind: Kind, key: str) -> bool:
    """May the principal see this object (list results are filtered by it)?"""
    return allowed(kind.prefix, "get", key)


def sees_all(kind: Kind) -> bool:
    return allowed(kind.prefix, "get", "*")


def check_reveal(kind: Kind, key: str) -> None:
    """Secure params in clear (``?decode=true``) need ``getSecure``."""
    need(kind.prefix, "getSecure", key)


# -- writes ------------------------------------------------------------------
def _changes(old: Any, new: Any, pointer: str = "") -> list[str]:
    """The JSON pointers where ``new`` differs from ``old`` (maps walked, lists whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for name in old.keys() | new.keys():
            if not pointer and name in _SERVER_FIELDS:
                continue
            if old.get(name, _MISSING) != new.get(name, _MISSING):
                child = pointer + "/" + name.replace("~", "~0").replace("/", "~1")
                found.extend(_changes(old.get(name), new.get(name), child))
        return found
    return [pointer]


_MISSING = object()


def check_write(kind: Kind, old: Any | None, new: Any) -> None:
    """Refuse a write the principal may not make; runs inside the store's
    write, on the object as it would be stored (nothing is half-written)."""
    if g.get("principal") is None or g.get("write_covered"):
        return  # a write of drpd's own, or one its route's claim covers
    prefix = kind.prefix
    key = kind.key_of(new)
    if old is None:
        need(prefix, "create", key)
    elif not allowed(prefix, "update", key):
        before = public_view(prefix, old)
        if prefix == "users":
            before["Roles"] = effective_roles(old)
        changed = _changes(before, public_view(prefix, new))
        if not changed:
            need(prefix, "update", key)
        for pointer in changed:
            need(prefix, f"update:{pointer}", key)
    if kind.has_params:
        _check_secure(kind, key, old, new)
    if prefix == "users":
        _check_roles(old, new)
    elif prefix == "roles":
        _check_claims(kind, key, old.Claims if old is not None else [], new.Claims or [])
    elif prefix == "plugins":
        _check_claims(kind, key, (old.ExtraClaims or []) if old is not None else [],
                      new.ExtraClaims or [])


def route_covers_write() -> None:
    """The route's claim (``users password``) is all its write needs."""
    g.write_covered = True


def _check_secure(kind: Kind, key: str, old: Any | None, new: Any) -> None:
    secure = _ctx().secure
    if secure is None:
        return
    before = (old.Params or {}) if old is not None else {}
    after = new.Params or {}
    for name in before.keys() | after.keys():
        if before.get(name, _MISSING) != after.get(name, _MISSING) and secure.is_secure(name):
            need(kind.prefix, "updateSecure", key)
            return


def _check_roles(old: Any | None, new: Any) -> None:
    """Roles given to a user must exist and hold nothing the writer lacks."""
    store = _ctx().store
    missing = [name for name in new.Roles or [] if store.get("roles", name) is None]
    if missing:
        raise Unprocessable(f"no such role: {', '.join(missing)}", model="users", key=new.Name)
    before = set(effective_roles(old)) if old is not None else set()
    for name in new.Roles or []:
        if name not in before and not rights().contains(authorizer().role(name)):
            deny("users", "update:/Roles", new.Name,
                 f"forbidden: role {name} holds claims you do not hold, so you cannot give it")


def _check_claims(kind: Kind, key: str, old: list[Any], new: list[Any]) -> None:
    """Claims written into a role or granted to an instance: valid, and held by the writer."""
    found = [text for claim in new for text in problems(claim)]
    if found:
        raise Unprocessable("; ".join(found), model=kind.prefix, key=key)
    held = rights()
    for claim in new:
        if claim not in old and not held.contains(ClaimSet([claim])):
            deny(kind.prefix, "update", key,
                 f"forbidden: you do not hold claim {claim}, so you cannot grant it")

