"""Unpacking an uploaded archive into the file space (DRP's ``?explode=true``).

``drpcli files upload my.tgz as isos/my.tgz --explode`` stores the archive,
then unpacks it into ``isos/``, paths inside the archive kept. Formats: tar
(plain, gzip, bzip2, xz) and zip.

An archive is hostile input, so everything is checked before anything is
written: only regular files and directories (no links, devices, FIFOs); no
absolute path, ``..`` segment or segment starting with ``.`` (drpd's own
temporaries are dot-names); at most :data:`MAX_MEMBERS` entries and
``limit`` bytes unpacked in all, counted as they are written, so a member
that lies about its size cannot fill the disk. Each file is written to a
temporary file and renamed into place; directories in the way of a file
(or the reverse) refuse the whole archive before anything is written. Runs
in a worker thread.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MAX_MEMBERS = 10_000
CHUNK = 1 << 16


class ExplodeError(ValueError):
    """The archive is refused; nothing (more) is written."""


@dataclass(frozen=True)
class _Member:
    name: str
    directory: bool
    size: int
    mode: int


def _clean(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or not parts:
        raise ExplodeError(f"archive member {name!r} is not a relative path")
    for part in parts:
        if part == ".." or part.startswith(".") or any(ord(c) < 32 for c in part):
            raise ExplodeError(f"archive member {name!r} has a refused path segment {part!r}")
    return "/".join(parts)


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[_Member, tarfile.TarInfo]]:
    for info in archive:
        if info.isdir():
            yield _Member(_clean(info.name), True, 0, 0o755), info
        elif info.isreg():
            yield _Member(_clean(info.name), False, info.size, info.mode & 0o755), info
        else:
            raise ExplodeError(f"archive member {info.name!r} is not a regular file or a "
                               "directory (links and devices are refused)")


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[_Member, zipfile.ZipInfo]]:
    for info in archive.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise ExplodeError(f"archive member {info.filename!r} is not a regular file or "
                               "a directory (links and devices are refused)")
        mode = (info.external_attr >> 16) & 0o755 or 0o644
        yield _Member(_clean(info.filename), info.is_dir(), info.file_size, mode), info


def explode(archive_path: Path, dest: Path, root: Path, limit: int) -> list[str]:
    """Unpack ``archive_path`` into directory ``dest`` (inside ``root``);
    returns the unpacked files' paths relative to ``root``."""
    try:
        return _explode(archive_path, dest, root, limit)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ExplodeError(f"the archive is damaged: {exc}") from None


def _explode(archive_path: Path, dest: Path, root: Path, limit: int) -> list[str]:
    with open(archive_path, "rb") as fh:
        if zipfile.is_zipfile(fh):
            fh.seek(0)
            with zipfile.ZipFile(fh) as z:
                members = list(_bounded(_zip_members(z)))
                _check(members, dest, root, limit)
                return _write(members, dest, root, limit, lambda info: z.open(info))
        fh.seek(0)
        try:
            t = tarfile.open(fileobj=fh, mode="r:*")
        except tarfile.TarError:
            raise ExplodeError("the file is not a tar or zip archive") from None
        with t:
            try:
                members = list(_bounded(_tar_members(t)))
            except tarfile.TarError as exc:
                raise ExplodeError(f"the archive is damaged: {exc}") from None
            _check(members, dest, root, limit)

            def open_member(info: tarfile.TarInfo) -> IO[bytes]:
                f = t.extractfile(info)
                if f is None:
                    raise ExplodeError(f"archive member {info.name!r} cannot be read")
                return f

            return _write(members, dest, root, limit, open_member)


def _bounded(members: Iterator[tuple[_Member, object]]) -> Iterator[tuple[_Member, object]]:
    for count, item in enumerate(members, 1):
        if count > MAX_MEMBERS:
            raise ExplodeError(f"the archive has more than {MAX_MEMBERS} entries")
        yield item


def _check(members: list[tuple[_Member, object]], dest: Path, root: Path, limit: int) -> None:
    declared = sum(m.size for m, _ in members)
    if declared > limit:
        raise ExplodeError(f"the archive unpacks to {declared} bytes, over the limit of {limit}")
    dirs = {m.name for m, _ in members if m.directory}
    files = {m.name for m, _ in members if not m.directory}
    for name in files:
        parents = name.split("/")[:-1]
        if name in dirs or any("/".join(parents[:i]) in files for i in range(1, len(parents) + 1)):
            raise ExplodeError(f"archive member {name!r} is both a file and a directory")
        target = dest / name
        existing = target
        while not existing.exists() and existing != dest:
            existing = existing.parent
        if existing.exists() and not _inside(root, existing.resolve()):
            raise ExplodeError(f"archive member {name!r} leads out of the file space "
                               "through a symlink")
        if target.is_dir() and not target.is_symlink():
            raise ExplodeError(f"archive member {name!r}: a directory is in the way")
        for parent in Path(name).parents:
            if str(parent) != "." and (dest / parent).is_file():
                raise ExplodeError(f"archive member {name!r}: a file is in the way of "
                                   f"directory {parent}")


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def _write(members: list[tuple[_Member, object]], dest: Path, root: Path, limit: int,
           open_member: object) -> list[str]:
    written: list[str] = []
    total = 0
    for member, info in members:
        target = dest / member.name
        if member.directory:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(root, target.parent.resolve()):
            raise ExplodeError(f"archive member {member.name!r} leads out of the file space")
        fd, tmp = tempfile.mkstemp(prefix=".unpack-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, open_member(info) as src:  # type: ignore[operator]
                while chunk := src.read(CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise ExplodeError(f"the archive unpacks to more than {limit} bytes")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o755 if member.mode & 0o111 else 0o644)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        written.append(str(target.relative_to(root)))
    return written
