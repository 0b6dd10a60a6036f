"""drpcli and drpd.client.

The first half checks the pieces that need no server (words to values,
object arguments, patterns, output, endpoint and TLS decisions, the client's
requests through a mock transport). The second half runs ``drpcli`` as a
real subprocess -- often through a shell pipeline, as users type it --
against a real drpd.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from drpd.cli import main as cli_main
from drpd.cli.inputs import load_object, parse_duration, parse_filters, parse_value
from drpd.cli.objects import field_of
from drpd.cli.output import render
from drpd.cli.registry import CliError, UsageError, match
from drpd.client import (
    Client,
    ClientError,
    is_loopback,
    normalise_endpoint,
    resolve_settings,
    tls_verify,
)
from drpd.testing import DrpdProcess

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 30  # seconds any one drpcli run may take


# ---------------------------------------------------------------------------
# words to values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("9", 9),
        ("-1.5", -1.5),
        ("n", "n"),
        ('"9"', "9"),
        ("true", True),
        ("null", None),
        ('{"a": [1]}', {"a": [1]}),
        ("[1, 2]", [1, 2]),
        ("hello world", "hello world"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("1e999", "1e999"),
        ("", ""),
        ("{not json", "{not json"),
    ],
)
def test_parse_value(word: str, value: Any) -> None:
    got = parse_value(word)
    assert got == value and type(got) is type(value)


def test_load_object_inline_json_and_yaml() -> None:
    stdin = io.StringIO("")
    assert load_object('{"Name": "a"}', stdin) == {"Name": "a"}
    assert load_object("Name: a\nParams: {x: 1}", stdin) == {"Name": "a", "Params": {"x": 1}}
    assert load_object("[1, 2]", stdin) == [1, 2]
    assert load_object("p1", stdin) == "p1"


def test_load_object_stdin_and_files(tmp_path: Path) -> None:
    assert load_object("-", io.StringIO('{"Name": "s"}')) == {"Name": "s"}
    assert load_object("-", io.StringIO("Name: y\n")) == {"Name": "y"}
    (tmp_path / "m.json").write_text('{"Name": "f"}')
    (tmp_path / "m.yaml").write_text("Name: g\nDescription: from yaml\n")
    assert load_object(str(tmp_path / "m.json"), io.StringIO()) == {"Name": "f"}
    assert load_object(str(tmp_path / "m.yaml"), io.StringIO())["Description"] == "from yaml"


def test_load_object_yaml_keeps_dates_as_strings() -> None:
    assert load_object("Version: 2024-01-02", io.StringIO()) == {"Version": "2024-01-02"}


@pytest.mark.parametrize(
    ("arg", "stdin", "message"),
    [
        ("missing.yaml", "", "no such file"),
        ("-", "", "stdin is empty"),
        ("-", "a: [1,", "neither JSON nor YAML"),
        ("{bad", "", "neither JSON nor YAML"),
        ("x: !!binary aGk=", "", "JSON cannot carry"),
        ("x: .nan", "", "JSON cannot carry"),
    ],
)
def test_load_object_errors(arg: str, stdin: str, message: str) -> None:
    with pytest.raises(CliError, match=message) as info:
        load_object(arg, io.StringIO(stdin))
    assert "\n" not in info.value.line()


def test_parse_filters_and_duration() -> None:
    assert parse_filters(["Name=a", "limit=2", "Name=b=c"]) == [
        ("Name", "a"),
        ("limit", "2"),
        ("Name", "b=c"),
    ]
    with pytest.raises(CliError, match="Field=value"):
        parse_filters(["Name"])
    assert parse_duration("10") == 10
    assert parse_duration("1.5") == 1.5
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    with pytest.raises(CliError, match="bad timeout"):
        parse_duration("soon")
    with pytest.raises(CliError):
        parse_duration("-1")


# ---------------------------------------------------------------------------
# patterns, output, field paths
# ---------------------------------------------------------------------------


def test_match_binds_words() -> None:
    pat = "<key> param <name> to <value>"
    assert match(pat, ["k", "param", "a/b", "to", "-1"], "u") == {
        "key": "k",
        "name": "a/b",
        "value": "-1",
    }
    assert match("<name> [ttl <seconds>]", ["bob"], "u") == {"name": "bob", "seconds": None}
    assert match("<name> [ttl <seconds>]", ["bob", "ttl", "5"], "u") == {
        "name": "bob",
        "seconds": "5",
    }
    assert match("[<filter>...]", [], "u") == {"filter": []}
    assert match("[<filter>...]", ["a=1", "b=2"], "u") == {"filter": ["a=1", "b=2"]}
    assert match("<key> <f> <v> [<timeout>]", ["k", "f", "v"], "u")["timeout"] is None


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (["k", "param", "n", "to"], "missing <value>"),
        (["k", "parm", "n", "to", "v"], "expected 'param', got 'parm'"),
        (["k", "param", "n", "to", "v", "extra"], "unexpected argument 'extra'"),
        ([], "missing <key>"),
    ],
)
def test_match_refuses_misfits(words: list[str], problem: str) -> None:
    with pytest.raises(UsageError) as info:
        match("<key> param <name> to <value>", words, "drpcli machines set ...")
    assert info.value.problem == problem
    assert "usage: drpcli machines set" in info.value.line()


def test_render_json_and_yaml() -> None:
    value = {"Name": "ü", "B": [1, {"c": None}], "A": True}
    text = render(value)
    assert text.endswith("}\n") and json.loads(text) == value
    assert list(json.loads(text)) == ["Name", "B", "A"]  # the server's order, not sorted
    assert '"ü"' in text and "\n  " in text
    assert yaml.safe_load(render(value, "yaml")) == value
    assert render("bar", "yaml") == "bar\n"
    assert render("bar") == '"bar"\n'
    assert render(None) == "null\n"


def test_field_of_paths() -> None:
    obj = {"Runtime": {"State": "running"}, "Params": {"a.b": 1}, "Errors": ["x"], "N": None}
    assert field_of(obj, "Runtime.State") == (True, "running")
    assert field_of(obj, "Params.a.b") == (True, 1)
    assert field_of(obj, "Errors.0") == (True, "x")
    assert field_of(obj, "N") == (True, None)
    assert field_of(obj, "Missing") == (False, None)
    assert field_of(obj, "Runtime.Pid") == (False, None)


# ---------------------------------------------------------------------------
# endpoint, credentials and TLS decisions
# ---------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = resolve_settings(env={})
    assert (s.endpoint, s.username, s.password, s.token) == (
        "https://127.0.0.1:8092",
        "rocketskates",
        "r0cketsk8ts",
        "",
    )


def test_settings_env_then_explicit() -> None:
    env = {"RS_ENDPOINT": "https://drp:1/", "RS_KEY": "bob:s3cret", "RS_CA_CERT": "/ca.pem"}
    s = resolve_settings(env=env)
    assert (s.endpoint, s.username, s.password, s.ca_cert) == (
        "https://drp:1",
        "bob",
        "s3cret",
        "/ca.pem",
    )
    s = resolve_settings("http://x:2", "al", "pw", ca_cert="/other.pem", env=env)
    assert (s.endpoint, s.username, s.password, s.ca_cert) == (
        "http://x:2",
        "al",
        "pw",
        "/other.pem",
    )
    # -U alone keeps RS_KEY's password, as DRP's drpcli does
    assert resolve_settings(username="al", env=env).password == "s3cret"


def test_settings_token_precedence() -> None:
    env = {"RS_TOKEN": "envtok", "RS_KEY": "bob:pw"}
    assert resolve_settings(env=env).token == "envtok"
    assert resolve_settings(token="flagtok", env=env).token == "flagtok"
    # explicit basic credentials beat a token lying around in the environment
    assert resolve_settings(username="al", password="x", env=env).token == ""
    assert resolve_settings(token="t", username="al", env=env).token == "t"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("https://h:8092", "https://h:8092"),
        ("https://h:8092/", "https://h:8092"),
        ("https://h:8092/api/v3", "https://h:8092"),
        ("h:8092", "https://h:8092"),
        ("http://[::1]:80", "http://[::1]:80"),
    ],
)
def test_normalise_endpoint(given: str, normal: str) -> None:
    assert normalise_endpoint(given) == normal


@pytest.mark.parametrize("bad", ["ftp://h:1", "https://", "https://h:port"])
def test_normalise_endpoint_refuses(bad: str) -> None:
    with pytest.raises(ClientError, match="invalid endpoint"):
        normalise_endpoint(bad)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("192.0.2.2", False),
        ("10.0.0.1", False),
        ("drp.example.com", False),
        ("localhost.example.com", False),
        ("::", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tls_decisions(tmp_path: Path) -> None:
    def verify(endpoint: str, **kw: Any) -> Any:
        return tls_verify(resolve_settings(endpoint, env={}, **kw))

    assert verify("https://127.0.0.1:8092") is False  # loopback: take its certificate
    assert verify("https://localhost:8092") is False
    remote = verify("https://192.0.2.9:8092")
    assert remote is not False and remote is not True  # the system's trust store
    assert verify("https://192.0.2.9:8092", insecure=True) is False
    assert verify("http://192.0.2.9:8092") is True  # nothing to verify
    with pytest.raises(ClientError, match="cannot load CA certificate"):
        verify("https://127.0.0.1:8092", ca_cert=str(tmp_path / "none.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ClientError, match="cannot load CA certificate"):
        verify("https://127.0.0.1:8092", ca_cert=str(garbage))


# ---------------------------------------------------------------------------
# the client's requests, through a mock transport
# ---------------------------------------------------------------------------


class Recorder:
    """A mock drpd: records requests, answers with ``reply``."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply or (lambda r: httpx.Response(200, json={"ok": True}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.reply(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def client(self, **kw: Any) -> Client:
        kw.setdefault("env", {})
        return Client(transport=httpx.MockTransport(self), **kw)


