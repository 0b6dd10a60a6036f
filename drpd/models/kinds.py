"""The object kinds drpd stores, keyed by their REST prefix.

One table drives the store, the generic REST router and drpcli alike, so a
new kind is one entry here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from . import objects as o
from .depth import DEFAULT_MAX_DEPTH, shallow_text, too_deep
from .errors import BadRequest, Unprocessable
from .names import check_name


@dataclass(frozen=True)
class Kind:
    prefix: str
    #: a Struct type, or ``dict`` for a provider's StoreObjects (schema-checked)
    model: type[msgspec.Struct] | type[dict[str, Any]]
    key_field: str = "Name"
    #: fields whose values must be unique among objects of this kind
    unique: tuple[str, ...] = ()
    #: has a ``Params`` map served as a ``/params`` sub-resource
    has_params: bool = False
    #: API writes allowed (plugin_providers are installed, not written)
    writable: bool = True
    #: the key is a param name, which may contain ``/``
    param_key: bool = False

    def key_of(self, obj: Any) -> str:
        if self.prefix == "contents":
            return obj.meta.Name
        return getattr(obj, self.key_field)

    def prepare(self, obj: Any) -> Any:
        """Fill generated fields and check the key; returns the object."""
        if self.prefix == "machines" and not obj.Uuid:
            obj.Uuid = str(uuid.uuid4())
        key = self.key_of(obj)
        if not key:
            raise Unprocessable(f"{self.key_field} is required", model=self.prefix)
        if self.prefix == "machines":
            try:
                uuid.UUID(key)
            except ValueError:
                raise Unprocessable(f"invalid Uuid {key!r}", model=self.prefix) from None
            if obj.Name:
                check_name(obj.Name, model=self.prefix)
        else:
            check_name(key, model=self.prefix, param=self.param_key)
        if self.prefix == "params":
            _check_param_schema(obj)
        return obj

    def decode(self, data: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
        return decode_as(self.model, data, what=self.prefix, max_depth=max_depth)

    def convert(self, data: Any) -> Any:
        try:
            return msgspec.convert(data, self.model)
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc), model=self.prefix) from None


def decode_as(shape: type[Any], data: bytes | str, *, what: str = "",
              max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode JSON into ``shape``; any failure is a 400 saying what was wrong,
    nesting past ``max_depth`` included (drpd.models.depth)."""
    try:
        value = msgspec.json.decode(data, type=shape)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc), model=what) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", model=what) from None
    except RecursionError:  # msgspec gives up near Python's recursion limit
        raise BadRequest(f"JSON nested more than {max_depth} levels deep", model=what) from None
    if not shallow_text(data, max_depth) and too_deep(value, max_depth):
        raise BadRequest(f"JSON nested more than {max_depth} levels deep", model=what)
    return value


def _check_param_schema(param: Any) -> None:
    """A param's Schema must be one drpd can use safely (drpd.models.schemas)."""
    schema = param.Schema
    if schema is None or schema == {}:
        return
    from .schemas import InvalidSchema, compile_schema

    try:
        compile_schema(schema)
    except InvalidSchema as exc:
        raise Unprocessable(f"Schema: {exc}", model="params", key=param.Name) from None


KINDS: dict[str, Kind] = {
    k.prefix: k
    for k in (
        Kind("machines", o.Machine, key_field="Uuid", unique=("Name",), has_params=True),
        Kind("params", o.Param, param_key=True),
        Kind("profiles", o.Profile, has_params=True),
        Kind("users", o.User),
        Kind("roles", o.Role),
        Kind("plugins", o.Plugin, has_params=True),
        Kind("plugin_providers", o.PluginProvider, writable=False),
        Kind("contents", o.Content, key_field="meta.Name"),
        Kind("tasks", o.Task),
        Kind("stages", o.Stage),
        Kind("bootenvs", o.BootEnv),
        Kind("templates", o.Template, key_field="ID"),
        Kind("workflows", o.Workflow),
    )
}
