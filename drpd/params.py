"""Checking param values against the Schema of their ``params`` object.

DRP validates with JSON Schema draft-04 unless a schema names its draft in
``$schema``; so does drpd (``jsonschema``). Compiled validators are cached
per param and revision.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from .store import Store

_MISSING = object()


class ParamChecker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[int, Any]] = {}

    def _validator(self, name: str) -> Any | None:
        record = self.store.get("params", name)
        if record is None or not record.obj.Schema:
            return None
        cached = self._cache.get(name)
        if cached is not None and cached[0] == record.rev:
            return cached[1]
        schema = record.obj.Schema
        if not isinstance(schema, dict):
            return None
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
        validator = cls(schema)
        self._cache[name] = (record.rev, validator)
        return validator

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is not a valid value of param ``name``, or None."""
        validator = self._validator(name)
        if validator is None:
            return None
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"param {name}{'/' + where if where else ''}: {error.message}"

    def default(self, name: str) -> Any:
        """The schema default of param ``name``, or ``_MISSING``."""
        record = self.store.get("params", name)
        if record is None or not isinstance(record.obj.Schema, dict):
            return _MISSING
        return record.obj.Schema.get("default", _MISSING)


MISSING = _MISSING