def test_client_basic_and_bearer_auth() -> None:
    rec = Recorder()
    with rec.client(username="bob", password="pw") as c:
        c.info()
    assert rec.last.headers["Authorization"] == httpx.BasicAuth("bob", "pw")._auth_header
    assert str(rec.last.url) == "https://127.0.0.1:8092/api/v3/info"
    with rec.client(token="tok") as c:
        c.info()
    assert rec.last.headers["Authorization"] == "Bearer tok"


def test_client_request_shapes() -> None:
    rec = Recorder()
    with rec.client(endpoint="http://d:1") as c:
        c.merge_patch("machines", "Name:m1", {"Description": "x"})
        assert rec.last.method == "PATCH"
        assert rec.last.headers["Content-Type"] == "application/merge-patch+json"
        assert rec.last.url.raw_path == b"/api/v3/machines/Name:m1"
        assert json.loads(rec.last.content) == {"Description": "x"}

        c.json_patch("profiles", "p", [{"op": "add", "path": "/Description", "value": "d"}])
        assert rec.last.headers["Content-Type"] == "application/json-patch+json"

        c.set_param("machines", "u1", "callback/url", None)
        assert rec.last.method == "POST"
        assert rec.last.url.raw_path == b"/api/v3/machines/u1/params/callback%2Furl"
        assert rec.last.content == b"null"

        c.get("params", "a b/c")
        assert rec.last.url.raw_path == b"/api/v3/params/a%20b%2Fc"

        c.list("machines", [("Name", "m1"), ("limit", "2")])
        assert rec.last.url.params.multi_items() == [("Name", "m1"), ("limit", "2")]

        c.token("bob", 60)
        assert rec.last.url.raw_path == b"/api/v3/users/bob/token?ttl=60"

        c.set_password("bob", "pw")
        assert rec.last.method == "PUT" and json.loads(rec.last.content) == {"Password": "pw"}


