"""The static file server: the file space, read-only, no auth (DRP's 8091).

A bare ASGI app: it only ever answers GET and HEAD for files under the file
space root, in chunks read from a worker thread.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Any

import trio

CHUNK = 256 * 1024


def safe_path(root: Path, rel: str) -> Path | None:
    """``root/rel`` if it stays inside ``root`` and names no hidden trick."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    # ".." escapes; other dot-names are drpd's own temporaries (.upload-*, .unpack-*)
    if any(p.startswith(".") or "\0" in p for p in parts):
        return None
    path = root.joinpath(*parts)
    try:
        resolved = path.resolve()
    except OSError:
        return None
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        return None
    return path


class StaticFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD"):
            return await _plain(send, 405, b"method not allowed\n")
        if not path.startswith("/files/"):
            return await _plain(send, 404, b"not found\n")
        target = safe_path(self.root, path[len("/files/"):])
        if target is None:
            return await _plain(send, 404, b"not found\n")
        try:
            f = await trio.to_thread.run_sync(open, target, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            return await _plain(send, 404, b"not found\n")
        try:
            size = os.fstat(f.fileno()).st_size
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", ctype.encode()),
                            (b"content-length", str(size).encode())],
            })
            if method == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            while True:
                chunk = await trio.to_thread.run_sync(f.read, CHUNK)
                more = len(chunk) == CHUNK
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return
        finally:
            f.close()


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
