"""Provider executables in and out, and a plugin instance's log.

    drpcli plugin_providers upload <file>                 (named after the file)
    drpcli plugin_providers upload <name> from <file>
    drpcli plugin_providers download <name> to <file>
    drpcli plugins log <name> [<lines>]

``upload`` streams the file (a provider may be hundreds of MiB) and prints
the stored provider; the server checks that the executable's ``define``
names the same provider and answers 422 with its reason otherwise.
``upload <file>`` takes the name from the file's basename, as DRP's drpcli
does. ``download`` writes a temporary file next to the target and renames it
into place once complete, so the target is never a partial executable;
the result is mode 0755. A target that is a directory gets the provider's
name inside it.
"""

from __future__ import annotations

import os
from typing import Any

from ..models.names import is_valid_provider_name
from .inputs import atomic_write, open_for_upload, progress_for, with_progress
from .registry import NO_OUTPUT, Args, Context, UsageError, command


def _check_name(name: str, usage: str) -> str:
    """Refuse a name the server would refuse (or that would not even stay
    one path segment: ``..``) before streaming a large file for nothing."""
    if not is_valid_provider_name(name):
        raise UsageError(f"invalid provider name {name!r}", usage)
    return name


@command(
    "upload",
    "<name-or-file> [from <file>]",
    "install or replace a provider from an executable; "
    "without `from`, the name is the file's basename",
    ("plugin_providers",),
)
def upload(ctx: Context, a: Args) -> Any:
    if a["file"] is None:
        path = a["name-or-file"]
        name = os.path.basename(path.rstrip("/"))
        if not is_valid_provider_name(name):
            raise UsageError(
                f"cannot name a provider after {path!r}; use: upload <name> from <file>",
                ctx.usage,
            )
    else:
        name, path = _check_name(a["name-or-file"], ctx.usage), a["file"]
    with open_for_upload(path) as fh:
        _, provider = ctx.client.upload_provider(name, with_progress(fh, name))
    return provider


@command(
    "download",
    "<name> to <file>",
    "save a provider's executable (atomically, mode 0755); a directory gets <name> inside",
    ("plugin_providers",),
)
def download(ctx: Context, a: Args) -> Any:
    name, target = _check_name(a["name"], ctx.usage), a["file"]
    if not target:
        raise UsageError("empty target file name", ctx.usage)
    if os.path.isdir(target):
        target = os.path.join(target, name)
    atomic_write(target, lambda out: ctx.client.download_provider(
        name, out, lambda size: progress_for(name, size)), mode=0o755)
    return NO_OUTPUT


@command(
    "log",
    "<name> [<lines>]",
    "show the last lines (default 100) a plugin instance's provider logged",
    ("plugins",),
)
def log(ctx: Context, a: Args) -> Any:
    lines = None
    if a["lines"] is not None:
        word = a["lines"]
        if not word.isdigit():
            raise UsageError(f"bad line count {word!r}: expected a whole number", ctx.usage)
        lines = int(word)
    return ctx.client.plugin_log(a["name"], lines)
