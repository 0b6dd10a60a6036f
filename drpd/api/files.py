"""The file space over the API: ``GET|POST|DELETE /api/v3/files/<path>``.

The file space is ``<state>/files``, the directory the static port serves
read-only at ``/files/<path>`` (``drpd/static.py``). Here it is managed:

* ``POST /files/<path>`` stores the body as ``<path>``, creating missing
  directories. The body is streamed to a temporary file in the target's
  directory and renamed over ``<path>`` once complete, so a reader (or the
  static port) sees the old file or the whole new one, never a part. At most
  ``max_file_size`` bytes (413 above it). Answers ``{Path, Size, Sha256}``,
  201 for a new file and 200 for a replaced one. ``?explode=true`` (DRP's)
  then unpacks the stored tar or zip archive into its directory
  (:mod:`drpd.explode`) and adds ``Exploded``, the unpacked files.
* ``POST /files/plugin_providers/<name>`` (exactly those two segments) is
  not a plain file: it installs the body as provider ``<name>`` through the
  same path as ``POST /plugin_providers/<name>`` (define, validate, atomic
  move, ``max_upload_size``) and answers the provider. Deeper paths under
  ``plugin_providers/<name>/`` are that provider's unpacked assets, plain
  files like any other.
* ``GET /files/<path>`` downloads a file. ``GET /files``, ``GET /files/``,
  ``GET /files/<dir>/`` and DRP's ``GET /files?path=<dir>`` list a
  directory: a sorted JSON list of names, directories with a trailing
  ``/``. A directory asked for as a file (no trailing ``/``) is a 404 that
  says so, so a download never saves a listing by mistake.
* ``DELETE /files/<path>`` removes a file (or a symlink) and answers
  ``{Path, Size}``; a directory only when it is empty (409 otherwise).

Which paths are refused, and how:

* 403 -- the path would leave the file space or touch what drpd keeps for
  itself: a ``..`` segment, an absolute path, a NUL or other control
  character, a segment starting with ``.`` (drpd's temporaries, such as
  ``.upload-*`` and ``.unpack-*``, live in the file space and are hidden
  from listings), or a symlink whose target is outside the file space.
* 404 -- no such file or directory.
* 409 -- the path's kind is in the way: storing a file where a directory
  is (or under a file), deleting a directory that is not empty.
* 413 -- the body is larger than ``max_file_size``.
* 507 -- the disk of the state directory is full (nothing was stored).
* 422 -- a file path ending in ``/`` (POST), a name the filesystem refuses.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response, request
from werkzeug.routing import BaseConverter

from ..models import (
    Conflict,
    DrpError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    Unprocessable,
)
from ..storage import insufficient_storage, is_no_space
from .errors import error_response
from .objects import ctx, iter_body, json_response, read_body

bp = Blueprint("files", __name__)

#: the one directory whose exact two-segment paths are provider installs
PROVIDERS_DIR = "plugin_providers"
_METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH"]
CHUNK = 256 * 1024


class _AnyPath(BaseConverter):
    """The rest of the path, *including* a leading ``/`` or ``//``.

    werkzeug's ``path`` converter refuses a leading slash and its default
    slash merging answers a redirect; this one keeps what was sent, so an
    absolute path reaches :func:`parse_path` and is refused as such.
    """

    regex = ".*"
    part_isolating = False


@bp.record_once
def _add_converter(state: Any) -> None:
    state.app.url_map.converters["anypath"] = _AnyPath


class FilePath(msgspec.Struct, frozen=True):
    """A checked path inside the file space."""

    segments: tuple[str, ...]
    #: the path was written with a trailing ``/`` (it names a directory)
    directory: bool

    @property
    def text(self) -> str:
        return "/".join(self.segments)


def parse_path(raw: str) -> FilePath:
    """Check a path from a URL (already percent-decoded); see the module docstring."""
    shown = raw if len(raw) <= 200 else raw[:197] + "..."
    if raw.startswith("/"):
        raise Forbidden(f"{shown!r} is absolute: file paths are relative to the file space",
                        model="files", key=shown)
    if any(ord(c) < 32 or c == "\x7f" for c in raw):
        raise Forbidden(f"{shown!r} holds a control character", model="files",
                        key=shown.replace("\0", "\\0"))
    segments = tuple(s for s in raw.split("/") if s)
    for segment in segments:
        if segment == "..":
            raise Forbidden(f"{shown!r} leaves the file space (..)", model="files", key=shown)
        if segment.startswith("."):
            raise Forbidden(f"{shown!r}: names starting with '.' are drpd's own temporaries",
                            model="files", key=shown)
    return FilePath(segments, raw.endswith("/") or not segments)


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def _real_root() -> Path:
    c = ctx()
    if c.files_dir is None:
        raise Unavailable("no file space is configured")
    return Path(c.files_dir).resolve()


def _check_target(root: Path, fp: FilePath) -> Path:
    """``root/<path>``, refused (403) when a symlink on the way leads out of ``root``.

    The final component itself is resolved too: reading through a link that
    points out of the file space is refused like any other escape.
    """
    path = root.joinpath(*fp.segments)
    if not _inside(root, path.resolve()):
        raise Forbidden(f"{fp.text!r} leads out of the file space through a symlink",
                        model="files", key=fp.text)
    return path


def _listing(directory: Path) -> list[str]:
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            names.append(entry.name + "/" if entry.is_dir() else entry.name)
    return sorted(names)


def _fs_error(exc: OSError, fp: FilePath) -> Exception:
    """The API error for a filesystem error on ``fp``."""
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"files/{fp.text} not found", model="files", key=fp.text)
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return Conflict(f"files/{fp.text}: a file is in the way of a directory on that path",
                        model="files", key=fp.text)
    if isinstance(exc, IsADirectoryError):
        return Conflict(f"files/{fp.text} is a directory", model="files", key=fp.text)
    if is_no_space(exc):
        return insufficient_storage(_real_root().parent, f"files/{fp.text}", model="files",
                                    key=fp.text)
    return Unprocessable(f"files/{fp.text}: {exc.strerror or exc}", model="files", key=fp.text)


# -- routes --------------------------------------------------------------------
@bp.route("/api/v3/files", methods=_METHODS)
@bp.route("/api/v3/files/<anypath:raw>", methods=_METHODS, merge_slashes=False)
async def files(raw: str = "") -> Response:
    try:
        return await _handle(raw)
    except DrpError as exc:
        # An unread body stalls a keep-alive connection (STACK-NOTES.md):
        # read the rest, or close the connection when it is too much.
        if exc.code in (408, 413) or await _discard():
            raise
        return error_response(exc.to_error(), {"Connection": "close"})


async def _discard() -> bool:
    """Read and drop what is left of the request body; False if it did not end
    within the body timeout and ``max_file_size`` bytes."""
    settings = ctx().settings
    size = 0
    with trio.move_on_after(settings.body_timeout):
        try:
            async for chunk in request.body:
                size += len(chunk)
                if size > settings.max_file_size:
                    return False
        except Exception:  # the body's own limit or timeout: give up on it
            return False
        return True
    return False


async def _handle(raw: str) -> Response:
    if not raw and "path" in request.args:  # DRP's drpcli lists with ?path=
        raw = request.args["path"].lstrip("/")
        raw = raw + "/" if raw and not raw.endswith("/") else raw
    fp = parse_path(raw)
    method = request.method
    if method == "POST":
        if len(fp.segments) == 2 and fp.segments[0] == PROVIDERS_DIR and not fp.directory:
            return await _install_provider(fp.segments[1])
        return await _store(fp)
    await read_body()
    if method in ("GET", "HEAD"):
        return await _get(fp)
    if method == "DELETE":
        return await _delete(fp)
    raise MethodNotAllowed(f"{method} is not allowed on files: use GET, POST or DELETE",
                           model="files", key=fp.text)


async def _get(fp: FilePath) -> Response:
    root = _real_root()
    path = await trio.to_thread.run_sync(_check_target, root, fp)

    def open_file() -> tuple[Any, int] | list[str]:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            if not fp.directory:
                raise NotFound(f"files/{fp.text} is a directory, not a file: list it as "
                               f"files/{fp.text}/", model="files", key=fp.text)
            return _listing(path)
        if fp.directory:
            raise NotFound(f"files/{fp.text}/ is not a directory", model="files", key=fp.text)
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"files/{fp.text} is not a regular file", model="files", key=fp.text)
        # open first, then size the open file: a replace meanwhile cannot make
        # the Content-Length disagree with the bytes sent
        f = open(path, "rb")  # noqa: SIM115 -- closed by the response body
        return f, os.fstat(f.fileno()).st_size

    try:
        opened = await trio.to_thread.run_sync(open_file)
    except OSError as exc:
        raise _fs_error(exc, fp) from None
    if isinstance(opened, list):
        return json_response(opened)
    f, size = opened
    if request.method == "HEAD":
        f.close()
        body: Any = b""
    else:
        body = _chunks(f)
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = Response(body, content_type=ctype)
    response.headers["Content-Length"] = str(size)
    return response


async def _chunks(f: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await trio.to_thread.run_sync(f.read, CHUNK):
            yield chunk
    finally:
        f.close()


async def _delete(fp: FilePath) -> Response:
    if not fp.segments:
        raise Forbidden("the root of the file space cannot be removed", model="files")
    root = _real_root()

    def remove() -> dict[str, Any]:
        path = root.joinpath(*fp.segments)
        # the entry itself may be a symlink (removing the link is harmless);
        # the directory holding it must not lead out of the file space
        if not _inside(root, path.parent.resolve()):
            raise Forbidden(f"{fp.text!r} leads out of the file space through a symlink",
                            model="files", key=fp.text)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno in (39, 66):  # ENOTEMPTY (Linux, BSD)
                    count = len(_listing(path))
                    hint = (f"; to remove provider {fp.segments[1]}, DELETE "
                            f"/plugin_providers/{fp.segments[1]}"
                            if len(fp.segments) == 2 and fp.segments[0] == PROVIDERS_DIR else "")
                    raise Conflict(f"directory files/{fp.text}/ is not empty "
                                   f"({count} entries){hint}", model="files",
                                   key=fp.text) from None
                raise
            return {"Path": fp.text + "/", "Size": 0}
        if fp.directory:
            raise NotFound(f"files/{fp.text}/ is not a directory", model="files", key=fp.text)
        os.unlink(path)
        return {"Path": fp.text, "Size": st.st_size}

    try:
        return json_response(await trio.to_thread.run_sync(remove))
    except OSError as exc:
        raise _fs_error(exc, fp) from None


async def _store(fp: FilePath) -> Response:
    if fp.directory:
        raise Unprocessable(f"files/{fp.text}/ names a directory: POST a file path, "
                            "without a trailing /", model="files", key=fp.text)
    limit = ctx().settings.max_file_size
    length = request.content_length
    if length is not None and length > limit:  # before any directory is made for it
        raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limit}")
    root = _real_root()

    def prepare() -> tuple[int, str, bool]:
        path = root.joinpath(*fp.segments)
        parent = path.parent
        # the deepest existing ancestor must stay inside: no writing through a link out
        existing = parent
        while not existing.exists() and existing != root:
            existing = existing.parent
        if not _inside(root, existing.resolve()):
            raise Forbidden(f"{fp.text!r} leads out of the file space through a symlink",
                            model="files", key=fp.text)
        parent.mkdir(parents=True, exist_ok=True)
        if not _inside(root, parent.resolve()):
            raise Forbidden(f"{fp.text!r} leads out of the file space through a symlink",
                            model="files", key=fp.text)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            existed = False
        else:
            if stat.S_ISDIR(st.st_mode):
                raise Conflict(f"files/{fp.text} is a directory", model="files", key=fp.text)
            existed = True
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=parent)
        return fd, tmp, existed

    try:
        fd, tmp, existed = await trio.to_thread.run_sync(prepare)
    except OSError as exc:
        raise _fs_error(exc, fp) from None
    digest = hashlib.sha256()
    size = 0
    try:
        async with trio.wrap_file(os.fdopen(fd, "wb")) as f:
            async for chunk in iter_body(limit):
                digest.update(chunk)
                size += len(chunk)
                await f.write(chunk)
            await f.flush()
            await trio.to_thread.run_sync(os.fsync, fd)
        await trio.to_thread.run_sync(os.chmod, tmp, 0o644)
        await trio.to_thread.run_sync(os.replace, tmp, root.joinpath(*fp.segments))
    except OSError as exc:
        raise _fs_error(exc, fp) from None
    finally:
        await trio.to_thread.run_sync(lambda: Path(tmp).unlink(missing_ok=True))
    answer: dict[str, Any] = {"Path": fp.text, "Size": size, "Sha256": digest.hexdigest()}
    if request.args.get("explode", "").lower() in ("true", "1", "yes"):
        answer["Exploded"] = await _explode(root, fp)
    return json_response(answer, 200 if existed else 201)


async def _explode(root: Path, fp: FilePath) -> list[str]:
    """DRP's ``?explode=true``: unpack the stored archive next to it."""
    from ..explode import ExplodeError, explode

    archive = root.joinpath(*fp.segments)
    limit = ctx().settings.max_file_size
    try:
        return await trio.to_thread.run_sync(explode, archive, archive.parent, root, limit)
    except ExplodeError as exc:
        raise Unprocessable(f"files/{fp.text}: cannot explode: {exc}", model="files",
                            key=fp.text) from None
    except OSError as exc:
        raise _fs_error(exc, fp) from None


async def _install_provider(name: str) -> Response:
    side = ctx().plugin_side()
    existed = side.has_provider(name)
    provider = await side.upload_provider(name, iter_body(ctx().settings.max_upload_size))
    return json_response(msgspec.to_builtins(provider), 200 if existed else 201)
