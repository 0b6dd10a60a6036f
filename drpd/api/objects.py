"""One generic implementation of the REST surface of every object prefix.

Handlers decode and validate at the edge (``Kind.decode`` ignores unknown
fields as Go does and refuses wrong types), then hand the store a typed object. Every write goes
through ``Store.create`` / ``modify`` / ``delete``, so it is atomic, durable
and evented; read-only (content) objects are refused with 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

import msgspec
import trio
from quart import Blueprint, Response, current_app

from ..models import (
    BadRequest,
    Forbidden,
    Kind,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unprocessable,
    decode_as,
)
from ..models.depth import too_deep
from ..models.names import is_valid_param_name
from ..store import Record, public_view
from . import guard
from .context import ApiContext
from .current import g, request
from .kind_rules import PROFILES, aggregate_layers, rules_for
from .kind_rules import present_provider as _present_provider
from .patching import json_patch, merge_patch

bp = Blueprint("objects", __name__)
_encode = msgspec.json.Encoder().encode

#: fields the server owns: what a client sends for them is ignored (a Go
#: client sends them all back with every PUT)
_SERVER_FIELDS = ("Validated", "Available", "Errors", "ReadOnly", "Bundle", "Partial")


#: the ApiContext of the app serving this request, set first thing by
#: create_app's hook: handlers ask for it a dozen times per request, and a
#: context variable is read in far less time than quart's ``current_app``
CURRENT: ContextVar[ApiContext] = ContextVar("drpd_api_context")


def ctx() -> ApiContext:
    try:
        return CURRENT.get()
    except LookupError:  # outside a request's hooks (an app's own tests)
        return current_app.config["DRPD"]


def json_response(data: Any, status: int = 200, *, etag: str | None = None) -> Response:
    headers = {"ETag": etag} if etag else None
    return Response(_encode(data), status=status, content_type="application/json",
                    headers=headers)


def _check_declared_length(limit: int) -> None:
    """413 before a byte is read when the Content-Length is over ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limit}")


async def iter_body(limit: int) -> AsyncIterator[bytes]:
    """The request body in chunks, at most ``limit`` bytes, within the body timeout.

    Every handler reads its whole body: an unread body stalls a keep-alive
    connection (STACK-NOTES.md).
    """
    _check_declared_length(limit)
    size = 0
    deadline = trio.current_time() + ctx().settings.body_timeout
    body = aiter(request.body)
    while True:
        with trio.move_on_at(deadline) as scope:
            try:
                chunk = await anext(body)
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            raise RequestTimeout("request body not received in time")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        yield chunk


async def read_body() -> bytes:
    """The whole request body, as ``iter_body`` bounds it (one deadline for
    all of it, not a generator and a cancel scope per chunk: every write
    reads its body this way)."""
    limit = ctx().settings.max_body_size
    _check_declared_length(limit)
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(ctx().settings.body_timeout) as scope:
        async for chunk in request.body:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise RequestTimeout("request body not received in time")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def max_depth() -> int:
    return ctx().settings.max_json_depth


def parse_json(body: bytes) -> Any:
    """Any JSON value; malformed input (lone surrogates included) or nesting
    past ``max_json_depth`` is a 400."""
    return decode_as(Any, body, max_depth=max_depth())


async def read_json() -> Any:
    return parse_json(await read_body())


def kind_for(prefix: str) -> Kind:
    kind = ctx().store.kinds.get(prefix)
    if kind is None:
        raise NotFound(f"no such object type {prefix!r}", model=prefix)
    return kind


def decoding() -> bool:
    return request.args.get("decode", "").lower() in ("true", "1", "yes")


def show(kind: Kind, record: Record) -> dict[str, Any]:
    data = public_view(kind.prefix, record.obj)
    secure = ctx().secure
    if secure is not None and decoding() and isinstance(data.get("Params"), dict):
        guard.check_reveal(kind, kind.key_of(record.obj))
        data["Params"] = secure.reveal_params(data["Params"])
    hooks = ctx().hooks.get(kind.prefix)
    if hooks is not None:
        data = hooks.present(record, data)
    if isinstance(data, dict):
        rules_for(kind.prefix).present(ctx(), data, request.args)
    return data


