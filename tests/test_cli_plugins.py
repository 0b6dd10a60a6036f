"""drpcli's plugin commands: actions, provider uploads and downloads, logs, ``extended``.

The first part checks word handling and request shapes in-process, through
a mock transport. The rest runs ``drpcli`` as a subprocess against one real
drpd per module, with the real test providers (``sdk_echo``,
``plain_provider``) installed and running.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drpd.cli import main as cli_main
from drpd.cli.actions import parse_run_words, split_plugin_flag
from drpd.cli.registry import UsageError
from drpd.client import Client
from drpd.testing import DrpdProcess, wait_until

from .plugin_helpers import install, wrapper_bytes
from .test_cli import cli_env, drpcli, failed, ok

INCREMENTER = Path(__file__).parent.parent / "drpd" / "providers" / "incrementer.py"

# ---------------------------------------------------------------------------
# in-process: words, request shapes, files
# ---------------------------------------------------------------------------


class Recorder(httpx.BaseTransport):
    """A transport that keeps every request and answers with ``reply``
    (default: 200 ``{}``). Unlike ``httpx.MockTransport`` it reads the body
    itself, chunk by chunk as a network transport does, so a test sees how
    the body was streamed."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.reply = reply or (lambda r: httpx.Response(200, json={}))
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.chunks: list[list[int]] = []  # the size of each chunk of each body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        chunks = list(request.stream)  # type: ignore[arg-type]
        self.chunks.append([len(c) for c in chunks])
        self.bodies.append(b"".join(chunks))
        self.requests.append(request)
        return self.reply(request)


def run_inproc(
    argv: list[str], reply: Callable[[httpx.Request], httpx.Response] | None = None
) -> tuple[int, str, str, Recorder]:
    rec = Recorder(reply)
    out, err = io.StringIO(), io.StringIO()
    code = cli_main.run(
        argv,
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        env={},
        transport=rec,
    )
    return code, out.getvalue(), err.getvalue(), rec


