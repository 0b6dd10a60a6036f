"""Object types declared by providers (``StoreObjects``).

Each entry of a provider's ``StoreObjects`` becomes a prefix whose objects
are plain JSON maps keyed by ``Id`` and carrying ``Type`` = the prefix. Two
schema forms exist in the wild and both are accepted:

- a full JSON Schema object (``type``, ``properties``, ...), checked as is;
- DRP's incrementer form: a map of field name to a per-field schema, where
  ``"isrequired": true`` marks a required field.

``{}`` allows anything. jsonschema is imported on first use only, so the
provider SDK (which imports ``drpd.models``) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .depth import DEFAULT_MAX_DEPTH
from .errors import BadRequest, Unprocessable
from .kinds import Kind, decode_as
from .names import check_name

#: keys that mark a schema as a full JSON Schema rather than a field map
_SCHEMA_KEYS = frozenset({
    "type", "properties", "required", "$schema", "additionalProperties", "items", "allOf",
    "anyOf", "oneOf", "$ref", "enum", "patternProperties", "definitions", "not",
})


def _validator_for(schema: dict[str, Any]) -> Any:
    """A safe validator (drpd.models.schemas); raises InvalidSchema for a bad schema."""
    from .schemas import compile_schema

    return compile_schema(schema)


@dataclass(frozen=True)
class ExtendedKind(Kind):
    """A provider's object type; objects are ``dict``s."""

    schema: Any = field(default_factory=dict)
    provider: str = ""

    def __post_init__(self) -> None:
        # validate the schema once, when the provider is installed
        object.__setattr__(self, "_validators", self._compile())

    def _compile(self) -> Any:
        schema = self.schema if isinstance(self.schema, dict) else {}
        if not schema:
            return None
        if _SCHEMA_KEYS & schema.keys():
            return ("full", _validator_for(schema))
        fields: dict[str, tuple[bool, Any]] = {}
        for name, spec in schema.items():
            spec = dict(spec) if isinstance(spec, dict) else {}
            required = bool(spec.pop("isrequired", False))
            fields[name] = (required, _validator_for(spec) if spec else None)
        return ("fields", fields)

    def key_of(self, obj: Any) -> str:
        return obj.get("Id", "") if isinstance(obj, dict) else ""

    def prepare(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            raise BadRequest(f"a {self.prefix} object is a JSON object", model=self.prefix)
        key = obj.get("Id")
        if not isinstance(key, str) or not key:
            raise Unprocessable("Id is required (a string)", model=self.prefix)
        check_name(key, model=self.prefix)
        kind = obj.get("Type", self.prefix)
        if kind != self.prefix:
            raise Unprocessable(f"Type must be {self.prefix!r}, not {kind!r}", model=self.prefix,
                                key=key)
        obj["Type"] = self.prefix
        self.validate(obj)
        return obj

    def validate(self, obj: dict[str, Any]) -> None:
        compiled = getattr(self, "_validators", None)
        if compiled is None:
            return
        from .schemas import first_problem

        form, spec = compiled
        key = obj.get("Id", "")
        if form == "full":
            problem = first_problem(spec, obj)
            if problem is not None:
                raise Unprocessable(problem, model=self.prefix, key=key)
            return
        for name, (required, validator) in spec.items():
            if name not in obj:
                if required:
                    raise Unprocessable(f"{name} is required", model=self.prefix, key=key)
                continue
            if validator is not None:
                problem = first_problem(validator, obj[name])
                if problem is not None:
                    raise Unprocessable(f"{name}: {problem}", model=self.prefix, key=key)

    def decode(self, data: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
        obj = decode_as(Any, data, what=self.prefix, max_depth=max_depth)
        if not isinstance(obj, dict):
            raise BadRequest(f"a {self.prefix} object is a JSON object", model=self.prefix)
        return obj

    def convert(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise BadRequest(f"a {self.prefix} object is a JSON object", model=self.prefix)
        return data


def extended_kind(prefix: str, schema: Any, *, provider: str, writable: bool = True) -> ExtendedKind:
    return ExtendedKind(prefix, dict, key_field="Id", writable=writable, schema=schema,
                        provider=provider)