def test_client_error_carries_drp_error() -> None:
    body = {
        "Model": "machines",
        "Key": "x",
        "Type": "NOT_FOUND",
        "Messages": ["a", "b\nc"],
        "Code": 404,
    }
    rec = Recorder(lambda r: httpx.Response(404, json=body))
    with rec.client() as c, pytest.raises(ClientError) as info:
        c.get("machines", "x")
    err = info.value
    assert (err.code, err.messages, err.error) == (404, ["a", "b\nc"], body)
    assert err.line() == "404 a; b c"


def test_client_error_without_drp_body() -> None:
    rec = Recorder(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with rec.client() as c, pytest.raises(ClientError) as info:
        c.info()
    assert info.value.code == 502
    assert info.value.line() == "502 Bad Gateway; <html>bad gateway</html>"


def test_client_exists_uses_status() -> None:
    rec = Recorder(lambda r: httpx.Response(404 if r.url.path.endswith("/no") else 200))
    with rec.client() as c:
        assert c.exists("machines", "yes") is True
        assert c.exists("machines", "no") is False
    rec = Recorder(lambda r: httpx.Response(401))
    with rec.client() as c, pytest.raises(ClientError, match="401"):
        c.exists("machines", "x")


def test_client_transport_errors_are_one_line() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with Recorder(refuse).client() as c, pytest.raises(ClientError) as info:
        c.info()
    assert info.value.code == 0
    assert info.value.line().startswith("cannot connect to https://127.0.0.1:8092")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    with Recorder(slow).client() as c, pytest.raises(ClientError, match="timed out waiting"):
        c.info()


# ---------------------------------------------------------------------------
# the command line in-process (mock transport): dispatch and error lines
# ---------------------------------------------------------------------------


def run_inproc(
    argv: list[str], reply: Callable[[httpx.Request], httpx.Response] | None = None, stdin: str = ""
) -> tuple[int, str, str, Recorder]:
    rec = Recorder(reply)
    out, err = io.StringIO(), io.StringIO()
    code = cli_main.run(
        argv,
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
        env={},
        transport=httpx.MockTransport(rec),
    )
    return code, out.getvalue(), err.getvalue(), rec


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "missing <prefix>"),
        (["nosuch", "list"], "unknown prefix 'nosuch'"),
        (["machines"], "missing command"),
        (["machines", "frob"], "unknown command 'frob'"),
        (["machines", "show"], "missing <key>"),
        (["-F", "xml", "machines", "list"], "unknown format 'xml'"),
        (["machines", "list", "--format=text"], "no text or table output"),
        (["--bogus", "machines", "list"], "unknown global flag '--bogus'"),
        (["machines", "show", "k", "--bogus"], "unknown flag --bogus"),
        (["-E"], "--endpoint needs a value"),
        (["machines", "list", "-J", "Name"], "--print-fields is not supported"),
        (["plugin_providers", "create", "{}"], "unknown command 'create'"),
        (["params", "params", "x"], "unknown command 'params'"),
        (["machines", "create", "[1]"], "create needs an object, got a list"),
        (["machines", "update", "k", "[1]"], "update needs a (partial) object"),
        (["machines", "patch", "k", "{}"], "a JSON Patch is a list"),
        (["machines", "wait", "k", "f", "v", "soon"], "bad timeout"),
        (["users", "token", "bob", "ttl", "0"], "bad ttl"),
        (["-E", "ftp://x", "info", "get"], "invalid endpoint"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], message: str) -> None:
    code, out, err, rec = run_inproc(argv)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1 and message in err
    assert rec.requests == []  # refused before talking to the server


