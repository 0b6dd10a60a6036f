"""The operator's web page (issue 18): static assets served at ``/ui/``.

The files live in the package (``drpd/data/ui``) and are plain HTML, CSS and
JavaScript modules: nothing is built, nothing is fetched from elsewhere. They
are served without credentials because they hold no data; the page logs in
with a drpd user and makes every call through the REST API with the
resulting token, exactly as drpcli would, so it shows nothing to anyone who
cannot log in (whatever address it is served on).

The answers forbid framing, inline scripts and any origin but drpd's own
(Content-Security-Policy), so a page elsewhere cannot wrap or script it.
"""

from __future__ import annotations

import importlib.resources
import mimetypes
from pathlib import Path

import trio
from quart import Blueprint, Response, redirect

from ..models import NotFound
from ..static import safe_path
from .objects import read_body

bp = Blueprint("ui", __name__)

PREFIX = "/ui"
#: the assets are small; anything bigger is not ours
MAX_ASSET = 1024 * 1024
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
          ".html": "text/html", ".svg": "image/svg+xml", ".png": "image/png"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def ui_root() -> Path:
    return Path(str(importlib.resources.files("drpd") / "data" / "ui"))


def is_ui_path(path: str) -> bool:
    """True for the page's own files, which need no credentials."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ASSET + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    return data if len(data) <= MAX_ASSET else None


@bp.route(PREFIX, methods=["GET"])
async def ui_bare() -> Response:
    await read_body()
    return redirect(PREFIX + "/", 308)  # type: ignore[return-value]  # quart's redirect is typed as werkzeug's


@bp.route(PREFIX + "/", defaults={"rel": "index.html"}, methods=["GET"])
@bp.route(PREFIX + "/<path:rel>", methods=["GET"])
async def ui_file(rel: str) -> Response:
    await read_body()
    target = safe_path(ui_root(), rel)
    data = None if target is None else await trio.to_thread.run_sync(_read, target)
    if target is None or data is None:
        raise NotFound(f"no such file {PREFIX}/{rel}", model="ui")
    ctype = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or \
        "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("+xml"):
        ctype += "; charset=utf-8"
    return Response(data, content_type=ctype, headers=HEADERS)
