"""What each object type does beyond the generic router (``objects.py``).

The router knows no prefix by name: it asks the type's :class:`KindRules`
at each step (show, check a write, after a write, delete, PUT), and any
other part of drpd may add its own hooks through ``ApiContext.hooks``. The
rules here are DRP's: users hash passwords and keep a token secret,
instances keep theirs, machines check their references, a param declared
Secure seals stored values, providers are shown as DRP shows them, the
``global`` profile always exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..access import effective_roles
from ..auth import DEFAULT_USER, hash_password, new_secret
from ..models import Conflict, Forbidden, Unprocessable
from ..store import Record
from .context import ApiContext

#: the profile whose params apply to every machine after its own profiles
GLOBAL_PROFILE = "global"
PROFILES = "profiles"
#: a machine's references to other objects, checked on every write (422)
_MACHINE_REFS = (("Stage", "stages"), ("Workflow", "workflows"), ("BootEnv", "bootenvs"))


class KindRules:
    """An object type with no rules of its own: every step passes."""

    #: writes carry a ``Password`` to hash before the store's lock (``prehash``)
    hashes_passwords = False

    def present(self, api: ApiContext, data: dict[str, Any], args: Mapping[str, str]) -> None:
        """Adjust what a read shows (``data`` is the public view, changed in place)."""

    def finish(self, api: ApiContext, old: Any | None, new: Any,
               hashed: Mapping[str, str]) -> None:
        """Check ``new`` and fill what the server owns; raise to refuse."""

    async def after_write(self, api: ApiContext, old: Record | None, new: Record | None,
                          principal: str) -> None:
        """Act on a committed write."""

    def check_delete(self, api: ApiContext, key: str) -> None:
        """Raise to refuse deleting ``key``."""

    def fill_put(self, new: Any, key: str) -> None:
        """A PUT replaces the object stored at ``key``: fill what it may omit."""


class UserRules(KindRules):
    hashes_passwords = True

    def present(self, api: ApiContext, data: dict[str, Any], args: Mapping[str, str]) -> None:
        if data.get("Roles") is None:
            data["Roles"] = ["superuser"]  # stored before drpd had roles (drpd.access)

    def finish(self, api: ApiContext, old: Any | None, new: Any,
               hashed: Mapping[str, str]) -> None:
        if new.Roles is None:
            # not given: a change keeps the user's roles, a new user gets none
            # (``rocketskates`` gets superuser, as in DRP); check_write then
            # asks whether the writer may give them
            new.Roles = effective_roles(old) if old is not None else new_user_roles(new.Name)
        if new.Password:
            new.PasswordHash = hashed.get(new.Password) or hash_password(new.Password)
            new.Password = ""
            new.Secret = new_secret()  # a new password ends every token of the user
        else:
            new.PasswordHash = old.PasswordHash if old is not None else ""
            new.Secret = old.Secret if old is not None and old.Secret else new_secret()


class PluginRules(KindRules):
    def present(self, api: ApiContext, data: dict[str, Any], args: Mapping[str, str]) -> None:
        if data.get("Errors"):
            # a failing instance under --no-tls: say why a Go provider's event stream fails
            data["Errors"] = [*data["Errors"], *api.info_errors]

    def finish(self, api: ApiContext, old: Any | None, new: Any,
               hashed: Mapping[str, str]) -> None:
        # made with the instance, kept for its life: its provider's token is bound to it
        new.Secret = old.Secret if old is not None else new_secret()


class MachineRules(KindRules):
    def finish(self, api: ApiContext, old: Any | None, new: Any,
               hashed: Mapping[str, str]) -> None:
        store = api.store
        missing = [p for p in new.Profiles if store.get(PROFILES, p) is None]
        if missing:
            raise Unprocessable(f"profiles not found: {', '.join(missing)}",
                                model="machines", key=new.Uuid)
        for field, prefix in _MACHINE_REFS:
            ref = getattr(new, field)
            if ref and prefix in store.kinds and store.get(prefix, ref) is None:
                raise Unprocessable(f"{field} {ref!r} not found (no such {prefix} object)",
                                    model="machines", key=new.Uuid)

    def fill_put(self, new: Any, key: str) -> None:
        if not new.Uuid:
            new.Uuid = key


class ParamRules(KindRules):
    async def after_write(self, api: ApiContext, old: Record | None, new: Record | None,
                          principal: str) -> None:
        secure = api.secure
        if (secure is not None and new is not None and new.obj.Secure
                and (old is None or not old.obj.Secure)):
            # declared Secure after values were stored: those are sealed now too
            await secure.seal_stored(new.obj.Name, principal=principal)


class ProviderRules(KindRules):
    def present(self, api: ApiContext, data: dict[str, Any], args: Mapping[str, str]) -> None:
        present_provider(api, data, args)


class RoleRules(KindRules):
    def check_delete(self, api: ApiContext, key: str) -> None:
        holders = [r.obj.Name for r in api.store.list("users") if key in effective_roles(r.obj)]
        if holders:
            shown = ", ".join(holders[:5]) + (f" and {len(holders) - 5} more"
                                              if len(holders) > 5 else "")
            raise Conflict(f"role {key} is held by users {shown}: take it from them first",
                           model="roles", key=key)


class ProfileRules(KindRules):
    def check_delete(self, api: ApiContext, key: str) -> None:
        if key == GLOBAL_PROFILE:
            raise Forbidden("the global profile always exists: empty its Params instead",
                            model=PROFILES, key=key)


def present_provider(api: ApiContext, data: dict[str, Any], args: Mapping[str, str]) -> None:
    """A provider as DRP shows it: ``Meta`` from its content's meta, and its
    embedded ``Content`` (megabytes for some) only with ``?content=true``."""
    bundle = api.store.get("contents", str(data.get("Name", "")))
    if bundle is not None:
        meta = bundle.obj.meta
        data["Meta"] = {**{k: v for k, v in (("DisplayName", meta.DisplayName),
                                             ("Icon", meta.Icon), ("Color", meta.Color),
                                             ("Description", meta.Description),
                                             ("License", meta.License),
                                             ("DocUrl", meta.DocUrl)) if v},
                        "Type": "plugin", **(data.get("Meta") or {})}
    if args.get("content", "").lower() not in ("true", "1", "yes"):
        data["Content"] = ""


_NONE = KindRules()
RULES: dict[str, KindRules] = {
    "users": UserRules(),
    "roles": RoleRules(),
    "plugins": PluginRules(),
    "machines": MachineRules(),
    "params": ParamRules(),
    "plugin_providers": ProviderRules(),
    PROFILES: ProfileRules(),
}


def new_user_roles(name: str) -> list[str]:
    """The roles of a user created without ``Roles``: none, but DRP's default admin."""
    return ["superuser"] if name == DEFAULT_USER else []


def rules_for(prefix: str) -> KindRules:
    return RULES.get(prefix, _NONE)


def aggregate_layers(api: ApiContext, prefix: str, obj: Any) -> list[Record]:
    """The profiles whose params an object inherits, in order (``?aggregate=true``,
    as DRP): its own profiles, then ``global`` (not for ``global`` itself)."""
    names = list(getattr(obj, "Profiles", None) or [])
    if not (prefix == PROFILES and getattr(obj, "Name", None) == GLOBAL_PROFILE):
        names.append(GLOBAL_PROFILE)
    found = (api.store.get(PROFILES, name) for name in names)
    return [record for record in found if record is not None]