def test_help_goes_to_stdout() -> None:
    code, out, err, _ = run_inproc(["--help"])
    assert code == 0 and err == "" and "machines" in out and "--ca-cert" in out
    code, out, err, _ = run_inproc(["machines", "help"])
    assert code == 0 and "drpcli machines set <key> param <name> to <value>" in out
    assert "drpcli machines wait <key> <field> <value> [<timeout>]" in out


def test_internal_error_is_one_line() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("kaboom\nsecond line")

    code, out, err, _ = run_inproc(["info", "get"], boom)
    assert code == 1 and err == "Error: internal error: RuntimeError: kaboom second line\n"


def test_server_error_line() -> None:
    body = {
        "Model": "machines",
        "Key": "",
        "Type": "ValidationError",
        "Messages": ["bad"],
        "Code": 422,
    }
    code, out, err, _ = run_inproc(
        ["machines", "create", "{}"], lambda r: httpx.Response(422, json=body)
    )
    assert (code, out, err) == (1, "", "Error: 422 bad\n")


def test_create_bare_name_and_stdin() -> None:
    code, out, _, rec = run_inproc(
        ["profiles", "create", "p1"], lambda r: httpx.Response(201, content=r.content)
    )
    assert code == 0 and json.loads(rec.last.content) == {"Name": "p1"}
    assert json.loads(out) == {"Name": "p1"}
    code, out, _, rec = run_inproc(
        ["-F", "yaml", "machines", "create", "-"],
        lambda r: httpx.Response(201, content=r.content),
        stdin="Name: m1\nParams:\n  a: 1\n",
    )
    assert code == 0 and yaml.safe_load(out) == {"Name": "m1", "Params": {"a": 1}}


def test_cli_imports_no_server_parts() -> None:
    code = (
        "import sys, drpd.cli.main\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('quart', 'hypercorn', 'trio')"
        " or m.startswith(('drpd.api', 'drpd.store', 'drpd.plugins'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=DEADLINE)


# ---------------------------------------------------------------------------
# drpcli as a subprocess against a real drpd
# ---------------------------------------------------------------------------


def cli_env(drpd: DrpdProcess, **extra: str) -> dict[str, str]:
    """drpd's RS_* environment, with the drpcli under test first on PATH."""
    env = drpd.env
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(_drpcli_dir()) + os.pathsep + env["PATH"]
    env.update(extra)
    return env


_BIN: list[Path] = []


def _drpcli_dir() -> Path:
    """A directory holding a ``drpcli`` that runs this checkout's code,
    whether or not the package is installed in the venv."""
    if not _BIN:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="drpcli-bin-"))
        script = path / "drpcli"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m drpd.cli.main "$@"\n')
        script.chmod(0o755)
        _BIN.append(path)
    return _BIN[0]


def drpcli(
    env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drpd.cli.main", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        cwd=REPO,
    )


