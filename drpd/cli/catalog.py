"""The catalog, in DRP's words and in drpd's older ones.

    drpcli catalog show                               (the whole catalog)
    drpcli catalog items                              ({name: {Type, Versions}})
    drpcli catalog item show <name>                   ({Type, Versions} and drpd's details)
    drpcli catalog item install <name> [--version <v>]
    drpcli catalog item download <name> [to <file>] [--version <v>]
    drpcli catalog items list                         (drpd: every item, a list)
    drpcli catalog install <name> [--version <v>]     (drpd: = item install)
    drpcli catalog updateLocal [--version <min>|stable] [--tip]   (mirror into the file space)

The catalog comes from the global ``-c``/``--catalog`` flag, else
``RS_CATALOG``, else drpd's ``catalog_url``, else the one shipped inside the
package (:func:`drpd.catalog.catalog_location`).

As DRP's drpcli does, drpcli reads the catalog and does the install itself
(:mod:`drpd.catalog` has the rules: where the catalog is, versions,
sources, digests). The flags may come anywhere after the command word, as
``--flag value`` or ``--flag=value``; ``-c`` is ``--catalog``.

``install`` takes the newest stable version (or ``--version``), downloads
it -- with a progress bar on stderr when stderr is a terminal, none when it
is piped -- checks its SHA-256 against the catalog (a mismatch installs
nothing and names both digests), then installs a ``PluginProvider``
through ``POST /plugin_providers/<Name>`` (drpd defines and validates it;
an AutoStart provider gets its instance) or a ``ContentPackage`` through
``POST /contents``, or ``PUT /contents/<name>`` when drpd has it already.
It prints what drpd stored.
"""

from __future__ import annotations

import tempfile
from typing import Any

import msgspec

from ..catalog import (
    CONTENT_TYPES,
    Catalog,
    CatalogError,
    CatalogItem,
    Progress,
    catalog_location,
    expected_digest,
    fetch,
    is_stable,
    parse_catalog,
    pick,
    read_catalog,
    sort_items,
    source_of,
    stable_version,
    version_key,
)
from ..client import ClientError
from .inputs import parse_text
from .output import Text
from .registry import NO_OUTPUT, Args, CliError, Context, UsageError, command, group

group("catalog", "installable providers and content from a catalog")

CATALOG_FLAG = "--catalog"
VERSION_FLAG = "--version"
_SHORT = {"-c": CATALOG_FLAG}


def parse_flags(words: list[str], allowed: tuple[str, ...], usage: str
                ) -> tuple[list[str], dict[str, str]]:
    """Take ``--flag value`` / ``--flag=value`` (flags in ``allowed``) out of
    ``words``; returns the other words and the flags' values."""
    rest: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=")
        name = _SHORT.get(name, name)
        if name.startswith("-") and len(name) > 1:
            if name not in allowed:
                raise UsageError(f"unknown flag {word!r} (flags: {', '.join(allowed)})", usage)
            if not eq:
                if i + 1 >= len(words):
                    raise UsageError(f"{name} needs a value", usage)
                value = words[i + 1]
                i += 1
            if not value:
                raise UsageError(f"{name} needs a value", usage)
            if name in flags and flags[name] != value:
                raise UsageError(f"{name} given twice", usage)
            flags[name] = value
        else:
            rest.append(word)
        i += 1
    return rest, flags


def load(ctx: Context, flag: str | None) -> Catalog:
    flag = flag or ctx.flag("catalog")

    def catalog_url() -> str:
        try:
            info = ctx.client.info() or {}
            return str(info.get("catalog_url") or info.get("CatalogUrl") or "")
        except ClientError as exc:
            raise CliError(f"{exc.line()} (asking drpd's /info for its CatalogUrl; "
                           f"give {CATALOG_FLAG} or RS_CATALOG to read a catalog without drpd)"
                           ) from None

    location, origin = catalog_location(flag, ctx.client.env, catalog_url)
    try:
        return read_catalog(location)
    except CatalogError as exc:
        raise CliError(f"{exc} (catalog from {origin})") from None


def _builtins(item: Any) -> dict[str, Any]:
    return msgspec.to_builtins(item)


