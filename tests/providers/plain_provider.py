#!/usr/bin/env python3
"""A provider in the standard library only: docs/protocol.md spoken by hand.

It proves drpd needs nothing of its own SDK on the provider side (no trio,
no h11, no drpd import) and is self-contained, so drpd can install a copy
of it anywhere. One action, ``ping`` (system): answers
``{"Pong": true, "Params": ..., "Name": <instance>, "Pid": ...}``; with the
param ``plain/delay`` it first sleeps that many seconds. ``config`` logs a
line to drpd through the server socket.

``DRPD_TEST_NAME`` renames the provider and ``DRPD_TEST_AUTOSTART`` sets
``AutoStart``, so one drpd can hold several copies.

Misbehaviour for supervisor tests, chosen by the environment variable
``DRPD_TEST_MODE`` (comma-separated; drpd passes its own environment on):

- ``define-exit-1``, ``define-hang``, ``bad-define-json``,
  ``define-not-object``: the ``define`` failures drpd must reject;
- ``never-ready``: serve the socket but never print ``READY!``;
- ``noise-before-ready``: print other lines on stdout before ``READY!``;
- ``exit-before-ready``: exit 1 on ``serve`` before ``READY!``;
- ``crash-after-ready``: exit 3 right after ``READY!`` (with stderr lines);
- ``fail-config``: answer ``config`` with a 422 Error;
- ``ignore-sigterm``: ignore SIGTERM and do not exit after ``stop``
  (only SIGKILL ends it);
- ``fork-child``: after ``READY!`` start a grandchild in its own session
  (escaping the process group) that sleeps, and print ``CHILD <pid>``;
- ``fork-child-and-exit``: the same, then exit 1 (a crash leaving an orphan);
- ``stealthy-child``: after ``READY!`` start a child that calls ``setsid``
  and clears its environment (no process group, no drpd marker), print
  ``CHILD <pid>``;
- ``stealthy-orphan``: the same through a shell that exits at once, so
  the child is an orphan (its parent gone) as well;
- ``snoop``: at ``config``, print its uid and try to read each file of
  ``DRPD_TEST_SNOOP`` (colon-separated) to stderr (``SNOOP <path>: read`` or
  ``denied``);
- ``hang-config``: never answer ``config``;
- ``flood-stderr``: after ``READY!`` write to stderr as fast as it can;
- ``bad-action-json``: answer every action with invalid JSON;
- ``close-mid-action``: close the connection in the middle of an action's answer;
- ``token-probe``: ``ping`` also tries drpd's API with ``RS_TOKEN`` (read
  machines, create a user, change the machine ``plain/machine``, mint a token
  for ``rocketskates``) and answers the HTTP statuses under ``Probe``.
"""

import http.client
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

# a test installs several copies under other names with DRPD_TEST_NAME
NAME = os.environ.get("DRPD_TEST_NAME", "plain_provider")
MODES = set(filter(None, os.environ.get("DRPD_TEST_MODE", "").split(",")))

DEFINITION = {
    "Name": NAME,
    "Version": "0.1.0",
    "PluginVersion": 4,
    "AutoStart": bool(os.environ.get("DRPD_TEST_AUTOSTART")),
    "HasPublish": False,
    "AvailableActions": [
        {
            "Command": "ping",
            "Model": "system",
            "RequiredParams": [],
            "OptionalParams": ["plain/delay"] + (["plain/machine"] if "token-probe" in MODES
                                                  else []),
        }
    ],
    "RequiredParams": [],
    "OptionalParams": ["plain/delay"],
    "StoreObjects": None,
    "Documentation": "A standard-library provider for drpd's tests.",
    "Content": "",
}


