"""Content bundles: named sets of read-only objects, installed atomically.

A bundle (DRP's shape: ``meta`` and ``sections`` of ``{prefix: {key:
object}}``) comes from a provider's ``Content`` YAML or from a user
(``drpcli contents upload``). Its objects are stored with ``ReadOnly: true``
and ``Bundle`` = the bundle's name (DRP's field); the bundle record and all of its
objects are written in one store transaction, so a bundle is either wholly
installed, replaced or removed, or not at all. An object that another
bundle (or a user) already owns is a clash, and the bundle is refused with
the clash named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import yaml

from .models import (
    KINDS,
    BadRequest,
    Conflict,
    Content,
    Kind,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
)
from .models.depth import DEFAULT_MAX_DEPTH, too_deep
from .models.extended import ExtendedKind
from .models.names import check_name
from .safe_yaml import YamlRefused, YamlTooLarge
from .safe_yaml import load as load_yaml
from .store import Record, Store

#: sections whose objects a bundle installs, besides the prefixes of
#: providers' StoreObjects; any other section (DRP's roles, subnets, ...) is
#: kept in the bundle record only
OBJECT_SECTIONS = ("params", "profiles", "tasks", "stages", "bootenvs", "templates", "workflows")


#: largest expansion of a bundle's YAML when no limit is given (the default body limit)
DEFAULT_MAX_SIZE = 16 * 1024 * 1024


def parse_bundle(text: str | bytes, *, what: str, max_size: int = DEFAULT_MAX_SIZE,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> Content:
    """A bundle from JSON or YAML text; a clear 400 when it is not one.

    YAML aliases may not expand it past ``max_size`` bytes (413), and
    neither form may nest past ``max_depth`` (400): see drpd.safe_yaml.
    """
    try:
        data = msgspec.json.decode(text)
    except RecursionError:
        raise BadRequest(f"{what}: nested more than {max_depth} levels deep",
                         model="contents") from None
    except msgspec.DecodeError:
        try:
            data = load_yaml(text, max_size=max_size, max_depth=max_depth)
            msgspec.json.encode(data)  # only what JSON can carry (no surrogates, no dates)
        except YamlRefused as exc:
            error = PayloadTooLarge if isinstance(exc, YamlTooLarge) else BadRequest
            raise error(f"{what}: {exc}", model="contents") from None
        except (yaml.YAMLError, UnicodeEncodeError, TypeError) as exc:
            raise BadRequest(f"{what}: not YAML or JSON: {exc}", model="contents") from None
    if too_deep(data, max_depth):
        raise BadRequest(f"{what}: nested more than {max_depth} levels deep", model="contents")
    return bundle_from(data, what=what)


def bundle_from(data: Any, *, what: str) -> Content:
    if not isinstance(data, dict):
        raise BadRequest(f"{what}: a content bundle is an object with meta and sections",
                         model="contents")
    try:
        return msgspec.convert(data, Content)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"{what}: {exc}", model="contents") from None


def summary(bundle: Content) -> dict[str, Any]:
    """DRP's ContentSummary: meta, Counts per section, Warnings."""
    return {"meta": msgspec.to_builtins(bundle.meta),
            "Counts": {prefix: len(objs or {}) for prefix, objs in sorted(bundle.entries.items())},
            "Warnings": []}


def installs(kinds: Mapping[str, Kind], prefix: str) -> bool:
    """Whether a bundle's section ``prefix`` is installed as objects."""
    return prefix in OBJECT_SECTIONS or isinstance(kinds.get(prefix), ExtendedKind)


def owner_of(obj: Any) -> str:
    """The bundle a stored object came from ('' for a user's object)."""
    if isinstance(obj, dict):
        return str(obj.get("Bundle") or "") if obj.get("ReadOnly") else ""
    if not getattr(obj, "ReadOnly", False):
        return ""
    return getattr(obj, "Bundle", "") or (getattr(obj, "Meta", None) or {}).get("Bundle", "")