@command("show", "[<flags>...]", "print the whole catalog", ("catalog",), raw=True)
def show_catalog(ctx: Context, a: Args) -> Any:
    rest, flags = parse_flags(a["flags"], (CATALOG_FLAG,), ctx.usage)
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}", ctx.usage)
    catalog = load(ctx, flags.get(CATALOG_FLAG))
    return {"meta": catalog.meta,
            "sections": {"catalog_items": {i.Id or f"{i.Name}-{i.Version}": _builtins(i)
                                           for i in catalog.items}}}


def _versions(items: list[Any]) -> list[str]:
    return sorted(i.Version for i in items)  # upstream sorts them as strings


@command("items", "[<flags>...]",
         "show the items of the catalog: {name: {Type, Versions}} "
         f"(`items list`: every item, as a list) ({CATALOG_FLAG} <url>)",
         ("catalog",), raw=True)
def items(ctx: Context, a: Args) -> Any:
    words = a["flags"]
    listing = words[:1] == ["list"]
    rest, flags = parse_flags(words[1:] if listing else words, (CATALOG_FLAG,), ctx.usage)
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}", ctx.usage)
    catalog = load(ctx, flags.get(CATALOG_FLAG))
    if listing:
        return [_builtins(i) for i in catalog.items]
    names: dict[str, list[Any]] = {}
    for item in catalog.items:
        names.setdefault(item.Name, []).append(item)
    return {name: {"Type": found[0].ContentType, "Versions": _versions(found)}
            for name, found in sorted(names.items())}


@command("item", "<action> <name> [<flags>...]",
         "show <name> | install <name> [--version v] | download <name> [to <file>] "
         "[--version v]", ("catalog",), raw=True)
def item(ctx: Context, a: Args) -> Any:
    action = a["action"]
    if action == "show":
        return item_show(ctx, a)
    if action == "install":
        return install(ctx, a)
    if action == "download":
        return item_download(ctx, a)
    raise UsageError(f"unknown item command {action!r} (show, install, download)", ctx.usage)


def item_show(ctx: Context, a: Args) -> Any:
    rest, flags = parse_flags([a["name"], *a["flags"]], (CATALOG_FLAG,), ctx.usage)
    if len(rest) != 1:
        raise UsageError("expected one <name>", ctx.usage)
    name = rest[0]
    catalog = load(ctx, flags.get(CATALOG_FLAG))
    found = catalog.named(name)
    if not found:
        pick(catalog, name)  # raises, naming what the catalog has
    return {
        "Type": found[0].ContentType,
        "Versions": _versions(found),
        "Name": name,
        "ContentType": found[0].ContentType,
        "Stable": stable_version(found),
        "Items": [_builtins(i) for i in found],
    }


def item_download(ctx: Context, a: Args) -> Any:
    from .inputs import atomic_write

    rest, flags = parse_flags([a["name"], *a["flags"]], (VERSION_FLAG, CATALOG_FLAG), ctx.usage)
    if len(rest) == 3 and rest[1] == "to":
        target = rest[2]
    elif len(rest) == 1:
        target = ""
    else:
        raise UsageError("expected <name> [to <file>]", ctx.usage)
    catalog = load(ctx, flags.get(CATALOG_FLAG))
    try:
        chosen = pick(catalog, rest[0], flags.get(VERSION_FLAG))
        info = ctx.client.info()
        arch, os_name = _arch_os(info)
        expected, key = expected_digest(chosen, arch, os_name)
        source = source_of(chosen, catalog, arch, os_name)
    except CatalogError as exc:
        raise CliError(str(exc)) from None
    if not target:
        target = chosen.Name + ("" if chosen.ContentType == "PluginProvider" else ".json")
    mode = 0o755 if chosen.ContentType == "PluginProvider" else None
    found: list[str] = []

    def write(out: Any) -> None:
        try:
            _, digest = fetch(source, out, Progress(f"{chosen.Name} {chosen.Version}"))
        except CatalogError as exc:
            raise CliError(f"{exc}; nothing written") from None
        if digest != expected:
            raise CliError(f"sha256 mismatch for {chosen.Name} {chosen.Version} ({key}) from "
                           f"{source}: expected {expected}, found {digest}; nothing written")
        found.append(digest)

    atomic_write(target, write, mode=mode)
    return {"Name": chosen.Name, "Version": chosen.Version, "Path": target, "Sha256": found[0]}


