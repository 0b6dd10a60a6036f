"""JSON Schemas drpd accepts, compiled so that no schema and no value can hurt drpd.

Params' ``Schema`` and providers' ``StoreObjects`` schemas come from users and
providers; drpd validates values against them on its event loop. Stock
``jsonschema`` would let a schema crash, block or reach out of drpd, so
every schema goes through :func:`compile_schema`, which refuses:

- a ``$schema`` other than drafts 4, 6 and 7 (the drafts DRP's Go validator
  knows; without ``$schema``, draft 7, else draft 4: see ``_HYBRID``), or a
  ``$schema`` below the root;
- a schema that breaks its draft's meta-schema (``{"type": "nosuchtype"}``);
- a ``$ref`` that does not resolve inside the schema itself: nothing is ever
  fetched (no ``http://``, no ``file://``; the registry refuses retrieval),
  and a reference to a meta-schema is refused too;
- a regex (``pattern``, ``patternProperties``) that RE2 cannot compile.

Values are then checked with RE2 (linear time: ``^(a+)+$`` cannot
backtrack; it is also the regex dialect of DRP's Go validator) and with a
linear ``uniqueItems``. :func:`first_problem` never raises: whatever goes
wrong while checking a value becomes the problem it returns.

jsonschema and re2 are imported on first use, so the provider SDK (which
imports ``drpd.models``) stays light.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator, Sequence
from typing import Any

#: JSON Schema keywords whose value is a regex, or a map keyed by regexes
_REGEX_MAP_KEYWORDS = ("patternProperties",)


class InvalidSchema(ValueError):
    """A schema drpd refuses to store or use; the message says why."""


@functools.cache
def _re2() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False  # a refused pattern is our answer, not a log line
    options.max_mem = 1 << 20  # bounds the compiled program (and so the matching cost)
    return re2, options


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    re2, options = _re2()
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise InvalidSchema(f"regex {pattern!r} is not valid RE2 syntax: {reason}") from None


def _search(pattern: str, text: str) -> bool:
    return _compiled(pattern).search(text) is not None


# -- keywords that would use Python's backtracking re, or a quadratic check --------------
def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return {key for key in instance
            if key not in properties and not any(_search(p, key) for p in patterns)}


def _additional_properties(validator: Any, ap: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(ap, "object"):
        for extra in sorted(extras):
            yield from validator.descend(instance[extra], ap, path=extra)
    elif not ap and extras:
        names = ", ".join(repr(each) for each in sorted(extras))
        if "patternProperties" in schema:
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{names} do{'es' if len(extras) == 1 else ''} not match "
                                  f"any of the regexes: {patterns}")
        else:
            yield ValidationError(f"Additional properties are not allowed ({names} "
                                  f"{'was' if len(extras) == 1 else 'were'} unexpected)")


def _canonical(value: Any) -> Any:
    """A hashable form equal exactly when JSON Schema calls two values equal
    (``1 == 1.0``, ``true != 1``, key order does not matter)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, dict):
        return ("o", frozenset((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("a", tuple(_canonical(v) for v in value))
    if isinstance(value, (int, float)):
        return ("n", value)
    return ("s", value)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError("has non-unique elements")
            return
        seen.add(key)


#: keyword applications one check may make: this many, plus STEPS_PER_NODE for
#: each node (map, list, scalar) of the value. Each costs a few µs, so a check
#: stays linear in the value whatever the schema: a 3 KB schema whose
#: definitions each ``allOf`` the previous one twice asks for 2^40 of them, an
#: ``anyOf`` of 10,000 branches over 100,000 items for 10^9. Real schemas make
#: a few per node.
BASE_STEPS = 100_000
STEPS_PER_NODE = 10


class _Budget:
    __slots__ = ("left", "value", "grown")

    def __init__(self, value: Any) -> None:
        self.left = BASE_STEPS
        self.value = value
        self.grown = False

    def charge(self) -> None:
        self.left -= 1
        if self.left >= 0:
            return
        if not self.grown:  # counted only for checks that need more than the base
            self.grown = True
            self.left += STEPS_PER_NODE * _count_nodes(self.value)
            if self.left >= 0:
                return
        raise TooCostly


def _count_nodes(value: Any) -> int:
    count = 0
    level = [value]
    while level:
        count += len(level)
        below: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                below.extend(node.values())
            elif isinstance(node, list):
                below.extend(node)
        level = below
    return count


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "drpd_schema_budget", default=None)


class TooCostly(Exception):
    """A check that would make more keyword applications than its budget."""


def _counted(keyword: Any) -> Any:
    """``keyword`` charged one step of the running check's budget per application."""
    def counted(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        budget = _budget.get()
        if budget is not None:
            budget.charge()
        return keyword(validator, value, instance, schema)

    return counted


@functools.cache
def _drafts() -> dict[str, tuple[Any, Any]]:
    """``$schema`` URI (no fragment) -> (drpd's validator class, its specification)."""
    import jsonschema.validators
    import referencing.jsonschema

    out = {}
    for stock in (jsonschema.Draft4Validator, jsonschema.Draft6Validator,
                  jsonschema.Draft7Validator):
        keywords = {**stock.VALIDATORS,
                    "pattern": _pattern,
                    "patternProperties": _pattern_properties,
                    "additionalProperties": _additional_properties,
                    "uniqueItems": _unique_items}
        safe = jsonschema.validators.extend(
            stock, validators={k: _counted(v) for k, v in keywords.items()})
        uri = stock.META_SCHEMA["$schema"].rstrip("#")
        spec = referencing.jsonschema.specification_with(stock.META_SCHEMA["$schema"])
        out[uri] = (safe, spec)
        out[uri.replace("http://", "https://", 1)] = (safe, spec)
    return out


#: without ``$schema``, DRP's validator runs a hybrid of drafts 4 to 7; drpd uses
#: the first of these whose meta-schema the schema satisfies: draft 7 (which
#: knows the most keywords: ``const``, ``if``, ``"exclusiveMinimum": 0``), else
#: draft 4 (``"exclusiveMinimum": true``)
_HYBRID: tuple[str, ...] = ("http://json-schema.org/draft-07/schema", "http://json-schema.org/draft-04/schema")


def _refuse(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs-made __init__ the stub misses


@functools.cache
def _registry() -> Any:
    """A registry that holds nothing and fetches nothing."""
    import referencing

    return referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]  # attrs-made __init__


@functools.cache
def _meta_checker(uri: str) -> Any:
    """A validator of schemas of one draft: its meta-schema, checked with drpd's
    keywords (no ``$schema``/``id`` left in it, so nothing switches back to the
    stock classes) and RE2 for ``format: regex``."""
    import jsonschema

    cls, _ = _drafts()[uri]
    meta = {k: v for k, v in cls.META_SCHEMA.items() if k not in ("$schema", "id", "$id")}
    formats = jsonschema.FormatChecker(formats=())

    @formats.checks("regex", raises=InvalidSchema)
    def _is_re2(instance: object) -> bool:
        return not isinstance(instance, str) or _compiled(instance) is not None

    return cls(meta, format_checker=formats, registry=_registry())


def _nodes(value: Any) -> Iterator[Any]:
    """Every container of a JSON document (iteratively: depth is no concern here)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            yield node
            stack.extend(node)


def _check_refs_and_regexes(schema: dict[str, Any], spec: Any) -> None:
    from referencing.exceptions import Unresolvable

    inside = {id(node) for node in _nodes(schema)}
    root = spec.create_resource(schema)
    stack = [(_registry().resolver_with_root(root), root, True)]
    while stack:
        resolver, resource, is_root = stack.pop()
        node = resource.contents
        if not isinstance(node, dict):
            continue
        if not is_root and "$schema" in node:
            raise InvalidSchema("$schema is only allowed at the top of a schema")
        ref = node.get("$ref")
        if ref is not None:
            if not isinstance(ref, str):
                raise InvalidSchema(f"$ref must be a string, not {ref!r}")
            try:
                target = resolver.lookup(ref).contents
            except Unresolvable as exc:
                raise InvalidSchema(f"$ref {ref!r} does not resolve inside the schema "
                                    f"(drpd never fetches one): {exc}") from None
            if not isinstance(target, (dict, bool)) or (
                    isinstance(target, dict) and id(target) not in inside):
                raise InvalidSchema(f"$ref {ref!r} must point to a schema inside this schema")
        if isinstance(node.get("pattern"), str):
            _compiled(node["pattern"])
        for keyword in _REGEX_MAP_KEYWORDS:
            if isinstance(node.get(keyword), dict):
                for pattern in node[keyword]:
                    _compiled(pattern)
        for sub in resource.subresources():
            stack.append((resolver.in_subresource(sub), sub, False))


def compile_schema(schema: Any) -> Any:
    """A validator for ``schema``, or :class:`InvalidSchema` saying what is wrong.

    Never fetches anything; raises nothing but ``InvalidSchema``.
    """
    if not isinstance(schema, dict):
        raise InvalidSchema(f"a schema is a JSON object, not {type(schema).__name__}")
    try:
        if "$schema" in schema:
            draft = schema["$schema"]
            if not isinstance(draft, str) or draft.rstrip("#") not in _drafts():
                raise InvalidSchema(f"$schema {draft!r} is not supported: drpd (like DRP) "
                                    "knows JSON Schema drafts 4, 6 and 7")
            candidates: Sequence[str] = [draft.rstrip("#")]
        else:
            candidates = _HYBRID
        body = {k: v for k, v in schema.items() if k != "$schema"}
        first_error = None
        for uri in candidates:
            error = _first(_meta_checker(uri).iter_errors(body))
            if error is None:
                break
            first_error = first_error or error
        else:
            assert first_error is not None
            where = "/".join(str(p) for p in first_error.absolute_path)
            raise InvalidSchema(_shorten(f"{where + ': ' if where else ''}"
                                         f"{first_error.message}"))
        cls, spec = _drafts()[uri]
        _check_refs_and_regexes(body, spec)
        return cls(body, registry=_registry())
    except InvalidSchema:
        raise
    except RecursionError:
        raise InvalidSchema("the schema is nested too deeply") from None
    except Exception as exc:  # any other surprise of a hostile schema is a refusal
        raise InvalidSchema(f"cannot use the schema: {type(exc).__name__}: {exc}") from None


def _first(errors: Iterator[Any]) -> Any:
    import jsonschema.exceptions

    return jsonschema.exceptions.best_match(errors)


def first_problem(validator: Any, value: Any, *, secret: bool = False) -> str | None:
    """Why ``value`` fails ``validator`` (None: it passes). Never raises.

    With ``secret`` the message names the failing keyword and schema
    location only: neither the value nor a part of it (its keys included).
    """
    token = _budget.set(_Budget(value))
    try:
        error = _first(validator.iter_errors(value))
    except RecursionError:
        return "cannot check the value: its schema or the value is nested too deeply"
    except TooCostly:
        return (f"cannot check the value: its schema would take more than {BASE_STEPS} "
                f"+ {STEPS_PER_NODE} per value node steps for it")
    except Exception as exc:
        return f"cannot check the value against its schema: {type(exc).__name__}"
    finally:
        _budget.reset(token)
    if error is None:
        return None
    if secret:
        where = "/".join(str(p) for p in error.schema_path)
        return (f"the (secure, not shown) value fails {error.validator!r}"
                f"{' at schema ' + where if where else ''}")
    where = "/".join(str(p) for p in error.absolute_path)
    return _shorten(f"{where + ': ' if where else ''}{error.message}")


#: longest problem message: jsonschema quotes the failing value whole
MAX_MESSAGE = 400


def _shorten(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
