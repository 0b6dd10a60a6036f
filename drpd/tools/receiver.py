"""A tiny web-hook receiver for trying the callback provider.

``python -m drpd.tools.receiver --port 8000`` listens on 127.0.0.1:8000,
answers every POST (or PUT) with 200 and ``{"ok": true}``, and prints each
request as one JSON line (``{"Method", "Path", "Body"}``) on stdout, so the
README's walkthrough shows what the provider sent. ``python3 -m
http.server`` is no substitute: it answers POSTs with 501, which the
callback provider retries and then reports as a failure.

Bounds: bodies over 1 MiB are refused with 413; it binds loopback unless
``--bind`` says otherwise. ``--port 0`` takes a free port; the first line
printed is always ``listening on http://<addr>:<port>``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
from typing import Any

MAX_BODY = 1 << 20


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers 200 to writes, prints what arrived."""

    server_version = "drpd-receiver"

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _write(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._answer(413, {"ok": False, "error": f"body must be 0..{MAX_BODY} bytes"})
            return
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        print(json.dumps({"Method": self.command, "Path": self.path, "Body": body}), flush=True)
        self._answer(200, {"ok": True})

    do_POST = _write
    do_PUT = _write
    do_PATCH = _write

    def do_GET(self) -> None:
        self._answer(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: stdout carries the requests, one JSON line each."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drpd.tools.receiver", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: a free one)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