def _arch_os(info: Any) -> tuple[str, str]:
    """/info's arch and os, in DRP's lower_snake or drpd's older names."""
    info = info if isinstance(info, dict) else {}
    return (str(info.get("arch", info.get("Arch", ""))), str(info.get("os", info.get("Os", ""))))


@command(
    "install",
    "<name> [<flags>...]",
    f"download, check and install the newest stable version of <name> "
    f"({VERSION_FLAG} <v>, {CATALOG_FLAG} <url>)",
    ("catalog",),
    raw=True,
)
def install(ctx: Context, a: Args) -> Any:
    rest, flags = parse_flags([a["name"], *a["flags"]], (VERSION_FLAG, CATALOG_FLAG), ctx.usage)
    if len(rest) != 1:
        raise UsageError("expected one <name>", ctx.usage)
    catalog = load(ctx, flags.get(CATALOG_FLAG))
    try:
        item = pick(catalog, rest[0], flags.get(VERSION_FLAG))
        if item.ContentType not in CONTENT_TYPES:
            raise CatalogError(f"{item.Name} {item.Version} is a {item.ContentType!r}; "
                               f"drpcli installs {' and '.join(CONTENT_TYPES)} items")
        arch, os_name = _arch_os(ctx.client.info())
        expected, key = expected_digest(item, arch, os_name)
        source = source_of(item, catalog, arch, os_name)
    except CatalogError as exc:
        raise CliError(str(exc)) from None
    with tempfile.TemporaryFile(prefix="drpcli-catalog-") as tmp:
        try:
            size, found = fetch(source, tmp, Progress(f"{item.Name} {item.Version}"))
        except CatalogError as exc:
            raise CliError(f"{exc}; nothing installed") from None
        if found != expected:
            raise CliError(
                f"sha256 mismatch for {item.Name} {item.Version} ({key}) from {source}: "
                f"expected {expected}, found {found}; nothing installed"
            )
        tmp.seek(0)
        if item.ContentType == "PluginProvider":
            _, provider = ctx.client.upload_provider(item.Name, tmp)
            return provider
        return _install_content(ctx, tmp.read(), source)


