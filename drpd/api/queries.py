"""List queries as DRP answers them: filters, paging, sorting, slimming, indexes.

DRP's Go client and drpcli send list filters as query parameters::

    GET /machines?Name=Eq(m1)&Address=Re(^10\\.)&sort=Name&reverse=true&limit=10
    GET /machines?my-param=Eq(42)&slim=Params,Meta
    HEAD /machines?Stage=Ne(x)          -> X-DRP-LIST-* count headers, no body

An *index* is a field of the object that filters and sorts (DRP's
``models.Index``: Type, Unique, Unordered, Regex). drpd derives them from
the object's model: every string, number and boolean field, plus list-of-
string fields (unordered: membership only). A filter on a name that is not an
index is a *param filter* on prefixes with Params, and a 400 elsewhere.

Operators: ``Eq Ne Lt Lte Gt Gte`` (one value), ``Between Except`` (two,
``lo,hi``), ``In Nin`` (a comma list), ``Re`` (an RE2 regular expression:
google-re2 runs in linear time, so no pattern can stall the server; the
pattern is also bounded in length). A bare value (``?Name=m1``) is drpd's
older exact match and still works. Values are read as the index's type: a
number index compares numbers, ``Address`` compares IP addresses.

The same index table serves ``GET /indexes[/<prefix>[/<index>]]`` and the
``<index>:<value>`` key form (``/machines/Address:10.0.0.5``), which must
name exactly one object.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from quart import Blueprint, Response

from ..models import BadRequest, Conflict, Kind, NotFound
from ..store import Record

bp = Blueprint("queries", __name__)

#: query parameters that are not filters
CONTROL = frozenset({
    "offset", "limit", "decode", "wait", "token", "slim", "sort", "reverse", "params",
    "aggregate", "force", "commented", "reduced", "filter",
})
SLIMMABLE = ("Params", "Meta")
MAX_PATTERN = 1024
MAX_LIST_ITEMS = 1000

_OP = re.compile(r"^(Eq|Ne|Lt|Lte|Gt|Gte|Re|Between|Except|In|Nin)\((.*)\)$", re.DOTALL)
#: fields that hold IP addresses in DRP's models (compared as addresses)
_IP_FIELDS = frozenset({"Address"})


class Index(msgspec.Struct):
    """DRP's ``models.Index``."""

    Type: str
    Unique: bool = False
    Unordered: bool = False
    Regex: bool = False


@dataclass(frozen=True)
class _Field:
    name: str
    index: Index
    #: "str", "int", "float", "bool", "ip", "list", "any"
    kind: str


def _kind_of(tp: Any) -> str | None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _kind_of(args[0]) if len(args) == 1 else None
    if tp is str:
        return "str"
    if tp is bool:
        return "bool"
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    if origin is list and typing.get_args(tp) in ((str,),):
        return "list"
    return None


_TYPE_NAMES = {"str": "string", "bool": "boolean", "int": "number", "float": "number",
               "ip": "IP", "list": "string", "any": "string"}


def fields_of(kind: Kind) -> dict[str, _Field] | None:
    """The indexes of a kind; None when its objects are free-form maps
    (StoreObjects prefixes), where any field filters."""
    model = kind.model
    if not hasattr(model, "__struct_fields__"):
        return None
    cached = _CACHE.get(model)
    key_fields = {kind.key_field, *kind.unique}
    if cached is None:
        hints = typing.get_type_hints(model)
        cached = {}
        for name in model.__struct_fields__:
            if name in ("Password", "PasswordHash", "Secret", "Content"):
                continue
            k = _kind_of(hints.get(name))
            if k is None:
                continue
            if name in _IP_FIELDS and k == "str":
                k = "ip"
            cached[name] = _Field(name, Index(Type=_TYPE_NAMES[k], Unordered=k == "list",
                                              Regex=k in ("str", "ip", "list")), k)
        _CACHE[model] = cached
    return {n: _Field(n, msgspec.structs.replace(f.index, Unique=n in key_fields), f.kind)
            for n, f in cached.items()}


_CACHE: dict[Any, dict[str, _Field]] = {}


