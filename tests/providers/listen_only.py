#!/usr/bin/env python3
"""A provider that behaves like a DRP Go-SDK build: ``define`` and ``listen``.

drpd starts ``serve`` first; this provider, like binaries built with DRP's
Go SDK, does not know that verb, prints a usage error and exits 2, so drpd
must retry with ``listen`` (docs/protocol.md §1). Standard library only and
self-contained. Its one action, ``hello`` (system), answers
``{"Hello": <instance>, "Verb": "listen"}``. ``define`` sends ``null``
lists and ``StoreObjects`` as Go's zero values do.
"""

import http.server
import json
import os
import socket
import socketserver
import sys
import threading
from typing import Any

DEFINITION = {
    "Name": "listen_only",
    "Version": "4.0.0",
    "PluginVersion": 4,
    "AutoStart": False,
    "HasPublish": False,
    "AvailableActions": [
        {"Command": "hello", "Model": "system", "RequiredParams": None, "OptionalParams": None}
    ],
    "RequiredParams": None,
    "OptionalParams": None,
    "StoreObjects": None,
    "Documentation": "",
    "Content": "",
}
config: dict[str, Any] = {}


class Plugin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def reply(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(size) or b"null")
        ok = {"Model": "", "Key": "", "Type": "", "Messages": [], "Code": 200}
        if self.path == "/api-plugin/v4/config":
            config.update(body)
            self.reply(200, ok)
        elif self.path == "/api-plugin/v4/action" and body.get("Command") == "hello":
            self.reply(200, {"Hello": config.get("Name", ""), "Verb": "listen"})
        elif self.path == "/api-plugin/v4/stop":
            self.reply(200, ok)
            threading.Thread(target=self.server.shutdown).start()
        else:
            self.reply(404, dict(ok, Code=404, Messages=[f"unknown {self.path}"]))


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128


def listen(plugin_sock: str, server_sock: str) -> int:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect(server_sock)  # the Go SDK dials drpd before it says READY!
    if os.path.exists(plugin_sock):
        os.unlink(plugin_sock)
    server = Server(plugin_sock, Plugin)
    print("READY!", flush=True)
    server.serve_forever()
    server.server_close()
    probe.close()
    return 0


def main(argv: list[str]) -> int:
    if argv == ["define"]:
        print(json.dumps(DEFINITION))
        return 0
    if len(argv) == 3 and argv[0] == "listen":
        return listen(argv[1], argv[2])
    sys.stderr.write(
        f"Error: unknown command {argv[0] if argv else ''!r} for listen_only\n"
        "Usage: listen_only [define|listen <plugin-sock> <server-sock>]\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
