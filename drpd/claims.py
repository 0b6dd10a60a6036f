"""DRP's claims: what a role (and so a user or token) may do, and the containment order.

A claim names scopes (``machines``, ``users``, ``*``), actions (``get``,
``update:/Params``, ``action:poweron``, ``*``) and specific keys (``m1``,
``*``), each a comma-separated list. A request needs one
``(scope, action, specific)`` triple; a set of claims allows it when one
claim *contains* it. Containment is DRP's (models/role.go):

- ``*`` in any position stands for everything valid there;
- ``update`` contains ``update:/Field`` and every deeper JSON pointer, and
  ``update:/Params`` contains ``update:/Params/foo``;
- ``action`` contains ``action:<name>``;
- a token or a narrower role may only ever be given claims its issuer's
  claims contain (``contains``), so nobody can widen their own rights.

The vocabulary of actions per scope follows DRP's; a scope that a provider
adds (its StoreObjects prefix) gets the basic actions (``register_scope``).
Compiled claims are frozen and hashable so they can be cached per role.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .models.objects import Claim

__all__ = ["Claim", "ClaimSet", "SUPERUSER", "problems", "register_scope"]

BASIC_ACTIONS = frozenset({"list", "get", "create", "delete", "actions", "update", "action"})
#: scopes that are API paths rather than object prefixes, with their actions
EXTRA_SCOPES: dict[str, frozenset[str]] = {
    "contents": frozenset({"list", "get", "create", "update", "delete", "actions", "action"}),
    "files": frozenset({"list", "get", "post", "delete"}),
    "info": frozenset({"get"}),
    "system": frozenset({"actions", "action"}),
    "events": frozenset({"post"}),
    "metrics": frozenset({"get"}),
    "plugin_providers": frozenset({"list", "get", "create", "delete", "actions", "action"}),
    "catalog": frozenset({"list", "get"}),
}
#: actions some object scopes have beyond the basic ones
ADDED_ACTIONS: dict[str, frozenset[str]] = {
    "users": frozenset({"token", "password"}),
    "machines": frozenset({"getSecure", "updateSecure"}),
    "plugins": frozenset({"getSecure", "updateSecure", "restart", "log"}),
    "profiles": frozenset({"getSecure", "updateSecure"}),
    "stages": frozenset({"getSecure", "updateSecure"}),
    "params": frozenset(),
    "roles": frozenset(),
}
OBJECT_SCOPES = (
    "machines", "profiles", "params", "plugins", "users", "roles", "tasks", "stages",
    "bootenvs", "templates", "workflows", "subnets", "reservations", "leases", "jobs",
    "preferences", "tenants",
)


def _scopes() -> dict[str, frozenset[str]]:
    scopes = dict(EXTRA_SCOPES)
    for prefix in OBJECT_SCOPES:
        scopes[prefix] = BASIC_ACTIONS | ADDED_ACTIONS.get(prefix, frozenset())
    return scopes


ALL_SCOPES: dict[str, frozenset[str]] = _scopes()


#: bumped with each new scope: claims compiled before it (``*``) must be compiled again
generation = 0


def register_scope(prefix: str) -> None:
    """Make a provider's object type a scope, with the basic actions and secure ones."""
    global generation
    if prefix not in ALL_SCOPES:
        ALL_SCOPES[prefix] = BASIC_ACTIONS | {"getSecure", "updateSecure"}
        generation += 1


def _csv(text: str) -> frozenset[str] | None:
    """A comma-separated list as a set; ``*`` (everything) as None."""
    if text.strip() == "*":
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Compiled:
    """One claim as scope -> action -> specifics (None = every specific)."""

    scopes: tuple[tuple[str, tuple[tuple[str, frozenset[str] | None], ...]], ...]

    def table(self) -> dict[str, dict[str, frozenset[str] | None]]:
        return {scope: dict(actions) for scope, actions in self.scopes}


def problems(claim: Claim) -> list[str]:
    """What is wrong with a claim (unknown scopes or actions), for a 422."""
    found = []
    scopes = _csv(claim.scope)
    for scope in sorted(scopes or ()):
        if scope not in ALL_SCOPES:
            found.append(f"No such scope '{scope}'")
            continue
        for action in sorted(_csv(claim.action) or ()):
            if action.split(":", 1)[0] not in ALL_SCOPES[scope]:
                found.append(f"No such action '{action}' in scope '{scope}'")
    return found