def indexes(kind: Kind) -> dict[str, Index]:
    found = fields_of(kind)
    if found is None:
        return {kind.key_field: Index(Type="string", Unique=True, Regex=True)}
    return {n: f.index for n, f in sorted(found.items())}


# -- values ------------------------------------------------------------------


def _ip(text: str) -> Any:
    try:
        return ipaddress.ip_address(text.split("/", 1)[0])
    except ValueError:
        return None


def _convert(kind: str, word: str, what: str) -> Any:
    """A filter word as the index's type (400 when it cannot be)."""
    if kind == "bool":
        low = word.lower()
        if low not in ("true", "false"):
            raise BadRequest(f"{what}: {word!r} is not true or false")
        return low == "true"
    if kind in ("int", "float"):
        try:
            return float(word)
        except ValueError:
            raise BadRequest(f"{what}: {word!r} is not a number") from None
    if kind == "ip":
        value = _ip(word)
        if value is None:
            raise BadRequest(f"{what}: {word!r} is not an IP address")
        return value
    if kind == "any":
        try:
            return json.loads(word)
        except ValueError:
            return word
    return word


def _stored(kind: str, value: Any) -> Any:
    """A stored value in the form :func:`_convert` gives (None: no value)."""
    if kind == "ip":
        return _ip(value) if isinstance(value, str) else None
    if kind in ("int", "float") and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _order_key(value: Any) -> tuple[int, Any]:
    """Sort values of mixed types without comparing across types."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return (4, (value.version, int(value)))
    return (5, json.dumps(value, sort_keys=True, default=str))


def _compile_re(pattern: str, what: str) -> Callable[[str], bool]:
    if len(pattern) > MAX_PATTERN:
        raise BadRequest(f"{what}: the pattern is longer than {MAX_PATTERN} characters")
    import re2  # linear time: a hostile pattern cannot stall the server

    options = re2.Options()
    options.log_errors = False  # a bad pattern is the client's 400, not a line on drpd's stderr
    try:
        rx = re2.compile(pattern, options=options)
    except re2.error as exc:
        raise BadRequest(f"{what}: bad regular expression: {exc}") from None
    return lambda text: rx.search(text) is not None


def _test(op: str, arg: str, kind: str, what: str) -> Callable[[Any], bool]:
    """A predicate on a stored value for ``op(arg)``."""
    if op == "Re":
        search = _compile_re(arg, what)

        def text(v: Any) -> str:
            return v if isinstance(v, str) else json.dumps(v)

        if kind == "list":
            return lambda v: isinstance(v, list) and any(search(text(x)) for x in v)
        return lambda v: v is not None and search(text(v))
    if op in ("In", "Nin"):
        if kind == "any":
            # a param filter: the comma list holds plain words
            wanted = [_convert("any", w, what) for w in arg.split(",")]
        else:
            wanted = [_convert("str" if kind == "list" else kind, w, what)
                      for w in arg.split(",")]
        if kind == "list":
            hit: Callable[[Any], bool] = lambda v: isinstance(v, list) and any(x in wanted for x in v)  # noqa: E731
        else:
            hit = lambda v: any(_equal(_stored(kind, v), w) for w in wanted)  # noqa: E731
        return hit if op == "In" else (lambda v: not hit(v))
    if op in ("Between", "Except"):
        lo_word, sep, hi_word = arg.partition(",")
        if not sep:
            raise BadRequest(f"{what}: {op} needs two values, lower,upper")
        if kind == "list":
            raise BadRequest(f"{what}: a list index is unordered and takes no {op}")
        lo, hi = _convert(kind, lo_word, what), _convert(kind, hi_word, what)

        def between(v: Any) -> bool:
            s = _stored(kind, v)
            if s is None:
                return False
            above, below = _cmp(s, lo), _cmp(s, hi)  # None: not comparable (mixed types)
            return above is not None and below is not None and above >= 0 and below <= 0

        return between if op == "Between" else (lambda v: _stored(kind, v) is not None
                                                 and not between(v))
    if kind == "list":
        if op not in ("Eq", "Ne"):
            raise BadRequest(f"{what}: a list index is unordered and takes no {op}")
        member = lambda v: isinstance(v, list) and arg in v  # noqa: E731
        return member if op == "Eq" else (lambda v: not member(v))
    want = _convert(kind, arg, what)
    if op == "Eq":
        return lambda v: _equal(_stored(kind, v), want)
    if op == "Ne":
        return lambda v: not _equal(_stored(kind, v), want)

    def ordered(v: Any) -> bool:
        s = _stored(kind, v)
        c = _cmp(s, want)
        if c is None:
            return False
        return {"Lt": c < 0, "Lte": c <= 0, "Gt": c > 0, "Gte": c >= 0}[op]

    return ordered


def _equal(stored: Any, want: Any) -> bool:
    if isinstance(stored, bool) != isinstance(want, bool):
        return False
    if stored == want:
        return True
    # a param filter word that is not JSON still matches a number's text
    return isinstance(want, str) and not isinstance(stored, str) and json.dumps(stored) == want


def _cmp(a: Any, b: Any) -> int | None:
    ka, kb = _order_key(a), _order_key(b)
    if ka[0] != kb[0] or a is None:
        return None
    return (ka > kb) - (ka < kb)


def _legacy(value: Any, wanted: str) -> bool:
    """drpd's older bare ``?Field=value``: exact text, or the value's JSON."""
    if isinstance(value, str):
        return value == wanted
    return json.dumps(value) == wanted or str(value).lower() == wanted.lower()


# -- the list ----------------------------------------------------------------


@dataclass
class ListResult:
    items: list[dict[str, Any]]
    total: int
    matched: int


def _int_arg(name: str, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw!r}") from None
    if value < 0:
        if value == -1:  # DRP's drpcli default: no limit / no offset
            return None
        raise BadRequest(f"{name} must not be negative")
    return value


def _truthy(raw: str | None) -> bool:
    return raw is not None and raw.lower() in ("", "true", "1", "yes")


def run_list(kind: Kind, records: list[Record], show: Callable[[Kind, Record], dict[str, Any]],
             args: Any) -> ListResult:
    """Filter, sort and page ``records`` by the query ``args`` (a multidict)."""
    prefix = kind.prefix
    known = fields_of(kind)
    offset = _int_arg("offset", args.get("offset")) or 0
    limit = _int_arg("limit", args.get("limit"))
    tests: list[tuple[Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = []
    for name, raw in args.items(multi=True):
        if name in CONTROL:
            continue
        what = f"filter {name}"
        field = known.get(name) if known is not None else None
        if known is not None and field is None:
            if not kind.has_params:
                raise BadRequest(f"{prefix} has no index {name!r} to filter on", model=prefix)
            getter = _param_getter(name)
            fkind = "any"
        else:
            getter = _field_getter(name)
            fkind = field.kind if field is not None else "any"
        m = _OP.match(raw)
        if m is None:
            tests.append((getter, functools.partial(_legacy, wanted=raw)))
        else:
            tests.append((getter, _test(m.group(1), m.group(2), fkind, what)))
    sort_by = args.get("sort")
    sort_kind = "any"
    if sort_by:
        if known is not None:
            if sort_by not in known:
                raise BadRequest(f"{prefix} has no index {sort_by!r} to sort on", model=prefix)
            sort_kind = known[sort_by].kind
            if sort_kind == "list":
                raise BadRequest(f"index {sort_by!r} is unordered", model=prefix)
    slim = _slim(args.get("slim"), prefix)
    if not tests and not sort_by:
        # a plain page: only its objects are shown (a page of 100 out of
        # 100,000 machines costs 100 objects, not 100,000)
        ordered = records[::-1] if _truthy(args.get("reverse")) else records
        page = ordered[offset:] if limit is None else ordered[offset: offset + limit]
        items = [show(kind, r) for r in page]
        for item in items:
            _shape(item, slim, args.get("params"))
        return ListResult(items, len(records), len(records))
    items = [show(kind, r) for r in records]
    total = len(items)
    items = [item for item in items if all(test(get(item)) for get, test in tests)]
    matched = len(items)
    if sort_by:
        getter = _field_getter(sort_by)
        items.sort(key=lambda item: _order_key(_stored(sort_kind, getter(item))))
    if _truthy(args.get("reverse")):
        items.reverse()
    items = items[offset:] if limit is None else items[offset: offset + limit]
    for item in items:
        _shape(item, slim, args.get("params"))
    return ListResult(items, total, matched)


def shape_one(item: dict[str, Any], prefix: str, args: Any) -> dict[str, Any]:
    """``slim`` and ``params`` on one shown object (``GET /<prefix>/<key>``)."""
    _shape(item, _slim(args.get("slim"), prefix), args.get("params"))
    return item


def _shape(item: dict[str, Any], slim: list[str], wanted_params: str | None) -> None:
    if wanted_params and isinstance(item.get("Params"), dict):
        names = {p.strip() for p in wanted_params.split(",") if p.strip()}
        item["Params"] = {k: v for k, v in item["Params"].items() if k in names}
    for name in slim:
        item.pop(name, None)


def _slim(raw: str | None, prefix: str) -> list[str]:
    if not raw:
        return []
    names = [n.strip() for n in raw.split(",") if n.strip()]
    bad = [n for n in names if n not in SLIMMABLE]
    if bad:
        raise BadRequest(f"slim takes {' and '.join(SLIMMABLE)}, not {bad[0]!r}", model=prefix)
    return names


def _field_getter(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda item: item.get(name)


def _param_getter(name: str) -> Callable[[dict[str, Any]], Any]:
    def get(item: dict[str, Any]) -> Any:
        params = item.get("Params")
        return params.get(name) if isinstance(params, dict) else None

    return get


def list_headers(result: ListResult) -> dict[str, str]:
    """The count headers DRP's client reads (``HEAD`` answers only these)."""
    return {
        "X-DRP-LIST-COUNT": str(len(result.items)),
        "X-DRP-LIST-TOTAL-COUNT": str(result.total),
        "X-DRP-LIST-FILTER-COUNT": str(result.matched),
    }


