"""Who may do what: the claims behind each principal (docs/security.md).

- A user holds the claims of its roles, plus what DRP lets every user do to
  itself: read itself, change its password, get a token for itself.
- A user stored before drpd had roles (``Roles`` unset) holds ``superuser``:
  it could do everything until then, and an upgrade must not lock the
  administrator out. ``rocketskates`` made without roles gets it too (DRP's
  default); any other new user starts with none.
- A token may carry a narrower list of claims; it never holds more than its
  user holds *now*, so a role taken away shrinks every token at once.
- A plugin instance's token holds the least its provider's work needs
  (``provider_claims``): read what actions read, its own object types, its
  own instance, publish events, and write an object only while an action of
  the instance on that object is in flight (``InFlight``); more only when the
  operator granted it on the instance (``Plugin.ExtraClaims``). DRP gives
  every plugin a superuser token; drpd does not.
- A provider's ``define``/``unpack`` token may only read.

Claim sets are cached per role revision, so a request costs dictionary
lookups and one containment check, not a compile of every claim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import claims as _claims
from .auth import DEFAULT_USER, PROVIDER_PRINCIPAL, Principal
from .claims import ALL_SCOPES, SUPERUSER, Claim, ClaimSet
from .models import Role
from .models.kinds import KINDS
from .store import Store

#: scopes an operator may change everything in but Secure values' clear text
_OPERATOR_SCOPES = (
    "machines", "profiles", "params", "plugins", "stages", "tasks", "workflows", "bootenvs",
    "templates", "subnets", "reservations", "leases", "jobs", "preferences", "tenants",
    "contents", "files", "events", "system", "info", "metrics", "catalog",
)


def _grouped(scopes: tuple[str, ...], drop: frozenset[str], specific: str = "*") -> list[Claim]:
    """One claim per set of actions, naming only actions valid in its scopes
    (so the built-in roles pass the validation a copy of them gets)."""
    by_actions: dict[str, list[str]] = {}
    for scope in scopes:
        actions = ",".join(sorted(ALL_SCOPES[scope] - drop))
        if actions:
            by_actions.setdefault(actions, []).append(scope)
    return [Claim(scope=",".join(group), action=actions, specific=specific)
            for actions, group in by_actions.items()]


def _role(name: str, description: str, claims: list[Claim]) -> Role:
    return Role(Name=name, Description=description, Claims=claims, ReadOnly=True,
                Validated=True, Available=True, Meta={"source": "drpd"})


def builtin_roles() -> list[Role]:
    """drpd's roles: stored at start when missing, read-only."""
    return [
        _role("superuser", "everything (DRP's superuser)", [SUPERUSER]),
        _role("read-only", "read everything but Secure values in clear; change nothing",
              [Claim(scope="*", action="list,get,actions", specific="*")]),
        _role("operator",
              "run the site: objects, actions, plugin instances, files, content; "
              "set Secure values but not read them; not users, roles or providers",
              [*_grouped(_OPERATOR_SCOPES, frozenset({"getSecure"})),
               Claim(scope="users,roles", action="get,list", specific="*"),
               Claim(scope="plugin_providers", action="actions,get,list", specific="*")]),
    ]


BUILTIN_ROLE_NAMES = frozenset(role.Name for role in builtin_roles())

_EVERYTHING = ClaimSet([SUPERUSER])
_NOTHING = ClaimSet(())
#: what a provider's define/unpack token may do: read, nothing else
READ_ONLY = ClaimSet([Claim(scope="*", action="list,get", specific="*")])
#: what every provider token may read (machines and what actions consult)
_PROVIDER_READS = ("machines", "profiles", "params", "stages", "tasks", "workflows",
                   "bootenvs", "templates", "subnets", "reservations", "leases", "jobs")
#: what a provider may do to the object an action of its instance runs on
_ACTING = "get,update,getSecure,updateSecure"


async def ensure_builtin_roles(store: Store) -> None:
    """Store drpd's roles where they are missing (another node may race: fine)."""
    from .models import Conflict

    for role in builtin_roles():
        if store.get("roles", role.Name) is None:
            try:
                await store.create("roles", role, principal="drpd")
            except Conflict:
                pass


def self_claims(user: str) -> ClaimSet:
    """What DRP lets every user do to itself."""
    return ClaimSet([Claim(scope="users", action="get,password,token", specific=user)])


def effective_roles(user: Any) -> list[str]:
    """A stored user's roles, a legacy one (``Roles`` unset) holding superuser."""
    return ["superuser"] if user.Roles is None else list(user.Roles)


