"""Checking param values against the Schema of their ``params`` object.

DRP validates with JSON Schema drafts 4 to 7 (the one ``$schema`` names, a
hybrid without it); so does drpd, through ``drpd.models.schemas`` (no remote
``$ref``, RE2 regexes). A schema is checked when its param is written;
one stored before that (or by an older drpd) may still be bad, so
:meth:`ParamChecker.problem` never raises: a schema that cannot be used is
the problem it reports, for that one value. Compiled validators are cached
per param and revision. Problems with the values of a Secure param never
quote the value.
"""

from __future__ import annotations

from typing import Any

from .models.schemas import InvalidSchema, compile_schema, first_problem
from .store import Store

_MISSING = object()


class ParamChecker:
    def __init__(self, store: Store) -> None:
        self.store = store
        #: param name -> (revision, validator or the reason its schema is unusable)
        self._cache: dict[str, tuple[int, Any]] = {}

    def _validator(self, name: str) -> Any | None:
        """The compiled schema of param ``name``; None: nothing to check; a str:
        why the stored schema cannot be used."""
        record = self.store.get("params", name)
        if record is None or not record.obj.Schema:
            return None
        cached = self._cache.get(name)
        if cached is not None and cached[0] == record.rev:
            return cached[1]
        try:
            validator: Any = compile_schema(record.obj.Schema)
        except InvalidSchema as exc:
            validator = f"param {name} has an unusable Schema: {exc}"
        self._cache[name] = (record.rev, validator)
        return validator

    def is_secure(self, name: str) -> bool:
        record = self.store.get("params", name)
        return record is not None and bool(record.obj.Secure)

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is not a valid value of param ``name``, or None. Never raises."""
        try:
            validator = self._validator(name)
            if validator is None:
                return None
            if isinstance(validator, str):
                return validator
            problem = first_problem(validator, value, secret=self.is_secure(name))
        except Exception as exc:  # a checker bug must stay this value's problem
            return f"param {name}: cannot be checked ({type(exc).__name__})"
        return None if problem is None else f"param {name}: {problem}"

    def default(self, name: str) -> Any:
        """The schema default of param ``name``, or ``_MISSING``."""
        record = self.store.get("params", name)
        if record is None or not isinstance(record.obj.Schema, dict):
            return _MISSING
        return record.obj.Schema.get("default", _MISSING)


MISSING = _MISSING