@pytest.mark.parametrize(
    ("words", "rest", "plugin"),
    [
        (["k", "c", "a", "1"], ["k", "c", "a", "1"], None),
        (["k", "c", "--plugin", "p"], ["k", "c"], "p"),
        (["--plugin", "p", "k", "c"], ["k", "c"], "p"),
        (["k", "--plugin=p", "c", "a", "1"], ["k", "c", "a", "1"], "p"),
        (["k", "c", "--", "a", "--plugin"], ["k", "c", "a", "--plugin"], None),
        (["k", "c", "a", "-1"], ["k", "c", "a", "-1"], None),
        (["k", "c", "--plugin", "p", "--plugin", "p"], ["k", "c"], "p"),
    ],
)
def test_split_plugin_flag(words: list[str], rest: list[str], plugin: str | None) -> None:
    assert split_plugin_flag(words, "u") == (rest, plugin)


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (["k", "c", "--plugin"], "--plugin needs an instance name"),
        (["k", "c", "--plugin", "a", "--plugin", "b"], "--plugin given twice"),
        (["k", "c", "--verbose"], "unknown flag '--verbose'"),
    ],
)
def test_split_plugin_flag_refuses(words: list[str], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        split_plugin_flag(words, "u")


def test_parse_run_words_types_values() -> None:
    words = ["Name:m1", "echo", "a", "hi", "b", "0.1", "c", '"9"', "d", '{"x": [1]}', "e", "null"]
    (key, cmd), params, plugin = parse_run_words(words, 2, "u")
    assert (key, cmd, plugin) == ("Name:m1", "echo", None)
    assert params == {"a": "hi", "b": 0.1, "c": "9", "d": {"x": [1]}, "e": None}
    with pytest.raises(UsageError, match="param 'b' has no value"):
        parse_run_words(["k", "c", "a", "1", "b"], 2, "u")
    with pytest.raises(UsageError, match="missing <command>"):
        parse_run_words(["--plugin", "p", "k"], 2, "u")
    with pytest.raises(UsageError, match="missing <key>"):
        parse_run_words(["--plugin", "p"], 2, "u")


def test_runaction_request_shape() -> None:
    code, out, err, rec = run_inproc(
        ["machines", "runaction", "--plugin", "e 1", "Name:m1", "echo", "g", "hi", "n", "2"],
        lambda r: httpx.Response(200, json={"Got": True}),
    )
    assert (code, err) == (0, "")
    req = rec.requests[0]
    assert req.method == "POST"
    assert req.url.raw_path == b"/api/v3/machines/Name:m1/actions/echo?plugin=e+1"
    assert json.loads(rec.bodies[0]) == {"g": "hi", "n": 2}
    assert out == '{\n  "Got": true\n}\n'
    # no pairs: still a JSON object, as the server expects
    code, _, _, rec = run_inproc(["system", "runaction", "sdk_echo:status"])
    assert code == 0 and rec.requests[0].url.path == "/api/v3/system/actions/sdk_echo:status"
    assert rec.bodies[0] == b"{}" and "plugin" not in rec.requests[0].url.params
    code, _, _, rec = run_inproc(["system", "actions"])
    assert code == 0 and rec.requests[0].url.path == "/api/v3/system/actions"
    code, _, _, rec = run_inproc(["profiles", "action", "p1", "x:y"])
    assert rec.requests[0].method == "GET"
    assert rec.requests[0].url.path == "/api/v3/profiles/p1/actions/x:y"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["machines", "runaction", "k"], "missing <command>"),
        (["machines", "runaction", "k", "echo", "a", "1", "b"], "param 'b' has no value"),
        (["machines", "runaction", "k", "echo", "a"], "'a' is not a map of params"),
        (["machines", "runaction", "k", "echo", "--plugin"], "--plugin needs an instance"),
        (["machines", "runaction", "", "echo"], "empty <key>"),
        (["machines", "actions"], "missing <key>"),
        (["machines", "actions", ".."], "'..' is not a valid machines key"),
        (["machines", "runaction", "k", "."], "'.' is not a valid machines key or action"),
        (["system", "runaction"], "missing <command>"),
        (["system", "actions", "x"], "unexpected argument 'x'"),
        (["plugin_providers", "upload"], "missing <name-or-file>"),
        (["plugin_providers", "upload", "n", "form", "f"], "unexpected argument 'form'"),
        (["plugin_providers", "upload", "/no/such/file"], "cannot read /no/such/file"),
        (["plugin_providers", "upload", "/"], "cannot name a provider after '/'"),
        (["plugin_providers", "upload", "x", "from", "/tmp"], "not a regular file"),
        (["plugin_providers", "upload", "a/b", "from", "/etc/hostname"], "invalid provider name"),
        (["plugin_providers", "upload", "..", "from", "/etc/hostname"], "invalid provider name"),
        (["plugin_providers", "upload", "/tmp/a b"], "cannot name a provider after '/tmp/a b'"),
        (["plugin_providers", "download", "..", "to", "x"], "invalid provider name"),
        (["plugin_providers", "download", "x", "to", "/no/such/dir/x"], "cannot write"),
        (["plugins", "log", "p", "ten"], "bad line count 'ten'"),
        (["extended", "list"], "unknown command 'list' for extended; commands: -l"),
        (["extended", "-l"], "missing <prefix>"),
        (["extended", "-l", "things"], "missing <command>"),
        (["extended", "-l", "things", "frob"], "unknown command 'frob' for extended -l things"),
        (["extended", "-l", "things", "show"], "usage: drpcli extended -l things show <key>"),
        (["extended", "-l", "-Q", "list"], "bad prefix '-Q'"),
        (["extended", "-l", "things", "create", "[1]"], "create needs an object"),
    ],
)
def test_usage_errors_are_one_line_and_send_nothing(argv: list[str], message: str) -> None:
    code, out, err, rec = run_inproc(argv)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1 and message in err, err
    assert rec.requests == []