def present_provider(data: dict[str, Any]) -> None:
    """A provider as DRP shows it (``kind_rules.present_provider``)."""
    _present_provider(ctx(), data, request.args)


def show_aggregated(kind: Kind, record: Record) -> dict[str, Any]:
    """``show`` with the Params the object effectively has (``?aggregate=true``)."""
    data = show(kind, record)
    if isinstance(data, dict):
        data["Params"] = aggregate(kind, record, "")
    return data


def resolve(kind: Kind, raw_key: str) -> Record:
    store = ctx().store
    record = store.get(kind.prefix, raw_key)
    if record is None and ":" in raw_key:
        from .queries import find_by_index  # Name:m1, Address:10.0.0.5, any index

        record = find_by_index(store, kind, raw_key)
    if record is None:
        raise NotFound(f"{kind.prefix} {raw_key} not found", model=kind.prefix, key=raw_key)
    return record


def if_match() -> int | None:
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise BadRequest(f"malformed If-Match header {value!r}") from None


def principal() -> str:
    return g.principal.name


def wants_wait() -> bool:
    return request.args.get("wait", "true").lower() not in ("false", "0", "no")


def finish(kind: Kind, old: Any | None, new: Any, hashed: dict[str, str] | None = None,
           *, depth_checked: bool = False) -> Any:
    """Validate a decoded object and carry over what the server owns.

    ``hashed`` maps a new password to its hash made beforehand off the loop
    (``prehash``); one not in it (a write that raced) is hashed here.
    ``depth_checked``: ``new`` is a body as decoded (``kind.decode`` checked
    its depth), not the result of a patch or merge, which is checked here.
    """
    if old is not None and getattr(old, "Locked", False) and getattr(new, "Locked", False):
        raise Forbidden(f"{kind.prefix} {kind.key_of(old)} is locked: unlock it first "
                        "(set Locked to false)", model=kind.prefix, key=kind.key_of(old))
    new = kind.prepare(new)
    if not depth_checked and too_deep(new, max_depth()):
        raise Unprocessable(f"the object would nest more than {max_depth()} levels deep",
                            model=kind.prefix, key=kind.key_of(new))
    for name in _SERVER_FIELDS:
        if hasattr(new, name):
            setattr(new, name, getattr(old, name) if old is not None else type(getattr(new, name))())
    if hasattr(new, "Validated"):
        new.Validated = True
        new.Available = True
    rules_for(kind.prefix).finish(ctx(), old, new, hashed or {})
    if kind.has_params:
        checker = ctx().params
        secure = ctx().secure
        for name, value in new.Params.items():
            if not is_valid_param_name(name):
                raise Unprocessable(f"invalid param name {name!r}", model=kind.prefix,
                                    key=kind.key_of(new))
            # DRP refuses an invalid value on every object, plugin instances included
            if checker is not None:
                problem = checker.problem(name, secure.reveal(value) if secure else value)
                if problem:
                    raise Unprocessable(problem, model=kind.prefix, key=kind.key_of(new))
        if secure is not None:
            new.Params = secure.seal_params(new.Params)
    guard.check_write(kind, old, new)  # on what would be stored, before it is
    hooks = ctx().hooks.get(kind.prefix)
    if hooks is not None:
        new = hooks.prepare(old, new)
    return new


def check_writable(kind: Kind, record: Record | None = None) -> None:
    if not kind.writable:
        raise MethodNotAllowed(f"{kind.prefix} cannot be written this way", model=kind.prefix)
    obj = record.obj if record is not None else None
    if obj is not None and (obj.get("ReadOnly") if isinstance(obj, dict)
                            else getattr(obj, "ReadOnly", False)):
        raise Forbidden(f"{kind.prefix} {kind.key_of(obj)} is read-only",
                        model=kind.prefix, key=kind.key_of(obj))


async def after_write(kind: Kind, action: str, old: Record | None, new: Record | None) -> None:
    await rules_for(kind.prefix).after_write(ctx(), old, new, principal())
    hooks = ctx().hooks.get(kind.prefix)
    if hooks is not None:
        await hooks.after_write(action, old, new, wants_wait())