def compile_claim(claim: Claim) -> Compiled:
    scope_set = _csv(claim.scope)
    scopes = sorted(ALL_SCOPES) if scope_set is None else sorted(s for s in scope_set
                                                               if s in ALL_SCOPES)
    specifics = _csv(claim.specific)
    action_set = _csv(claim.action)
    table = []
    for scope in scopes:
        valid = ALL_SCOPES[scope]
        if action_set is None:
            actions = sorted(valid)
        else:
            actions = sorted(a for a in action_set if a.split(":", 1)[0] in valid)
        table.append((scope, tuple((action, specifics) for action in actions)))
    return Compiled(tuple(table))


def _specifics_contain(have: frozenset[str] | None, want: frozenset[str] | None) -> bool:
    if have is None:
        return True
    if want is None:
        return False
    return want <= have


def _pointer_parents(pointer: str) -> list[str]:
    """``/Params/a~1b`` -> [``/Params``, ``""``]: each shorter JSON pointer, longest first."""
    parts = pointer.split("/")[1:] if pointer.startswith("/") else []
    return ["/" + "/".join(parts[:n]) if n else "" for n in range(len(parts) - 1, -1, -1)]


def _lookup(actions: dict[str, frozenset[str] | None], wanted: str) -> frozenset[str] | None | bool:
    """The specifics granted for ``wanted`` (with DRP's widening), or False when none."""
    if wanted in actions:
        return actions[wanted]
    base, _, rest = wanted.partition(":")
    if not rest:
        return False
    if base == "action":
        return actions.get("action", False)
    if base == "update":
        for parent in _pointer_parents(rest):
            key = "update" if parent == "" else f"update:{parent}"
            if key in actions:
                return actions[key]
        return False
    return False


def compiled_contains(have: Compiled, want: Compiled) -> bool:
    table = have.table()
    for scope, actions in want.scopes:
        granted = table.get(scope)
        if granted is None:
            return False
        for action, specifics in actions:
            found = _lookup(granted, action)
            if found is False or not _specifics_contain(found, specifics):  # type: ignore[arg-type]
                return False
    return True


def _is_everything(claim: Claim) -> bool:
    return claim.scope.strip() == "*" and claim.action.strip() == "*" \
        and claim.specific.strip() == "*"


class ClaimSet:
    """The claims a principal holds (from its roles, or a token's own list)."""

    def __init__(self, claims: Iterable[Claim]) -> None:
        self.claims = tuple(claims)
        self._compiled = tuple(compile_claim(c) for c in self.claims)
        #: holds the superuser claim: every check passes without looking further
        self.everything = any(_is_everything(c) for c in self.claims)

    def __or__(self, other: ClaimSet) -> ClaimSet:
        """Both sets' claims (compiled once: the parts are reused)."""
        joined = ClaimSet(())
        joined.claims = self.claims + other.claims
        joined._compiled = self._compiled + other._compiled
        joined.everything = self.everything or other.everything
        return joined

    def allows(self, scope: str, action: str, specific: str) -> bool:
        if self.everything:
            return True
        want = compile_claim(Claim(scope=scope, action=action, specific=specific))
        if not want.scopes:
            # an unknown scope: only a scope-wide star reaches it
            return False
        return any(compiled_contains(have, want) for have in self._compiled)

    def allows_some(self, scope: str, action: str, specific: str) -> bool:
        """Some ``action`` or ``action:<anything>`` on ``specific`` (a write
        that will be checked field by field may go on)."""
        if self.everything or self.allows(scope, action, specific):
            return True
        for compiled in self._compiled:
            granted = compiled.table().get(scope, {})
            for name, specifics in granted.items():
                if name.startswith(action + ":") and (specifics is None or specific in specifics):
                    return True
        return False

    def contains(self, other: ClaimSet) -> bool:
        """Every claim of ``other`` is within one of ours (may ``self`` grant ``other``?)."""
        if self.everything:
            return True
        return all(any(compiled_contains(have, want) for have in self._compiled)
                   for want in other._compiled)

    def narrowed_to(self, wanted: Iterable[Claim]) -> ClaimSet:
        """The wanted claims that ours contain; the rest silently dropped (DRP's tokens)."""
        keep = [c for c in wanted if self.contains(ClaimSet([c]))]
        return ClaimSet(keep)


SUPERUSER = Claim(scope="*", action="*", specific="*")


def missing_claim_text(scope: str, action: str, specific: str) -> str:
    """The message a 403 carries: the claim that would have allowed the request."""
    return f"forbidden: needs claim scope={scope} action={action} specific={specific or '*'}"