def test_help_lists_the_new_commands() -> None:
    code, out, _, _ = run_inproc(["machines", "help"])
    assert code == 0
    assert "drpcli machines runaction <key> <command> [<name> <value>...] [--plugin <instance>]" in out
    code, out, _, _ = run_inproc(["extended", "-l", "incrementers", "help"])
    assert code == 0 and "drpcli extended -l incrementers show <key>" in out
    code, out, _, _ = run_inproc(["extended", "help"])
    assert code == 0 and "drpcli extended -l <prefix> <command>" in out
    code, out, _, _ = run_inproc(["--help"])
    assert "system" in out and "extended" in out


def test_extended_uses_the_given_prefix() -> None:
    code, out, _, rec = run_inproc(
        ["extended", "--ldata", "incrementers", "create", "counter"],
        lambda r: httpx.Response(201, content=r.content),
    )
    assert code == 0 and json.loads(out) == {"Id": "counter"}
    assert rec.requests[0].url.path == "/api/v3/incrementers"
    code, _, _, rec = run_inproc(["extended", "-l", "incrementers", "list", "Id=a"])
    assert rec.requests[0].url.path == "/api/v3/incrementers"
    assert rec.requests[0].url.params["Id"] == "a"
    code, _, err, rec = run_inproc(
        ["extended", "-l", "incrementers", "update", "c", "{}"],
        lambda r: httpx.Response(404, json={"Messages": ["gone"], "Code": 404}),
    )
    assert err == "Error: 404 gone\n"
    assert rec.requests[0].method == "PATCH"
    assert rec.requests[0].url.path == "/api/v3/incrementers/c"


def test_upload_streams_the_file(tmp_path: Path) -> None:
    exe = tmp_path / "my-provider"
    data = os.urandom(300_000)
    exe.write_bytes(data)
    provider = {"Name": "my-provider", "Version": "1"}
    code, out, err, rec = run_inproc(
        ["plugin_providers", "upload", str(exe)], lambda r: httpx.Response(201, json=provider)
    )
    assert (code, err) == (0, ""), err
    assert json.loads(out) == provider
    req = rec.requests[0]
    assert req.method == "POST" and req.url.path == "/api/v3/plugin_providers/my-provider"
    # a file object, sent with its size: httpx reads it in chunks, never whole
    assert req.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in req.headers
    assert len(rec.chunks[0]) > 1 and max(rec.chunks[0]) <= 65_536
    assert rec.bodies[0] == data
    # `upload <name> from <file>`
    code, _, _, rec = run_inproc(
        ["plugin_providers", "upload", "other", "from", str(exe)],
        lambda r: httpx.Response(200, json=provider),
    )
    assert code == 0 and rec.requests[0].url.path == "/api/v3/plugin_providers/other"