class InFlight:
    """The objects each instance's actions run on now.

    Entered around each action call, so the provider's token may write that
    object (and only that one) while its answer is awaited.
    """

    def __init__(self) -> None:
        self._running: Counter[tuple[str, str, str]] = Counter()
        self._by_instance: dict[str, Counter[tuple[str, str]]] = {}

    @contextmanager
    def acting(self, instance: str, prefix: str, key: str) -> Iterator[None]:
        mine = self._by_instance.setdefault(instance, Counter())
        mine[(prefix, key)] += 1
        try:
            yield
        finally:
            mine[(prefix, key)] -= 1
            if mine[(prefix, key)] <= 0:
                del mine[(prefix, key)]
            if not mine:
                del self._by_instance[instance]

    def targets(self, instance: str) -> list[tuple[str, str]]:
        return sorted(self._by_instance.get(instance, ()))


def target_key(model: str, target: Any) -> str | None:
    """The key of an action's target object as shown (a dict), if it has one."""
    kind = KINDS.get(model)
    if kind is None or not isinstance(target, dict):
        return None
    key = target.get(kind.key_field)
    return key if isinstance(key, str) and key else None


class Authorizer:
    """The claims each principal holds now, from the store (cached per revision)."""

    def __init__(self, store: Store, inflight: InFlight | None = None, *,
                 default_user: bool = False) -> None:
        self.store = store
        self.inflight = inflight or InFlight()
        self.default_user = default_user
        #: role name -> (revision, scope generation, claims)
        self._roles: dict[str, tuple[int, int, ClaimSet]] = {}
        #: instance name -> (plugin revision, provider Sha256, generation, claims)
        self._providers: dict[str, tuple[int, str, int, ClaimSet]] = {}
        self._provider_of: Any = None
        #: user name -> ((user revision, generation, role revisions), claims)
        self._users: dict[str, tuple[tuple[Any, ...], ClaimSet]] = {}

    def bind_providers(self, provider_of: Any) -> None:
        """``provider_of(name) -> PluginProvider | None`` (the plugin side's registry)."""
        self._provider_of = provider_of

    # -- users -------------------------------------------------------------
    def role(self, name: str) -> ClaimSet:
        record = self.store.get("roles", name)
        if record is None:
            return _NOTHING
        cached = self._roles.get(name)
        if cached is not None and cached[0] == record.rev and cached[1] == _claims.generation:
            return cached[2]
        found = ClaimSet(record.obj.Claims or ())
        if len(self._roles) > 10_000:
            self._roles.clear()
        self._roles[name] = (record.rev, _claims.generation, found)
        return found

    def roles(self, names: list[str]) -> ClaimSet:
        held = ClaimSet(())
        for name in names:
            held = held | self.role(name)
        return held

    def user(self, name: str) -> ClaimSet:
        record = self.store.get("users", name)
        if record is None:
            return _EVERYTHING if self.default_user and name == DEFAULT_USER else _NOTHING
        roles = effective_roles(record.obj)
        stamp = (record.rev, _claims.generation,
                 tuple(getattr(self.store.get("roles", r), "rev", -1) for r in roles))
        cached = self._users.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found = self.roles(roles) | self_claims(name)
        if len(self._users) > 10_000:
            self._users.clear()
        self._users[name] = (stamp, found)
        return found

    # -- providers ---------------------------------------------------------
    def provider(self, instance: str) -> ClaimSet:
        """An instance's standing claims (without what in-flight actions add)."""
        record = self.store.get("plugins", instance)
        if record is None:
            return ClaimSet(())
        provider = self._provider_of(record.obj.Provider) if self._provider_of else None
        sha = provider.Sha256 if provider is not None else ""
        cached = self._providers.get(instance)
        if cached is not None and cached[:3] == (record.rev, sha, _claims.generation):
            return cached[3]
        found = provider_claims(instance, list((provider.StoreObjects or {}) if provider else ()),
                                record.obj.ExtraClaims or ())
        if len(self._providers) > 10_000:
            self._providers.clear()
        self._providers[instance] = (record.rev, sha, _claims.generation, found)
        return found

    # -- any principal -----------------------------------------------------
    def rights(self, principal: Principal) -> ClaimSet:
        if principal.plugin:
            held = self.provider(principal.plugin)
            acting = [Claim(scope=prefix, action=_ACTING, specific=key)
                      for prefix, key in self.inflight.targets(principal.plugin)]
            return held | ClaimSet(acting) if acting else held
        if principal.name.startswith(PROVIDER_PRINCIPAL):
            return READ_ONLY
        held = self.user(principal.name)
        if principal.claims is None:
            return held
        # a narrowed token: its claims, as far as the user still holds them
        return held.narrowed_to(principal.claims)


def provider_claims(instance: str, prefixes: list[str], granted: Any = ()) -> ClaimSet:
    """The least-privilege claims of an instance's provider token."""
    found = [
        Claim(scope=",".join(_PROVIDER_READS), action="get,list", specific="*"),
        Claim(scope="info", action="get", specific="*"),
        Claim(scope="plugins", action="get,getSecure,update:/Params", specific=instance),
        Claim(scope="events", action="post", specific="*"),
    ]
    own = [p for p in prefixes if p in ALL_SCOPES]
    if own:
        found.append(Claim(scope=",".join(own), action="*", specific="*"))
    return ClaimSet([*found, *granted])