# -- collection --------------------------------------------------------------
@bp.route("/api/v3/<prefix>", methods=["GET", "POST"])
async def collection(prefix: str) -> Response:
    kind = kind_for(prefix)
    if request.method == "POST":
        return await create(kind)
    await read_body()
    from .queries import list_headers, run_list

    records = ctx().store.list(prefix)
    if not guard.sees_all(kind):
        # a list shows what the principal may get, as DRP's does
        records = [r for r in records if guard.visible(kind, kind.key_of(r.obj))]
    result = run_list(kind, records,
                      show_aggregated if kind.has_params and aggregating() else show,
                      request.args)
    response = json_response(result.items)
    response.headers.update(list_headers(result))
    return response


async def prehash(kind: Kind, *passwords: Any) -> dict[str, str]:
    """Hash the new passwords of a users write in a worker thread, before the
    store's lock is taken (scrypt on the loop would stall every request)."""
    if not rules_for(kind.prefix).hashes_passwords:
        return {}
    return {pw: await ctx().auth.hash_password(pw)
            for pw in passwords if isinstance(pw, str) and pw}


def patch_view(kind: Kind, obj: Any) -> Any:
    """What a patch applies to: the object as shown, so a hidden field
    (a password hash, a token secret) can be neither tested, copied nor
    quoted in an error."""
    return public_view(kind.prefix, obj)


async def create(kind: Kind) -> Response:
    check_writable(kind)
    decoded = kind.decode(await read_body(), max_depth=max_depth())
    hashed = await prehash(kind, getattr(decoded, "Password", ""))
    obj = finish(kind, None, decoded, hashed, depth_checked=True)
    record = await ctx().store.create(kind.prefix, obj, principal=principal())
    await after_write(kind, "create", None, record)
    record = ctx().store.get(kind.prefix, kind.key_of(obj)) or record
    return json_response(show(kind, record), 201, etag=record.etag)


# -- one object and its sub-resources ----------------------------------------
@bp.route("/api/v3/<prefix>/<path:rest>",
          methods=["GET", "PUT", "PATCH", "DELETE", "POST"])
async def item(prefix: str, rest: str) -> Response:
    kind = kind_for(prefix)
    if kind.param_key:
        key, sub = unquote(rest), []
    else:
        # split before decoding: a key holding an encoded "/" stays one key
        key, *sub = (unquote(segment) for segment in rest.split("/"))
    if sub:
        handler = ctx().extras.get((prefix, sub[0])) or ctx().extras.get(("*", sub[0]))
        if sub[0] == "params" and kind.has_params:
            return await params(kind, key, "/".join(sub[1:]))
        if handler is not None:
            return await handler(kind, key, sub[1:])
        await read_body()
        raise NotFound(f"{prefix}/{key} has no {sub[0]!r}", model=prefix, key=key)
    method = request.method
    if method in ("GET", "HEAD"):
        await read_body()
        record = resolve(kind, key)
        from .queries import shape_one  # ?slim=Params,Meta&params=a,b

        data = (show_aggregated if kind.has_params and aggregating() else show)(kind, record)
        return json_response(shape_one(data, prefix, request.args), etag=record.etag)
    if method == "POST":
        await read_body()
        raise MethodNotAllowed(f"POST a new object to /api/v3/{prefix}", model=prefix)
    if method == "DELETE":
        await read_body()
        record = resolve(kind, key)
        check_writable(kind, record)
        if getattr(record.obj, "Locked", False):
            raise Forbidden(f"{prefix} {key} is locked: unlock it before deleting it",
                            model=prefix, key=key)
        rules_for(kind.prefix).check_delete(ctx(), kind.key_of(record.obj))
        deleted = await ctx().store.delete(prefix, kind.key_of(record.obj),
                                           principal=principal(), if_rev=if_match())
        await after_write(kind, "delete", deleted, None)
        return json_response(show(kind, deleted), etag=deleted.etag)
    if method == "PUT":
        body = await read_body()
        record = resolve(kind, key)
        check_writable(kind, record)
        new = kind.decode(body, max_depth=max_depth())
        real_key = kind.key_of(record.obj)
        rules_for(kind.prefix).fill_put(new, real_key)
        put_hashed = await prehash(kind, getattr(new, "Password", ""))
        return await replace(kind, record,
                             lambda old: finish(kind, old, new, put_hashed, depth_checked=True),
                             action="save")
    if method != "PATCH":
        await read_body()
        raise MethodNotAllowed(f"{method} is not allowed here", model=prefix)
    body = await read_body()
    record = resolve(kind, key)
    check_writable(kind, record)
    patch = parse_json(body)
    merge = request.mimetype == "application/merge-patch+json" or isinstance(patch, dict)

    def apply(old: Any) -> Any:
        current = patch_view(kind, old)
        return (merge_patch(current, patch) if merge
                else json_patch(current, patch, max_size=ctx().settings.max_body_size))

    hashed: dict[str, str] = {}
    if rules_for(kind.prefix).hashes_passwords:
        try:
            preview = apply(record.obj)
        except Exception:  # noqa: BLE001 - the real write below raises it again
            preview = None
        if isinstance(preview, dict):
            hashed = await prehash(kind, preview.get("Password"))

    def mutate(old: Any) -> Any:
        return finish(kind, old, kind.convert(apply(old)), hashed)

    return await replace(kind, record, mutate)