def test_upload_refusal_is_one_line(tmp_path: Path) -> None:
    exe = tmp_path / "x"
    exe.write_bytes(b"#!/bin/sh\n")
    error = {"Messages": ["provider defines itself as 'y', not 'x'\nsecond line"], "Code": 422}
    code, out, err, _ = run_inproc(
        ["plugin_providers", "upload", str(exe)], lambda r: httpx.Response(422, json=error)
    )
    assert (code, out) == (1, "")
    assert err == "Error: 422 provider defines itself as 'y', not 'x' second line\n"


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_download_is_atomic(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    target = tmp_path / "prov"
    target.write_bytes(b"old")
    code, out, err, rec = run_inproc(
        ["plugin_providers", "download", "prov", "to", str(target)],
        lambda r: httpx.Response(200, content=data),
    )
    assert (code, out, err) == (0, "", "")
    assert rec.requests[0].url.path == "/api/v3/plugin_providers/prov/binary"
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prov"]
    # into a directory: the provider's name inside it
    code, _, _, _ = run_inproc(
        ["plugin_providers", "download", "other", "to", str(tmp_path)],
        lambda r: httpx.Response(200, content=b"x"),
    )
    assert code == 0 and (tmp_path / "other").read_bytes() == b"x"
    # a refusal leaves the target as it was and no temporary file behind
    code, _, err, _ = run_inproc(
        ["plugin_providers", "download", "prov", "to", str(target)],
        lambda r: httpx.Response(404, json={"Messages": ["plugin_providers prov not found"],
                                            "Code": 404}),
    )
    assert code == 1 and err == "Error: 404 plugin_providers prov not found\n"
    assert target.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "prov"]

    # a connection that breaks mid-body: same
    def broken(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield b"partial"
            raise httpx.ReadError("connection reset")

        return httpx.Response(200, stream=_Stream(body()))

    code, _, err, _ = run_inproc(["plugin_providers", "download", "prov", "to", str(target)],
                                 broken)
    assert code == 1 and "connection reset" in err and err.count("\n") == 1
    assert target.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "prov"]


def test_plugin_log_request() -> None:
    code, out, _, rec = run_inproc(
        ["plugins", "log", "p1", "5"], lambda r: httpx.Response(200, json=["a", "b"])
    )
    assert code == 0 and json.loads(out) == ["a", "b"]
    assert rec.requests[0].url.path == "/api/v3/plugins/p1/log"
    assert rec.requests[0].url.params["lines"] == "5"


# ---------------------------------------------------------------------------
# drpcli against a real drpd with real providers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("cli-plugins") / "state"
    install(state / "plugins", "sdk_echo")
    install(state / "plugins", "plain_provider")
    # declares the StoreObjects prefix `incrementers`; AutoStart makes instance `incrementer`
    shutil.copy(INCREMENTER, state / "plugins" / "incrementer")
    with DrpdProcess(state, env={"DRPD_ACTION_TIMEOUT": "5", "DRPD_STOP_GRACE": "2"}) as proc:
        with api(proc) as c:
            for name, provider, params in (
                ("echo1", "sdk_echo", {"echo/greeting": "from-instance"}),
                ("plain1", "plain_provider", {}),
            ):
                made = c.create("plugins", {"Name": name, "Provider": provider, "Params": params})
                assert made["Available"], made
            wait_until(lambda: _available(c, "incrementer"), timeout=20)
        yield proc


def _available(c: Client, name: str) -> bool:
    return c.exists("plugins", name) and c.get("plugins", name)["Available"]


def api(drpd: DrpdProcess) -> Client:
    return Client(drpd.endpoint, *drpd.auth, ca_cert=drpd.ca_cert, env={})


@pytest.fixture(scope="module")
def env(drpd: DrpdProcess) -> dict[str, str]:
    return cli_env(drpd)


@pytest.fixture(scope="module")
def machine(drpd: DrpdProcess) -> dict[str, Any]:
    with api(drpd) as c:
        return c.create("machines", {"Name": "cli-act"})


def test_list_and_show_actions(env: dict[str, str], machine: dict[str, Any]) -> None:
    uuid = machine["Uuid"]
    listed = ok(drpcli(env, "machines", "actions", uuid))
    assert {("sdk_echo", "echo"), ("sdk_echo", "sleep"), ("sdk_echo", "fail")} <= {
        (a["Provider"], a["Command"]) for a in listed
    }
    assert ok(drpcli(env, "machines", "actions", "Name:cli-act")) == listed
    one = ok(drpcli(env, "machines", "action", "Name:cli-act", "sdk_echo:echo"))
    assert one["Command"] == "echo" and one["RequiredParams"] == ["echo/greeting"]
    assert failed(drpcli(env, "machines", "action", uuid, "nope")).startswith("Error: 404 ")
    assert failed(drpcli(env, "machines", "actions", "Name:nobody")).startswith("Error: 404 ")
    assert [a["Command"] for a in ok(drpcli(env, "plugins", "actions", "echo1"))] == ["whoami"]
    system = {(a["Provider"], a["Command"]) for a in ok(drpcli(env, "system", "actions"))}
    assert {("sdk_echo", "status"), ("plain_provider", "ping")} <= system
    assert ok(drpcli(env, "system", "action", "ping"))["Provider"] == "plain_provider"
    # any prefix: the server decides what it offers
    ok(drpcli(env, "profiles", "create", "cli-act-prof"))
    assert ok(drpcli(env, "profiles", "actions", "cli-act-prof")) == []