def _install_content(ctx: Context, data: bytes, source: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{source} is not a content bundle (not UTF-8 text)") from None
    bundle = parse_text(text, source)
    meta = bundle.get("meta") if isinstance(bundle, dict) else None
    name = meta.get("Name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise CliError(f"{source} is not a content bundle with a meta.Name")
    if name in ctx.client.content_names():
        return ctx.client.replace_content(name, data)
    return ctx.client.create_content(data)


# -- catalog updateLocal -----------------------------------------------------

LOCAL_DIR = "rebar-catalog"
LOCAL_CATALOGS = f"{LOCAL_DIR}/rackn-catalog"


@command("updateLocal", "[<flags>...]",
         "mirror the catalog's items into drpd's file space (rebar-catalog/) with a local "
         "catalog that points at them (--version <min>|stable, --tip)", ("catalog",), raw=True)
def update_local(ctx: Context, a: Args) -> Any:
    """DRP's ``catalog updateLocal``: every selected item of the catalog not
    yet mirrored is downloaded, checked against its digest and stored in the
    file space under ``rebar-catalog/<Name>/<Version>/``; then
    ``rebar-catalog/rackn-catalog/<version>.json`` lists the mirrored items
    with Sources relative to it, so ``-c <static port>/files/rebar-catalog/
    rackn-catalog/<version>.json`` installs without the internet. Prints one
    ``Downloading <source> to store at <path>`` line per file, as upstream."""
    words = [w for w in a["flags"] if w != "--tip"]
    tip = len(words) != len(a["flags"])
    rest, flags = parse_flags(words, (VERSION_FLAG, CATALOG_FLAG), ctx.usage)
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}", ctx.usage)
    minimum = flags.get(VERSION_FLAG, "")
    floor = None
    if minimum and minimum != "stable":
        floor = version_key(minimum)
        if floor is None:
            raise UsageError(f"Invalid version: {minimum}", ctx.usage)
    source = load(ctx, flags.get(CATALOG_FLAG))
    local = _local_catalog(ctx)
    have = {(i.Name, i.Version) for i in local}
    lines: list[str] = []
    mirrored: list[CatalogItem] = []
    for item in source.items:
        is_tip = item.Version == "tip"
        if is_tip and not tip:
            continue
        if not is_tip and minimum == "stable" and not is_stable(item.Version):
            continue
        if not is_tip and floor is not None:
            key = version_key(item.Version)
            if key is None or key < floor:
                continue
        if (item.Name, item.Version) in have or item.ContentType not in CONTENT_TYPES:
            continue
        mirrored.append(_mirror(ctx, source, item, lines))
    catalog = sort_items([*local, *mirrored])
    body = msgspec.json.encode({
        "meta": {**source.meta, "Name": "rackn-catalog", "Version": "1.0.0",
                 "Description": "drpd's local mirror (drpcli catalog updateLocal)"},
        "sections": {"catalog_items": {i.Id: _builtins(i) for i in catalog}}})
    with tempfile.TemporaryFile() as tmp:
        tmp.write(body)
        tmp.seek(0)
        ctx.client.upload_file(f"{LOCAL_CATALOGS}/v1.0.0.json", tmp)
    return Text("".join(lines)) if lines else NO_OUTPUT


def _local_catalog(ctx: Context) -> list[CatalogItem]:
    """The items of the newest ``rebar-catalog/rackn-catalog/*.json`` (none yet: [])."""
    import io

    try:
        names = ctx.client.list_files(LOCAL_CATALOGS)
    except ClientError as exc:
        if exc.code == 404:
            return []
        raise
    found = [(version_key(n[:-5].lstrip("v")), n) for n in names if n.endswith(".json")]
    found = [(k, n) for k, n in found if k is not None]
    if not found:
        return []
    name = max(found)[1]
    buf = io.BytesIO()
    ctx.client.download_file(f"{LOCAL_CATALOGS}/{name}", buf)
    try:
        return parse_catalog(buf.getvalue(), location=f"files/{LOCAL_CATALOGS}/{name}",
                             base="").items
    except CatalogError as exc:
        raise CliError(str(exc)) from None


def _mirror(ctx: Context, catalog: Catalog, item: CatalogItem, lines: list[str]) -> CatalogItem:
    """Store every platform's file of ``item`` in the file space; the item
    as the local catalog lists it."""
    base = f"{LOCAL_DIR}/{item.Name}/{item.Version}"
    for key, expected in sorted(item.Shasum256.items()):
        arch, _, os_name = key.partition("/")
        os_name = os_name or "any"
        try:
            source = source_of(item, catalog, arch, os_name)
        except CatalogError as exc:
            raise CliError(str(exc)) from None
        if item.ContentType == "PluginProvider":
            dest = f"{base}/{arch}/{os_name}/{item.Name}"
        else:
            dest = f"{base}/{item.Name}.json"
        lines.append(f"Downloading {source} to store at {dest}\n")
        with tempfile.TemporaryFile(prefix="drpcli-catalog-") as tmp:
            try:
                _, found = fetch(source, tmp, Progress(f"{item.Name} {item.Version}"))
            except CatalogError as exc:
                raise CliError(f"{exc}; stopped") from None
            if found != expected.strip().lower():
                raise CliError(f"sha256 mismatch for {item.Name} {item.Version} ({key}) from "
                               f"{source}: expected {expected}, found {found}; stopped")
            tmp.seek(0)
            ctx.client.upload_file(dest, tmp)
    if item.ContentType == "PluginProvider":
        relative = f"../{item.Name}/{item.Version}/{{{{.ProvArch}}}}/{{{{.ProvOs}}}}/{item.Name}"
        if set(item.Shasum256) == {"any"}:
            relative = f"../{item.Name}/{item.Version}/any/any/{item.Name}"
    else:
        relative = f"../{item.Name}/{item.Version}/{item.Name}.json"
    return msgspec.structs.replace(item, Source=relative)
