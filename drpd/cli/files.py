"""The file space: ``drpcli files upload|download|list|destroy``.

    drpcli files upload <local> [as <path>] [--explode]  (default path: the file's basename)
    drpcli files download <path> [to <local>]    (no `to`, or `to -`: stdout)
    drpcli files list [<path>]
    drpcli files destroy <path>

Paths are relative to drpd's file space (``<state>/files``, served read-only
by the static port at ``/files/<path>``). ``upload`` streams the file and
prints ``{Path, Size, Sha256}``; uploading ``as plugin_providers/<name>``
installs the file as provider ``<name>`` and prints the provider (drpd
checks it as ``plugin_providers upload`` does). ``--explode`` asks drpd to
unpack the uploaded tar or zip archive into the directory it was stored in
(DRP's ``?explode=true``). Transfers over a few MiB draw a progress bar on
stderr when it is a terminal. ``download`` to a file
writes a temporary file next to the target and renames it into place once
complete, so the target is never a partial file; a target that is a
directory gets the path's basename inside it. ``destroy`` removes a file, or
an empty directory, and prints what was removed.
"""

from __future__ import annotations

import os
import posixpath
import sys
from typing import IO, Any

from .inputs import atomic_write, open_for_upload, progress_for, with_progress
from .output import Text
from .registry import NO_OUTPUT, Args, Context, UsageError, command, group

group("files", "the file space the static port serves")


@command(
    "upload",
    "<local> [as <path>]",
    "store a local file in the file space (streamed); "
    "as plugin_providers/<name> installs it as provider <name>; "
    "--explode unpacks a tar or zip archive where it is stored",
    ("files",),
    flags={"explode": False},
)
def upload(ctx: Context, a: Args) -> Any:
    local = a["local"]
    path = a["path"] if a["path"] is not None else os.path.basename(local.rstrip("/"))
    if not path or path in (".", ".."):
        raise UsageError(f"cannot name a file after {local!r}; use: upload <local> as <path>",
                         ctx.usage)
    with open_for_upload(local) as fh:
        _, answer = ctx.client.upload_file(path, with_progress(fh, path),
                                           explode=bool(a.get("--explode")))
    return answer


@command(
    "download",
    "<path> [to <local>]",
    "save a file of the file space (atomically); no `to`, or `to -`, writes it to stdout",
    ("files",),
)
def download(ctx: Context, a: Args) -> Any:
    path, target = a["path"], a["local"]
    if not path:
        raise UsageError("empty <path>", ctx.usage)
    if target is None or target == "-":
        out = _binary_stdout(ctx.stdout)
        ctx.client.download_file(path, out, lambda size: progress_for(path, size))
        out.flush()
        return NO_OUTPUT
    if not target:
        raise UsageError("empty <local>", ctx.usage)
    if os.path.isdir(target):
        name = posixpath.basename(path.rstrip("/"))
        if not name:
            raise UsageError(f"cannot name a local file after {path!r}", ctx.usage)
        target = os.path.join(target, name)
    atomic_write(target, lambda out: ctx.client.download_file(
        path, out, lambda size: progress_for(path, size)))
    return NO_OUTPUT


@command("list", "[<path>]", "list a directory of the file space (directories end in /)",
         ("files",))
def list_files(ctx: Context, a: Args) -> Any:
    return ctx.client.list_files(a["path"] or "")


@command("destroy", "<path>", "remove a file, or an empty directory, from the file space",
         ("files",))
def destroy(ctx: Context, a: Args) -> Any:
    if not a["path"]:
        raise UsageError("empty <path>", ctx.usage)
    ctx.client.delete_file(a["path"])
    return Text(f"Deleted {a['path']}")  # upstream's words (cli/test-data TestFilesCli)


class _TextSink:
    """Bytes into a text stream (tests drive drpcli with ``io.StringIO``)."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text

    def write(self, data: bytes) -> int:
        self.text.write(data.decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self.text.flush()


def _binary_stdout(stdout: IO[str] | None) -> Any:
    stream = sys.stdout if stdout is None else stdout
    return getattr(stream, "buffer", None) or _TextSink(stream)