def test_runaction_with_pairs(env: dict[str, str], machine: dict[str, Any]) -> None:
    uuid = machine["Uuid"]
    result = drpcli(
        env, "machines", "runaction", uuid, "echo",
        "echo/greeting", "hi", "echo/delay", "0.1",
    )
    body = ok(result)
    assert body["Params"] == {"echo/greeting": "hi", "echo/delay": 0.1}
    assert body["Model"]["Uuid"] == uuid
    assert result.stdout.startswith("{\n  ")  # the provider's JSON, pretty-printed
    # JSON when valid JSON, else the word; a quoted number stays a string
    body = ok(drpcli(env, "machines", "runaction", "Name:cli-act", "echo",
                     "echo/greeting", '"9"', "echo/delay", "2"))
    assert body["Params"] == {"echo/greeting": "9", "echo/delay": 2}
    # without pairs the params come from the instance
    body = ok(drpcli(env, "machines", "runaction", uuid, "sdk_echo:echo"))
    assert body["Params"] == {"echo/greeting": "from-instance"}


def test_runaction_errors(env: dict[str, str], machine: dict[str, Any]) -> None:
    uuid = machine["Uuid"]
    assert failed(drpcli(env, "machines", "runaction", uuid, "nope")).startswith("Error: 404 ")
    assert failed(drpcli(env, "machines", "runaction", uuid, "fail")) == (
        "Error: 418 I'm a teapot"
    )
    line = failed(drpcli(env, "machines", "runaction", uuid, "target"))
    assert line.startswith("Error: 422 ") and "echo/target" in line
    line = failed(drpcli(env, "machines", "runaction", uuid, "echo", "--plugin", "nobody"))
    assert line.startswith("Error: 404 ") and "nobody" in line, line
    line = failed(drpcli(env, "machines", "runaction", uuid, "echo", "echo/greeting"))
    assert "'echo/greeting' is not a map of params" in line


def test_plugin_choice(env: dict[str, str], drpd: DrpdProcess,
                       machine: dict[str, Any]) -> None:
    uuid = machine["Uuid"]
    with api(drpd) as c:
        echo2 = c.create("plugins", {"Name": "echo2", "Provider": "sdk_echo",
                                     "Params": {"echo/greeting": "from-echo2"}})
        assert echo2["Available"], echo2
        try:
            line = failed(drpcli(env, "machines", "runaction", uuid, "echo"))
            assert line.startswith("Error: 409 ") and "echo1" in line and "echo2" in line
            body = ok(drpcli(env, "machines", "runaction", uuid, "echo", "--plugin", "echo2"))
            assert body["Params"]["echo/greeting"] == "from-echo2"
            assert body["Pid"] == echo2["Runtime"]["Pid"]
            body = ok(drpcli(env, "machines", "runaction", "--plugin=echo1", "Name:cli-act",
                             "echo", "echo/delay", "1"))
            assert body["Params"] == {"echo/greeting": "from-instance", "echo/delay": 1}
        finally:
            c.delete("plugins", "echo2")