class ContentService:
    def __init__(self, store: Store, secure: Any = None) -> None:
        self.store = store
        #: drpd.secure.SecureParams: a bundle that makes a param Secure seals
        #: the values already stored for it, as a param write does
        self.secure = secure

    def objects_of(self, bundle: Content,
                   kinds: Mapping[str, Kind] | None = None) -> list[tuple[str, str, Any]]:
        """The objects a bundle installs, validated and marked as the bundle's.

        Objects are read as Go writes them (``Endpoint``, ``Bundle``,
        ``Partial``, unknown fields: ignored). ``kinds`` adds the object
        types a provider is about to declare (its own bundle may carry them).
        """
        kinds = self.store.kinds if kinds is None else kinds
        name = bundle.info.Name
        found = []
        for prefix, entries in bundle.entries.items():
            if not installs(kinds, prefix):
                continue
            kind = kinds.get(prefix) or KINDS[prefix]
            if not isinstance(entries, dict):
                raise BadRequest(f"bundle {name}: section {prefix} is not a map",
                                 model="contents", key=name)
            for key, raw in entries.items():
                if not isinstance(raw, dict):
                    raise BadRequest(f"bundle {name}: {prefix}/{key} is not an object",
                                     model="contents", key=name)
                raw = dict(raw)
                if prefix == "templates" and "ID" not in raw and "Name" in raw:
                    raw["ID"] = raw.pop("Name")  # written by an older drpd
                if not raw.get(kind.key_field):
                    raw[kind.key_field] = key
                try:
                    obj = kind.convert(raw)
                    obj = kind.prepare(obj)
                except (BadRequest, Unprocessable) as exc:
                    raise type(exc)(f"bundle {name}: {prefix}/{key}: {exc}", model="contents",
                                    key=name) from None
                if kind.key_of(obj) != key:
                    raise Unprocessable(f"bundle {name}: {prefix}/{key} is named "
                                        f"{kind.key_of(obj)!r}", model="contents", key=name)
                if isinstance(obj, dict):
                    obj.update(ReadOnly=True, Bundle=name)
                else:
                    obj.ReadOnly = True
                    obj.Validated = True
                    obj.Available = True
                    obj.Errors = []
                    obj.Bundle = name
                found.append((prefix, key, obj))
        return found

    def owned(self, name: str) -> set[tuple[str, str]]:
        record = self.store.get("contents", name)
        if record is None:
            return set()
        kinds = self.store.kinds
        return {(prefix, key) for prefix, entries in record.obj.sections.items()
                if installs(kinds, prefix) for key in (entries or {})}

    def check(self, bundle: Content,
              kinds: Mapping[str, Kind] | None = None) -> list[tuple[str, str, Any]]:
        """Validate a bundle and find clashes; returns its objects. Changes nothing."""
        name = bundle.info.Name
        check_name(name, model="contents")
        objects = self.objects_of(bundle, kinds)
        mine = self.owned(name)
        for prefix, key, _ in objects:
            existing = self.store.get(prefix, key)
            if existing is None or (prefix, key) in mine:
                continue
            owner = owner_of(existing.obj)
            whose = f"content bundle {owner}" if owner else "a user"
            raise Conflict(f"bundle {name}: {prefix} {key} clashes with the one from {whose}",
                           model="contents", key=name)
        return objects

    async def install(self, bundle: Content, *, principal: str, replace: bool = True) -> Record:
        """Install or replace ``bundle`` and its objects in one transaction."""
        name = bundle.info.Name
        if not replace and self.store.get("contents", name) is not None:
            raise Conflict(f"contents {name} already exists", model="contents", key=name)
        objects = self.check(bundle)
        new_keys = {(prefix, key) for prefix, key, _ in objects}
        changes: list[tuple[str, str, Any | None]] = [("contents", name, bundle)]
        changes += objects
        changes += [(prefix, key, None) for prefix, key in sorted(self.owned(name) - new_keys)
                    if self.store.get(prefix, key) is not None]
        newly_secure = [key for prefix, key, obj in objects
                        if prefix == "params" and obj.Secure and not self._secure_now(key)]
        records = await self.store.transact(changes, principal=principal)
        if self.secure is not None:
            for key in newly_secure:
                await self.secure.seal_stored(key, principal=principal)
        return records[0]

    def _secure_now(self, param: str) -> bool:
        record = self.store.get("params", param)
        return record is not None and bool(record.obj.Secure)

    async def remove(self, name: str, *, principal: str) -> Record:
        record = self.store.get("contents", name)
        if record is None:
            raise NotFound(f"contents {name} not found", model="contents", key=name)
        changes: list[tuple[str, str, Any | None]] = [("contents", name, None)]
        changes += [(prefix, key, None) for prefix, key in sorted(self.owned(name))
                    if self.store.get(prefix, key) is not None]
        await self.store.transact(changes, principal=principal)
        return record