def error(code: int, *messages: str) -> dict[str, Any]:
    return {
        "Model": "plugins",
        "Key": NAME,
        "Type": "PLUGIN_ERROR",
        "Messages": list(messages),
        "Code": code,
    }


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a UNIX socket: the client side of the server socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class ServerSocket:
    """One kept-alive connection to drpd, shared by the handler threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.conn = UnixHTTPConnection(path)
        self.conn.connect()

    def post(self, path: str, obj: Any) -> tuple[int, bytes]:
        body = json.dumps(obj).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        with self.lock:
            try:
                self.conn.request("POST", path, body, headers)
                response = self.conn.getresponse()
            except (OSError, http.client.HTTPException):
                self.conn.close()  # drpd may have closed the idle connection: once more
                self.conn = UnixHTTPConnection(self.path)
                self.conn.request("POST", path, body, headers)
                response = self.conn.getresponse()
            return response.status, response.read()


def api_status(method: str, path: str, body: Any = None) -> int:
    """The HTTP status of one call to drpd's API with this instance's RS_TOKEN."""
    import ssl
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        os.environ["RS_ENDPOINT"] + "/api/v3" + path, data=data, method=method,
        headers={"Authorization": "Bearer " + os.environ["RS_TOKEN"],
                 "Content-Type": "application/json"})
    context = None
    if os.environ.get("RS_CA_CERT"):
        context = ssl.create_default_context(cafile=os.environ["RS_CA_CERT"])
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class State:
    config: dict[str, Any] = {}
    stopping = False
    server: "UnixHTTPServer | None" = None
    drpd: ServerSocket | None = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, Content-Length framing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the stdlib's name
        sys.stderr.write("plain_provider: " + (format % args) + "\n")

    def address_string(self) -> str:
        return "unix"

    def answer(self, code: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            return self.answer(400, error(400, f"malformed JSON: {exc}"))
        path = self.path.split("?", 1)[0]
        if path == "/api-plugin/v4/config":
            return self.config(body)
        if path == "/api-plugin/v4/action":
            return self.action(body)
        if path == "/api-plugin/v4/publish":
            return self.answer(200, error(200))
        if path == "/api-plugin/v4/stop":
            return self.stop()
        return self.answer(404, error(404, f"no such path {path}"))

    def config(self, params: Any) -> None:
        if not isinstance(params, dict):
            return self.answer(400, error(400, "config: expected an object"))
        if "fail-config" in MODES:
            return self.answer(422, error(422, "config refused (DRPD_TEST_MODE)"))
        if "snoop" in MODES:
            sys.stderr.write(f"SNOOP uid={os.getuid()} groups={os.getgroups()}\n")
            for path in filter(None, os.environ.get("DRPD_TEST_SNOOP", "").split(":")):
                try:
                    with open(path, "rb") as f:
                        f.read(1)
                    outcome = "read"
                except OSError as exc:
                    outcome = f"denied ({exc.strerror})"
                sys.stderr.write(f"SNOOP {path}: {outcome}\n")
            sys.stderr.flush()
        if "hang-config" in MODES:
            while True:
                time.sleep(3600)
        State.config = params
        assert State.drpd is not None
        status, _ = State.drpd.post(
            "/api-server-plugin/v4/log",
            {
                "Time": now(),
                "Level": "info",
                "Message": f"plain_provider configured as {params.get('Name')}",
            },
        )
        if status != 200:
            sys.stderr.write(f"plain_provider: log answered {status}\n")
        return self.answer(200, error(200))

    def action(self, action: Any) -> None:
        if "bad-action-json" in MODES:
            body = b'{"Pong": tru'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return None
        if "close-mid-action" in MODES:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"Pong": ')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        command = (action or {}).get("Command")
        if command != "ping":
            return self.answer(404, error(404, f"no action {command!r}"))
        params = action.get("Params") or {}
        delay = float(params.get("plain/delay") or 0)
        if delay:
            time.sleep(delay)
        result = {
            "Pong": True,
            "Params": params,
            "Name": State.config.get("Name", ""),
            "Pid": os.getpid(),
        }
        if "token-probe" in MODES:
            machine = params.get("plain/machine", "none")
            result["Probe"] = {
                "list-machines": api_status("GET", "/machines"),
                "create-user": api_status("POST", "/users", {"Name": "evil", "Password": "x"}),
                "patch-machine": api_status("PATCH", f"/machines/{machine}",
                                            {"Description": "raw"}),
                "token-admin": api_status("GET", "/users/rocketskates/token"),
            }
        return self.answer(200, result)

    def stop(self) -> None:
        State.stopping = True
        self.answer(200, error(200))
        if "ignore-sigterm" not in MODES:
            # shutdown() waits for serve_forever to return: not from its own thread.
            assert State.server is not None
            threading.Thread(target=State.server.shutdown, daemon=True).start()


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # the default of 5 refuses bursts (STACK-NOTES.md)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def flood_stderr() -> None:
    line = ("plain_provider: flooding stderr " + "x" * 200 + "\n").encode()
    chunk = line * 256
    while True:
        os.write(2, chunk)


def spawn_orphan() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    print(f"CHILD {child.pid}", flush=True)


def serve(plugin_sock: str, server_sock: str) -> int:
    if "exit-before-ready" in MODES:
        sys.stderr.write("plain_provider: exiting before READY! (DRPD_TEST_MODE)\n")
        return 1
    if "ignore-sigterm" in MODES:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.path.exists(plugin_sock):
        os.unlink(plugin_sock)
    State.drpd = ServerSocket(server_sock)
    server = State.server = UnixHTTPServer(plugin_sock, Handler)
    # a short poll interval: stop() is noticed in 50 ms, not the default 0.5 s
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    if "noise-before-ready" in MODES:
        print("plain_provider: warming up")
        print("READY? not yet")
    if "never-ready" in MODES:
        while True:
            time.sleep(3600)
    print("READY!", flush=True)
    if "flood-stderr" in MODES:
        threading.Thread(target=flood_stderr, daemon=True).start()
    if "crash-after-ready" in MODES:
        sys.stderr.write("plain_provider: something broke\nplain_provider: crashing now\n")
        sys.stderr.flush()
        os._exit(3)
    if "stealthy-child" in MODES:
        child = subprocess.Popen(["setsid", "env", "-i", "sleep", "300"])
        print(f"CHILD {child.pid}", flush=True)
    if "stealthy-orphan" in MODES:
        # setsid in a background job is no group leader: it execs, so $! is sleep
        out = subprocess.run(["sh", "-c", "setsid env -i sleep 300 >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True).stdout
        print(f"CHILD {int(out)}", flush=True)
    if "fork-child" in MODES or "fork-child-and-exit" in MODES:
        spawn_orphan()
        if "fork-child-and-exit" in MODES:
            os._exit(1)
    thread.join()
    server.server_close()
    if "ignore-sigterm" in MODES:
        while True:
            time.sleep(3600)
    return 0


def define() -> int:
    if "define-exit-1" in MODES:
        sys.stderr.write("plain_provider: define fails on purpose\n")
        return 1
    if "define-hang" in MODES:
        time.sleep(3600)
    if "bad-define-json" in MODES:
        print('{"Name": "plain_provider", oops')
        return 0
    if "define-not-object" in MODES:
        print("[1, 2, 3]")
        return 0
    print(json.dumps(DEFINITION))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["define"] and len(argv) == 1:
        return define()
    if argv[:1] in (["serve"], ["listen"]) and len(argv) == 3:
        return serve(argv[1], argv[2])
    if argv[:1] == ["unpack"] and len(argv) == 2:
        return 0
    sys.stderr.write(
        "usage: plain_provider.py define | unpack <dir> | serve|listen <plugin-sock> <server-sock>\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