def test_system_and_plugin_actions(env: dict[str, str]) -> None:
    status = ok(drpcli(env, "system", "runaction", "sdk_echo:status"))
    assert isinstance(status["Objects"], list) and "Events" in status
    pong = ok(drpcli(env, "system", "runaction", "ping", "plain/delay", "0"))
    assert pong["Pong"] is True and pong["Params"] == {"plain/delay": 0}
    assert pong["Name"] == "plain1"
    pong = ok(drpcli(env, "system", "runaction", "plain_provider:ping", "--plugin", "plain1"))
    assert pong["Name"] == "plain1"
    assert ok(drpcli(env, "plugins", "runaction", "echo1", "whoami")) == {
        "Name": "echo1",
        "Plugin": "echo1",
        "CommandSet": "sdk_echo",
    }
    assert failed(drpcli(env, "system", "runaction", "nope")).startswith("Error: 404 ")


def test_plugins_log(env: dict[str, str]) -> None:
    lines = ok(drpcli(env, "plugins", "log", "plain1"))
    assert any("plain_provider configured as plain1" in line for line in lines), lines
    assert len(ok(drpcli(env, "plugins", "log", "plain1", "1"))) == 1
    assert failed(drpcli(env, "plugins", "log", "nobody")).startswith("Error: 404 ")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upload_download_destroy(env: dict[str, str], tmp_path: Path) -> None:
    # a copy of plain_provider that defines itself as "cli-uploaded"
    first = tmp_path / "cli-uploaded"
    first.write_bytes(wrapper_bytes("plain_provider", {"DRPD_TEST_NAME": "cli-uploaded"}))
    made = ok(drpcli(env, "plugin_providers", "upload", str(first)))
    assert made["Name"] == "cli-uploaded"
    assert made["Sha256"] == _sha256(first.read_bytes())
    assert "cli-uploaded" in {p["Name"] for p in ok(drpcli(env, "plugin_providers", "list"))}

    # the same name from another file replaces it
    second = tmp_path / "another-file"
    second.write_bytes(
        wrapper_bytes("plain_provider", {"DRPD_TEST_NAME": "cli-uploaded", "X_VERSION": "2"})
    )
    replaced = ok(drpcli(env, "plugin_providers", "upload", "cli-uploaded", "from", str(second)))
    assert replaced["Name"] == "cli-uploaded"
    assert replaced["Sha256"] == _sha256(second.read_bytes()) != made["Sha256"]

    # a name the file does not define: the server's reason, one line, exit 1
    line = failed(drpcli(env, "plugin_providers", "upload", "cli-other", "from", str(second)))
    assert line.startswith("Error: 422 ") and "cli-uploaded" in line, line
    assert failed(drpcli(env, "plugin_providers", "show", "cli-other")).startswith("Error: 404")
    line = failed(drpcli(env, "plugin_providers", "upload", str(second)))  # named "another-file"
    assert line.startswith("Error: 422 "), line

    # download: the bytes of the last upload, executable, atomically replacing the target
    target = tmp_path / "downloaded"
    target.write_bytes(b"stale")
    result = drpcli(env, "plugin_providers", "download", "cli-uploaded", "to", str(target))
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result
    assert target.read_bytes() == second.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # destroy says what it deleted; it is gone from show, list and download
    gone = drpcli(env, "plugin_providers", "destroy", "cli-uploaded")
    assert gone.stdout == "Deleted plugin_provider cli-uploaded\n", gone.stderr
    assert failed(drpcli(env, "plugin_providers", "show", "cli-uploaded")).startswith("Error: 404")
    assert "cli-uploaded" not in {p["Name"] for p in ok(drpcli(env, "plugin_providers", "list"))}
    line = failed(drpcli(env, "plugin_providers", "download", "cli-uploaded", "to", str(target)))
    assert line.startswith("Error: 404 ")
    assert target.read_bytes() == second.read_bytes()