def sh(env: dict[str, str], line: str) -> subprocess.CompletedProcess[str]:
    """A command line as a user types it, pipes and all."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        cwd=REPO,
    )


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout) if result.stdout else None


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the one-line failure rule; return the line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


@pytest.fixture
def env(shared_drpd: DrpdProcess) -> dict[str, str]:
    return cli_env(shared_drpd)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Iterator[str]:
    """A name no other test in the module uses (the drpd is shared)."""
    yield request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]


def test_machine_lifecycle(env: dict[str, str], unique: str) -> None:
    name = f"m-{unique}"
    made = ok(drpcli(env, "machines", "create", json.dumps({"Name": name})))
    uuid = made["Uuid"]
    assert made["Name"] == name and len(uuid) == 36

    shown = ok(drpcli(env, "machines", "show", f"Name:{name}"))
    assert shown == ok(drpcli(env, "machines", "show", uuid))

    listed = ok(drpcli(env, "machines", "list", f"Name={name}"))
    assert [m["Uuid"] for m in listed] == [uuid]

    updated = ok(drpcli(env, "machines", "update", f"Name:{name}", "Description: via yaml"))
    assert updated["Description"] == "via yaml" and updated["Name"] == name

    patched = ok(
        drpcli(
            env,
            "machines",
            "patch",
            uuid,
            '[{"op":"test","path":"/Description","value":"via yaml"},'
            ' {"op":"replace","path":"/Description","value":"patched"}]',
        )
    )
    assert patched["Description"] == "patched"

    line = failed(
        drpcli(env, "machines", "patch", uuid, '[{"op":"test","path":"/Description","value":"no"}]')
    )
    assert line.startswith("Error: 409 ")

    gone = drpcli(env, "machines", "destroy", f"Name:{name}")
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, f"Deleted machine Name:{name}\n", "")
    line = failed(drpcli(env, "machines", "show", uuid))
    assert line == f"Error: 404 machines {uuid} not found"


def test_exists(env: dict[str, str], unique: str) -> None:
    ok(drpcli(env, "profiles", "create", unique))
    present = drpcli(env, "profiles", "exists", unique)
    assert (present.returncode, present.stdout, present.stderr) == (0, "", "")
    line = failed(drpcli(env, "profiles", "exists", unique + "-not"))
    assert line == f"Error: 404 profiles {unique}-not does not exist"


def test_jq_pipelines(env: dict[str, str], unique: str) -> None:
    for i in range(3):
        ok(drpcli(env, "machines", "create", json.dumps({"Name": f"{unique}-{i}"})))
    r = sh(env, "drpcli machines list | jq -r '.[].Name'")
    assert r.returncode == 0, r.stderr
    # machines are listed in key (Uuid) order, not by Name
    assert sorted(n for n in r.stdout.split() if n.startswith(unique)) == [
        f"{unique}-{i}" for i in range(3)
    ]
    r = sh(
        env,
        f"drpcli machines show Name:{unique}-1 | jq -r .Uuid | xargs drpcli machines show | jq -r .Name",
    )
    assert (r.returncode, r.stdout) == (0, f"{unique}-1\n"), r.stderr
    r = sh(env, f"drpcli machines list Name={unique}-2 limit=1 | jq length")
    assert r.stdout == "1\n"
    r = sh(
        env,
        f"jq -n '{{Name: \"{unique}-piped\", Params: {{answer: 42}}}}' | drpcli profiles create - "
        "| jq -c .Params",
    )
    assert (r.returncode, r.stdout) == (0, '{"answer":42}\n'), r.stderr


def test_list_offset_limit(env: dict[str, str], unique: str) -> None:
    for i in range(4):
        ok(drpcli(env, "profiles", "create", f"{unique}-{i}"))
    everything = [p["Name"] for p in ok(drpcli(env, "profiles", "list"))]
    mine = [n for n in everything if n.startswith(unique)]
    assert mine == sorted(mine) and len(mine) == 4
    start = everything.index(f"{unique}-1")
    page = ok(drpcli(env, "profiles", "list", f"offset={start}", "limit=2"))
    assert [p["Name"] for p in page] == [f"{unique}-1", f"{unique}-2"]
    line = failed(drpcli(env, "profiles", "list", "limit=lots"))
    assert line.startswith("Error: 400 ")


def test_params_commands(env: dict[str, str], unique: str) -> None:
    ok(drpcli(env, "machines", "create", json.dumps({"Name": unique})))
    key = f"Name:{unique}"
    assert ok(drpcli(env, "machines", "set", key, "param", "foo", "to", "bar")) == "bar"
    assert ok(drpcli(env, "machines", "set", key, "param", "n", "to", "9")) == 9
    assert ok(drpcli(env, "machines", "set", key, "param", "s", "to", '"9"')) == "9"
    assert ok(drpcli(env, "machines", "set", key, "param", "neg", "to", "-1")) == -1
    assert ok(drpcli(env, "machines", "set", key, "param", "obj", "to", '{"a": [1, true]}')) == {
        "a": [1, True]
    }
    assert ok(drpcli(env, "machines", "set", key, "param", "callback/url", "to", "http://x/y")) == (
        "http://x/y"
    )
    assert ok(drpcli(env, "machines", "get", key, "param", "foo")) == "bar"
    assert ok(drpcli(env, "machines", "get", key, "param", "callback/url")) == "http://x/y"
    assert ok(drpcli(env, "machines", "params", key)) == {
        "foo": "bar",
        "n": 9,
        "s": "9",
        "neg": -1,
        "obj": {"a": [1, True]},
        "callback/url": "http://x/y",
    }
    assert ok(drpcli(env, "machines", "remove", key, "param", "foo")) == "bar"
    assert ok(drpcli(env, "machines", "get", key, "param", "foo")) is None  # unset: null, as DRP
    r = sh(env, f"drpcli machines get {key} param n | jq '. + 1'")
    assert r.stdout == "10\n"

    ok(drpcli(env, "profiles", "create", f"{unique}-p"))
    assert ok(drpcli(env, "profiles", "set", f"{unique}-p", "param", "x", "to", "true")) is True
    assert ok(drpcli(env, "profiles", "params", f"{unique}-p")) == {"x": True}


def test_param_schema_refusal_is_one_line(env: dict[str, str], unique: str) -> None:
    pname = f"{unique}/count"
    ok(drpcli(env, "params", "create", json.dumps({"Name": pname, "Schema": {"type": "integer"}})))
    assert ok(drpcli(env, "params", "show", pname))["Schema"] == {"type": "integer"}
    ok(drpcli(env, "profiles", "create", unique))
    line = failed(drpcli(env, "profiles", "set", unique, "param", pname, "to", "many"))
    assert line.startswith("Error: 422 ")
    assert ok(drpcli(env, "profiles", "set", unique, "param", pname, "to", "3")) == 3
    assert drpcli(env, "params", "destroy", pname).stdout == f"Deleted param {pname}\n"


def test_yaml_in_and_out(env: dict[str, str], unique: str, tmp_path: Path) -> None:
    source = tmp_path / "profile.yaml"
    source.write_text(f"Name: {unique}\nDescription: from a file\nParams:\n  list: [1, 2]\n")
    ok(drpcli(env, "profiles", "create", str(source)))
    r = drpcli(env, "-F", "yaml", "profiles", "show", unique)
    assert r.returncode == 0 and not r.stdout.lstrip().startswith("{")
    data = yaml.safe_load(r.stdout)
    assert data["Description"] == "from a file" and data["Params"] == {"list": [1, 2]}
    assert data == ok(drpcli(env, "profiles", "show", unique))
    r = drpcli(env, "--format", "yaml", "profiles", "get", unique, "param", "list")
    assert r.stdout == "- 1\n- 2\n"


def test_stdin_object(env: dict[str, str], unique: str) -> None:
    made = ok(drpcli(env, "profiles", "create", "-", input=f"Name: {unique}\nDescription: stdin\n"))
    assert made["Description"] == "stdin"
    changed = ok(drpcli(env, "profiles", "update", unique, "-", input='{"Description": "again"}'))
    assert changed["Description"] == "again"


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("machines", "create", '{"Name": "x", "Locked": "yes"}'), 400),
        (("machines", "create", '{"Name": "bad name"}'), 422),
        (("machines", "show", "Name:nobody-has-this"), 404),
        (("profiles", "create", '{"Name": "p", "Profiles": 3}'), 400),
    ],
)
def test_server_refusals_are_one_line(
    env: dict[str, str], args: tuple[str, ...], status: int
) -> None:
    assert failed(drpcli(env, *args)).startswith(f"Error: {status} ")


def test_duplicate_is_409(env: dict[str, str], unique: str) -> None:
    ok(drpcli(env, "profiles", "create", unique))
    assert failed(drpcli(env, "profiles", "create", unique)) == (
        f"Error: 409 profiles {unique} already exists"
    )


def test_bad_input_is_one_line(env: dict[str, str]) -> None:
    assert "neither JSON nor YAML" in failed(drpcli(env, "profiles", "create", "{Name: [x"))
    assert "no such file" in failed(drpcli(env, "profiles", "create", "nope.yaml"))
    assert "stdin is empty" in failed(drpcli(env, "profiles", "create", "-", input=""))


def test_wait(env: dict[str, str], unique: str) -> None:
    ok(drpcli(env, "profiles", "create", unique))
    # upstream's answers: complete / timeout, exit status 0 for both
    done = drpcli(env, "profiles", "wait", unique, "Name", unique)
    assert (done.returncode, done.stdout, done.stderr) == (0, "complete\n", "")
    late = drpcli(env, "profiles", "wait", unique, "Description", "never", "0.2")
    assert (late.returncode, late.stdout, late.stderr) == (0, "timeout\n", "")
    assert drpcli(env, "profiles", "wait", unique, "Nope", "x", "0").stdout == "timeout\n"
    assert failed(drpcli(env, "profiles", "wait", unique + "-gone", "Name", "x")).startswith(
        "Error: 404 "
    )

    # a change made while drpcli waits: it polls until it sees it
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drpd.cli.main",
            "profiles",
            "wait",
            unique,
            "Params.ready",
            "true",
            "25",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ok(drpcli(env, "profiles", "set", unique, "param", "ready", "to", "true"))
        out, err = waiter.communicate(timeout=DEADLINE)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    assert out == "complete\n"


@pytest.mark.parametrize("prefix", ["tasks", "stages", "bootenvs", "templates"])
def test_other_prefixes(env: dict[str, str], unique: str, prefix: str) -> None:
    key = "ID" if prefix == "templates" else "Name"  # DRP keys templates by ID
    made = ok(drpcli(env, prefix, "create", json.dumps({key: unique, "Description": "d"})))
    assert made[key] == unique
    assert ok(drpcli(env, prefix, "update", unique, '{"Description": "e"}'))["Description"] == "e"
    single = prefix[:-1]
    assert drpcli(env, prefix, "destroy", unique).stdout == f"Deleted {single} {unique}\n"


def test_info_and_tokens(env: dict[str, str], shared_drpd: DrpdProcess) -> None:
    info = ok(drpcli(env, "info", "get"))
    assert info["os"] == "linux" and info["api_port"] == int(shared_drpd.endpoint.rsplit(":", 1)[1])
    answer = ok(drpcli(env, "users", "token", "rocketskates", "ttl", "600"))
    assert answer["Token"] and answer["Info"]["version"] == info["version"]

    no_key = {k: v for k, v in env.items() if k != "RS_KEY"}
    assert ok(drpcli({**no_key, "RS_TOKEN": answer["Token"]}, "info", "get"))["os"] == "linux"
    assert ok(drpcli(no_key, "-T", answer["Token"], "info", "get"))["os"] == "linux"
    r = sh(
        {**no_key, "RS_KEY": env["RS_KEY"]},
        "RS_TOKEN=$(drpcli users token rocketskates | jq -r .Token) RS_KEY= drpcli info get | jq -r .os",
    )
    assert (r.returncode, r.stdout) == (0, "linux\n"), r.stderr
    assert failed(drpcli(no_key, "-T", "not-a-token", "info", "get")).startswith("Error: 401 ")


def test_users_and_passwords(env: dict[str, str], unique: str) -> None:
    ok(drpcli(env, "users", "create", unique))
    ok(drpcli(env, "users", "password", unique, "first-pw"))
    me = ok(drpcli(env, "-U", unique, "-P", "first-pw", "users", "show", unique))
    assert me["Name"] == unique and "PasswordHash" not in me
    line = failed(drpcli(env, "-U", unique, "-P", "wrong", "info", "get"))
    assert line.startswith("Error: 401 ")
    key_env = {**env, "RS_KEY": f"{unique}:first-pw"}
    # a new user holds no role: itself only, until given one
    assert "needs claim scope=info action=get" in failed(drpcli(key_env, "info", "get"))
    assert ok(drpcli(env, "users", "update", unique, '{"Roles": ["read-only"]}'))["Roles"] == [
        "read-only"]
    assert ok(drpcli(key_env, "info", "get"))["os"] == "linux"
    assert "Error: 403" in failed(drpcli(key_env, "machines", "create", "{}"))
    # a token narrowed to info: machines are out of its reach, though the user may list them
    narrow = ok(drpcli(key_env, "users", "token", unique, "scope", "info", "action", "get",
                       "ttl", "10m"))["Token"]
    assert ok(drpcli(env, "-T", narrow, "info", "get"))["os"] == "linux"
    assert "needs claim scope=machines" in failed(drpcli(env, "-T", narrow, "machines", "list"))
    assert isinstance(ok(drpcli(key_env, "machines", "list")), list)
    assert "needs a value" in failed(drpcli(key_env, "users", "token", unique, "scope"))
    assert "unknown token option" in failed(drpcli(key_env, "users", "token", unique, "x", "y"))


def test_events_post(env: dict[str, str], unique: str) -> None:
    sent = ok(
        drpcli(env, "events", "post", json.dumps({"Type": "cli", "Action": "test", "Key": unique}))
    )
    assert (sent["Type"], sent["Action"], sent["Key"]) == ("cli", "test", unique)
    assert sent["Seq"] > 0
    assert "an event is an object" in failed(drpcli(env, "events", "post", "[1]"))


def test_plugin_providers_and_contents(env: dict[str, str]) -> None:
    assert isinstance(ok(drpcli(env, "plugin_providers", "list")), list)
    assert failed(drpcli(env, "plugin_providers", "show", "nope")).startswith("Error: 404 ")
    assert "unknown command 'create'" in failed(drpcli(env, "plugin_providers", "create", "{}"))
    assert isinstance(ok(drpcli(env, "contents", "list")), list)
    assert failed(drpcli(env, "contents", "show", "nope")).startswith("Error: 404 ")


def test_plugins_restart_missing(env: dict[str, str]) -> None:
    assert failed(drpcli(env, "plugins", "restart", "nope")).startswith("Error: 404 ")


def test_global_flags(env: dict[str, str], shared_drpd: DrpdProcess) -> None:
    bare = {k: v for k, v in env.items() if not k.startswith("RS_")}
    info = ok(
        drpcli(
            bare,
            "-E",
            shared_drpd.endpoint,
            "-U",
            "rocketskates",
            "-P",
            "r0cketsk8ts",
            "--ca-cert",
            shared_drpd.ca_cert,
            "info",
            "get",
        )
    )
    assert info["os"] == "linux"
    # a loopback endpoint's own certificate is taken without --ca-cert
    assert ok(drpcli(bare, "-E", shared_drpd.endpoint, "info", "get"))["os"] == "linux"
    localhost = shared_drpd.endpoint.replace("127.0.0.1", "localhost")
    assert ok(drpcli(bare, "--endpoint", localhost, "info", "get"))["os"] == "linux"
    # global flags go anywhere, as upstream's
    listed = drpcli(env, "machines", "list", "-F", "yaml")
    assert listed.returncode == 0 and not listed.stdout.startswith("[")


def test_connection_refused_is_one_line(env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = failed(drpcli(env, "-E", f"https://127.0.0.1:{port}", "info", "get"))
    assert line == f"Error: cannot connect to https://127.0.0.1:{port}: Connection refused"


def test_bad_ca_cert_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    line = failed(drpcli(env, "--ca-cert", str(tmp_path / "none.pem"), "info", "get"))
    assert "cannot load CA certificate" in line


def test_wrong_ca_cert_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    """A CA that did not sign drpd's certificate: verification must fail."""
    with DrpdProcess(tmp_path / "other") as other:
        line = failed(drpcli(env, "--ca-cert", other.ca_cert, "info", "get"))
    assert line.startswith("Error: the TLS certificate of ")
    assert f"does not verify against {other.ca_cert}" in line and "--insecure" in line


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_tls_non_loopback(tmp_path: Path) -> None:
    """Away from loopback, drpd's self-signed certificate needs --ca-cert
    or --insecure; the refusal says so in one line."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    state = tmp_path / "state"
    # drpd refuses a non-loopback bind until an admin has a real password
    subprocess.run(
        [sys.executable, "-m", "drpd.daemon", "passwd", "rocketskates", "--state-dir", str(state)],
        input="not-the-default\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=DEADLINE,
        cwd=REPO,
    )
    with DrpdProcess(state, "--bind", address) as drpd:
        env = cli_env(drpd, RS_KEY="rocketskates:not-the-default")
        endpoint = drpd.endpoint
        assert address in endpoint
        ca_less = {k: v for k, v in env.items() if k != "RS_CA_CERT"}
        line = failed(drpcli(ca_less, "info", "get"))
        assert line.startswith(f"Error: cannot verify the TLS certificate of {endpoint}")
        assert "--ca-cert" in line and "--insecure" in line
        assert ok(drpcli(ca_less, "--ca-cert", drpd.ca_cert, "info", "get"))["os"] == "linux"
        assert ok(drpcli(env, "info", "get"))["os"] == "linux"  # RS_CA_CERT
        assert ok(drpcli(ca_less, "--insecure", "info", "get"))["os"] == "linux"


def test_plain_http(tmp_path: Path) -> None:
    with DrpdProcess(tmp_path / "state", no_tls=True) as drpd:
        env = cli_env(drpd)
        assert drpd.endpoint.startswith("http://")
        assert ok(drpcli(env, "info", "get"))["os"] == "linux"
        r = sh(env, "drpcli profiles create plain | jq -r .Name")
        assert (r.returncode, r.stdout) == (0, "plain\n"), r.stderr


def test_console_script_in_a_pipe(env: dict[str, str]) -> None:
    """The installed script behaves like ``python -m``, and a reader that
    stops early costs no traceback."""
    r = sh(env, "drpcli info get | head -c 1")
    assert (r.returncode, r.stdout, r.stderr) == (0, "{", "")
    r = sh(env, "drpcli machines show Name:nobody 2>&1 >/dev/null | wc -l")
    assert r.stdout.strip() == "1"


def test_roles(env: dict[str, str], unique: str) -> None:
    names = {r["Name"] for r in ok(drpcli(env, "roles", "list"))}
    assert {"superuser", "read-only", "operator"} <= names
    claim = {"scope": "machines", "action": "get,list", "specific": "*"}
    made = ok(drpcli(env, "roles", "create", json.dumps({"Name": unique, "Claims": [claim]})))
    assert made["Claims"] == [claim]
    changed = ok(drpcli(env, "roles", "update", unique, '{"Description": "machine readers"}'))
    assert changed["Description"] == "machine readers"
    assert ok(drpcli(env, "roles", "show", unique))["Claims"] == [claim]
    assert "read-only" in failed(drpcli(env, "roles", "destroy", "superuser"))
    assert drpcli(env, "roles", "destroy", unique).stdout.strip() == f"Deleted role {unique}"
    assert failed(drpcli(env, "roles", "show", unique)).startswith("Error: 404 ")