# -- keys given as <index>:<value> -------------------------------------------


def find_by_index(store: Any, kind: Kind, raw_key: str) -> Record | None:
    """``Name:m1`` / ``Address:10.0.0.5``: the one object whose index has that
    value; None when ``raw_key`` is not of that form or nothing matches; a
    409 when several objects match a non-unique index."""
    name, sep, value = raw_key.partition(":")
    if not sep or not name:
        return None
    known = fields_of(kind)
    if known is not None:
        field = known.get(name)
        if field is None or field.kind == "list":
            return None
        if field.index.Unique:
            if name == kind.key_field:
                return store.get(kind.prefix, value)
            return store.find(kind.prefix, name, value)
    else:
        field = _Field(name, Index(Type="string"), "str")
    want = _convert(field.kind, value, f"key {raw_key}") if field.kind != "str" else value
    found: list[Record] = []
    for record in store.list(kind.prefix):
        obj = record.obj
        current = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if _equal(_stored(field.kind, current), want):
            found.append(record)
            if len(found) > 1:
                raise Conflict(f"{kind.prefix} {raw_key} names more than one object",
                               model=kind.prefix, key=raw_key)
    return found[0] if found else None


# -- GET /indexes ------------------------------------------------------------


def _ctx() -> Any:
    from .objects import ctx

    return ctx()


def _kinds() -> dict[str, Kind]:
    return _ctx().store.kinds


def _json(data: Any) -> Response:
    return Response(msgspec.json.encode(data), content_type="application/json")


@bp.route("/api/v3/indexes", methods=["GET"])
async def all_indexes() -> Response:
    from .objects import read_body

    await read_body()
    return _json({prefix: indexes(kind) for prefix, kind in sorted(_kinds().items())})


@bp.route("/api/v3/indexes/<prefix>", methods=["GET"])
@bp.route("/api/v3/indexes/<prefix>/<name>", methods=["GET"])
async def prefix_indexes(prefix: str, name: str | None = None) -> Response:
    from .objects import read_body

    await read_body()
    kind = _kinds().get(prefix)
    if kind is None:
        raise NotFound(f"no such object type {prefix!r}", model=prefix)
    found = indexes(kind)
    if name is None:
        return _json(found)
    if name not in found:
        raise NotFound(f"{prefix} has no index {name!r}", model=prefix, key=name)
    return _json(found[name])