def test_extended_on_builtin_prefixes(env: dict[str, str], machine: dict[str, Any]) -> None:
    listed = ok(drpcli(env, "extended", "-l", "machines", "list", "Name=cli-act"))
    assert [m["Uuid"] for m in listed] == [machine["Uuid"]]
    made = ok(drpcli(env, "extended", "-l", "profiles", "create",
                     json.dumps({"Name": "cli-ext", "Params": {"a": 1}})))
    assert made["Name"] == "cli-ext"
    assert ok(drpcli(env, "extended", "-l", "profiles", "show", "cli-ext"))["Params"] == {"a": 1}
    result = drpcli(env, "extended", "-l", "profiles", "exists", "cli-ext")
    assert (result.returncode, result.stdout) == (0, "")
    updated = ok(drpcli(env, "extended", "-l", "profiles", "update", "cli-ext",
                        '{"Description": "d"}'))
    assert updated["Description"] == "d"
    assert drpcli(env, "extended", "-l", "profiles", "wait", "cli-ext", "Description", "d",
                  "5").stdout == "complete\n"
    assert drpcli(env, "extended", "-l", "profiles", "destroy", "cli-ext").stdout == (
        "Deleted extended cli-ext\n")
    assert failed(drpcli(env, "extended", "-l", "profiles", "show", "cli-ext")).startswith(
        "Error: 404 "
    )
    body = ok(drpcli(env, "extended", "-l", "machines", "runaction", machine["Uuid"], "echo",
                     "echo/greeting", "ext"))
    assert body["Params"] == {"echo/greeting": "ext"}
    assert failed(drpcli(env, "extended", "-l", "nosuchprefix", "list")).startswith("Error: ")


def test_extended_store_objects(env: dict[str, str], machine: dict[str, Any]) -> None:
    """The incrementer provider's StoreObjects prefix, `incrementers` (keyed by Id)."""
    ext = ("extended", "-l", "incrementers")
    made = ok(drpcli(env, *ext, "create", json.dumps({"Id": "cli-c", "Calls": 3})))
    assert made == {"Id": "cli-c", "Calls": 3, "Type": "incrementers"}
    assert ok(drpcli(env, *ext, "create", "cli-bare")) == {"Id": "cli-bare", "Type": "incrementers"}
    assert ok(drpcli(env, *ext, "show", "cli-c"))["Calls"] == 3
    assert [o["Id"] for o in ok(drpcli(env, *ext, "list", "Calls=3"))] == ["cli-c"]
    assert ok(drpcli(env, *ext, "update", "cli-c", '{"Calls": 4}'))["Calls"] == 4
    patched = ok(drpcli(env, *ext, "patch", "cli-c",
                        '[{"op": "replace", "path": "/Calls", "value": 5}]'))
    assert patched["Calls"] == 5
    assert drpcli(env, *ext, "wait", "cli-c", "Calls", "5", "5").stdout == "complete\n"
    # the provider's schema is the server's to enforce; its refusal is one line
    line = failed(drpcli(env, *ext, "create", json.dumps({"Id": "cli-bad", "Calls": -1})))
    assert line.startswith("Error: 422 ") and "Calls" in line
    assert failed(drpcli(env, *ext, "create", "cli-c")).startswith("Error: 409 ")
    assert drpcli(env, *ext, "exists", "cli-nope").returncode == 1
    assert drpcli(env, *ext, "destroy", "cli-c").stdout == "Deleted extended cli-c\n"
    assert failed(drpcli(env, *ext, "show", "cli-c")).startswith("Error: 404 ")
    assert ok(drpcli(env, *ext, "actions", "cli-bare")) == []
    # the provider's actions keep their counters there
    done = ok(drpcli(env, "machines", "runaction", machine["Uuid"], "increment",
                     "incrementer/parameter", "cli/count", "incrementer/step", "5"))
    assert done == {"Parameter": "cli/count", "Value": 5}
    assert ok(drpcli(env, *ext, "show", "cli-count"))["Calls"] == 1
    status = ok(drpcli(env, "system", "runaction", "incrstatus"))
    assert status["Counters"]["cli-count"] == 1