async def replace(kind: Kind, record: Record, mutate: Any, *, action: str = "update") -> Response:
    """Write a changed object; its event says ``save`` for a PUT, as DRP's does."""
    key = kind.key_of(record.obj)
    old = record
    new = await ctx().store.modify(kind.prefix, key, mutate, principal=principal(),
                                   if_rev=if_match(), action=action)
    await after_write(kind, "update", old, new)
    new = ctx().store.get(kind.prefix, key) or new
    return json_response(show(kind, new), etag=new.etag)


async def params(kind: Kind, key: str, name: str) -> Response:
    method = request.method
    body = await read_body()
    record = resolve(kind, key)
    if method in ("GET", "HEAD"):
        if aggregating():
            return json_response(aggregate(kind, record, name))
        values = show(kind, record).get("Params", {})
        if not name:
            return json_response(values)
        return json_response(values.get(name))  # not set: null, as DRP (Go SDK relies on it)
    check_writable(kind, record)
    if name and not is_valid_param_name(name):
        raise Unprocessable(f"invalid param name {name!r}", model=kind.prefix, key=key)
    if method in ("POST", "PUT"):
        value = parse_json(body)
        if not name:
            if not isinstance(value, dict):
                raise BadRequest("params must be a JSON object")

        def mutate(old: Any) -> Any:
            new = msgspec.structs.replace(old, Params=dict(old.Params))
            if name:
                new.Params[name] = value
            else:
                new.Params = value
            return finish(kind, old, new)

        await _param_write(kind, record, mutate)
        return json_response(value)
    if method == "DELETE":
        if not name or name not in record.obj.Params:
            raise NotFound(f"{kind.prefix} {key} has no param {name!r}", model=kind.prefix, key=key)
        removed = record.obj.Params[name]

        def drop(old: Any) -> Any:
            new = msgspec.structs.replace(old, Params=dict(old.Params))
            new.Params.pop(name, None)
            return finish(kind, old, new)

        await _param_write(kind, record, drop)
        return json_response(removed)
    raise MethodNotAllowed(f"{method} is not allowed on params", model=kind.prefix, key=key)


def aggregating() -> bool:
    return request.args.get("aggregate", "").lower() in ("true", "1", "yes")


def aggregate(kind: Kind, record: Record, name: str) -> Any:
    """The params an object effectively has (``?aggregate=true``, as DRP).

    Its own, else its profiles' in order, else the ``global`` profile's, else
    the param's schema default (one param) — all of them merged when no
    ``name`` is given.
    """
    profiles = kind_for(PROFILES)
    layers = [show(kind, record).get("Params") or {}]
    for found in aggregate_layers(ctx(), kind.prefix, record.obj):
        layers.append(show(profiles, found).get("Params") or {})
    if not name:
        merged: dict[str, Any] = {}
        for layer in reversed(layers):
            merged.update(layer)
        return merged
    for layer in layers:
        if name in layer:
            return layer[name]
    checker = ctx().params
    if checker is not None:
        from ..params import MISSING

        default = checker.default(name)
        if default is not MISSING:
            return default
    return None


async def _param_write(kind: Kind, record: Record, mutate: Any) -> None:
    key = kind.key_of(record.obj)
    new = await ctx().store.modify(kind.prefix, key, mutate, principal=principal(),
                                   if_rev=if_match())
    await after_write(kind, "update", record, new)
