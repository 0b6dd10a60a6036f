"""The catalog as drpd sees it, for clients that cannot read it themselves.

drpcli reads the catalog and installs from it on its own (API.md "Catalog").
A browser cannot: the shipped catalog's Sources are files inside the Python
package, and a catalog URL elsewhere is usually not readable cross-origin.
So the web page (issue 18) asks drpd:

- ``GET /api/v3/catalog`` answers ``{Location, Items}`` for drpd's own
  catalog (the ``catalog_url`` setting, else the shipped one), items newest
  first;
- ``POST /api/v3/catalog/<name>/install[?version=v]`` installs that provider
  exactly as ``drpcli catalog install`` would: newest stable version unless
  one is named, the file's SHA-256 checked against the item's ``Shasum256``
  before anything is installed, then the same path as a provider upload.

Only drpd's configured catalog is read, never a location from the request,
so these routes cannot be aimed at other hosts. Reading and fetching run in
a worker thread (blocking httpx / file I/O), bounded by the catalog
module's timeouts and by ``max_upload_size``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO, Any

import msgspec
import trio
from quart import Blueprint, Response, request

from .. import catalog
from ..models import BadGateway, GatewayTimeout, PayloadTooLarge, Unprocessable
from ..models.names import is_valid_provider_name
from .objects import ctx, json_response, read_body
from .system import info

bp = Blueprint("catalog", __name__)

CHUNK = 256 * 1024
#: a download that trickles is given up after this long in all (seconds):
#: the worker thread cannot be cancelled, so it bounds itself
FETCH_DEADLINE = 600.0


def _location() -> str:
    return ctx().settings.catalog_url or str(catalog.shipped_catalog())


async def _read() -> catalog.Catalog:
    location = _location()
    try:
        return await trio.to_thread.run_sync(catalog.read_catalog, location)
    except catalog.CatalogError as exc:
        raise BadGateway(str(exc), model="catalog") from None


@bp.route("/api/v3/catalog", methods=["GET"])
async def list_catalog() -> Response:
    await read_body()
    cat = await _read()
    return json_response({"Location": cat.location,
                          "Items": [msgspec.to_builtins(i) for i in cat.items]})


class _Bounded:
    """A file wrapper that refuses to grow past ``limit`` bytes or to go on
    past ``deadline`` (``time.monotonic``)."""

    def __init__(self, out: IO[bytes], limit: int, deadline: float) -> None:
        self.out, self.limit, self.size, self.deadline = out, limit, 0, deadline

    def write(self, chunk: bytes) -> int:
        if time.monotonic() > self.deadline:
            raise GatewayTimeout(f"the catalog item did not arrive within {FETCH_DEADLINE:.0f} s",
                                 model="catalog")
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"the catalog item is over max_upload_size ({self.limit} bytes)",
                                  model="catalog")
        return self.out.write(chunk)


def _fetch_checked(cat: catalog.Catalog, item: catalog.CatalogItem, arch: str, os_name: str,
                   limit: int) -> IO[bytes]:
    """The item's file in a temporary file, its digest checked (worker thread)."""
    digest, _ = catalog.expected_digest(item, arch, os_name)
    source = catalog.source_of(item, cat, arch, os_name)
    out = tempfile.TemporaryFile()
    try:
        _, got = catalog.fetch(source, _Bounded(out, limit, time.monotonic() + FETCH_DEADLINE))  # type: ignore[arg-type]
        if got != digest:
            raise catalog.CatalogError(
                f"{item.Name} {item.Version}: SHA-256 {got} does not match the catalog's "
                f"{digest}; not installing it")
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise


async def _chunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await trio.to_thread.run_sync(f.read, CHUNK):
        yield chunk


@bp.route("/api/v3/catalog/<name>/install", methods=["POST"])
async def install(name: str) -> Response:
    await read_body()
    if not is_valid_provider_name(name):
        raise Unprocessable(f"invalid provider name {name!r}", model="catalog")
    cat = await _read()
    about = info()
    try:
        item = catalog.pick(cat, name, request.args.get("version") or None)
    except catalog.CatalogError as exc:
        raise Unprocessable(str(exc), model="catalog", key=name) from None
    if item.ContentType != "PluginProvider":
        raise Unprocessable(f"{name} is a {item.ContentType}: install it with "
                            "`drpcli catalog install`", model="catalog", key=name)
    c = ctx()
    try:
        f = await trio.to_thread.run_sync(_fetch_checked, cat, item, about.arch, about.os,
                                          c.settings.max_upload_size)
    except catalog.CatalogError as exc:
        raise BadGateway(str(exc), model="catalog", key=name) from None
    try:
        existed = c.plugin_side().has_provider(name)
        provider = await c.plugin_side().upload_provider(name, _chunks(f))
    finally:
        f.close()
    body: dict[str, Any] = msgspec.to_builtins(provider)
    return json_response(body, 200 if existed else 201)
