"""The README's "First steps" walkthrough, typed as an operator types it.

drpcli runs as a subprocess against a real drpd; the callback URLs point at
a receiver on 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drpd.testing import DrpdProcess, wait_until

from ..plugin_helpers import alive


class Receiver(http.server.ThreadingHTTPServer):
    """Records every POST: (path, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        #: answer this many POSTs with 500 first
        self.fail_next = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.posts.append((self.path, body))
                receiver.headers.append(dict(self.headers))
                answer = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def sh(drpd: DrpdProcess, command: str) -> str:
    """Run one shell line as a user would type it; fail with its stderr."""
    result = subprocess.run(command, shell=True, capture_output=True, text=True,
                            env=drpd.env, timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    return result.stdout


def test_walkthrough(tmp_path: Path, receiver: Receiver) -> None:
    with DrpdProcess(tmp_path / "state", env={"DRPD_STOP_GRACE": "2"}) as drpd:
        names = sh(drpd, "drpcli catalog items list | jq -r '.[] | "
                         "select(.ContentType == \"PluginProvider\") | .Name'").split()
        assert {"callback", "incrementer", "ipmi"} <= set(names)

        sh(drpd, "drpcli catalog install callback")
        assert "callback" in sh(drpd, "drpcli plugin_providers list | jq -r '.[].Name'").split()

        apac = f"{receiver.url}/apac"
        sh(drpd, "drpcli plugins create '{\"Name\":\"callback-apac\",\"Provider\":\"callback\","
                 f"\"Params\":{{\"callback/url\":\"{apac}\"}}}}'")
        shown = json.loads(sh(drpd, "drpcli plugins show callback-apac | "
                                    "jq '{Name:.Name,Available:.Available,Errors:.Errors}'"))
        assert shown == {"Name": "callback-apac", "Available": True, "Errors": []}
        commands = json.loads(sh(drpd, "drpcli plugin_providers show callback | "
                                       "jq '[.AvailableActions[].Command]'"))
        assert commands == ["callbackDo", "send"]  # upstream's action beside the seed's

        machine = json.loads(sh(drpd, "drpcli machines create '{\"Name\":\"m1\"}'"))
        uuid = machine["Uuid"]
        answer = json.loads(sh(drpd, f"drpcli machines runaction {uuid} callback:send"))
        assert answer["Status"] == 200 and answer["Body"] == {"ok": True}
        assert receiver.posts[-1][0] == "/apac" and receiver.posts[-1][1]["Uuid"] == uuid

        before = json.loads(sh(drpd, "drpcli plugins show callback-apac"))["Runtime"]["Pid"]
        amea = f"{receiver.url}/amea"
        sh(drpd, "drpcli plugins update callback-apac "
                 f"'{{\"Params\":{{\"callback/url\":\"{amea}\"}}}}'")
        after = json.loads(sh(drpd, "drpcli plugins show callback-apac"))
        assert after["Available"] and after["Runtime"]["Pid"] != before and not alive(before)
        sh(drpd, f"drpcli machines runaction {uuid} callback:send")
        assert receiver.posts[-1][0] == "/amea"

        sh(drpd, "drpcli plugins destroy callback-apac")
        wait_until(lambda: not alive(after["Runtime"]["Pid"]), 10)
        assert "callback" in sh(drpd, "drpcli plugin_providers list | jq -r '.[].Name'").split()
