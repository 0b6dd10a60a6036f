"""drpcli as DRP users type it: upstream command lines against a real drpd.

The table holds command lines written out by hand from DRP's drpcli docs
and the names of its CLI tests (``cli/*_test.go`` in DRP's ``provision``),
each with the output and exit status upstream's drpcli gives. The rows run
in order against one drpd (later rows use what earlier ones made), each as
its own ``drpcli`` process; a failure names the row. Shell pipelines with
jq follow, as users type them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from drpd import __version__
from drpd.cli import main as cli_main
from drpd.testing import DrpdProcess

from .plugin_helpers import install
from .test_cli import DEADLINE, REPO, cli_env, sh

Check = Callable[[str], bool]


@dataclass(frozen=True)
class Row:
    """One upstream command line and what upstream's drpcli answers."""

    argv: tuple[str, ...]
    #: exact stdout, or a predicate on it
    out: str | Check | None = None
    status: int = 0
    #: a substring of the one-line error (status 1)
    err: str = ""
    stdin: str | None = None


def js(pred: Callable[[Any], bool]) -> Check:
    """A predicate on stdout read as JSON."""
    return lambda out: bool(pred(json.loads(out)))


def names(out: Any) -> list[str]:
    return [m["Name"] for m in out]


def R(*argv: str, **kw: Any) -> Row:
    return Row(tuple(argv), **kw)


SEALED_REF = json.dumps({"Description": "first"})

ROWS: list[Row] = [
    # root: version (TestCorePieces), --version
    R("version", out=f"Version: v{__version__}\n"),
    R("--version", out=f"Version: v{__version__}\n"),
    # create by bare name, by JSON, by YAML; global flags before and after
    R("profiles", "create", "up-p1", out=js(lambda o: o["Name"] == "up-p1")),
    R("profiles", "create", "-", stdin="Name: up-p2\nParams:\n  up-color: red\n",
      out=js(lambda o: o["Params"] == {"up-color": "red"})),
    R("machines", "create", '{"Name": "up-m1", "Address": "10.0.0.5"}',
      out=js(lambda o: o["Address"] == "10.0.0.5")),
    R("machines", "create", "Name: up-m2\nAddress: 10.0.0.20\nProfiles: [up-p2]",
      out=js(lambda o: o["Profiles"] == ["up-p2"])),
    R("profiles", "show", "up-p1", "-F", "yaml",
      out=lambda o: yaml.safe_load(o)["Name"] == "up-p1" and not o.startswith("{")),
    R("-F", "yaml", "profiles", "show", "up-p1",
      out=lambda o: yaml.safe_load(o)["Name"] == "up-p1"),
    R("profiles", "--format=yaml", "show", "up-p1", out=lambda o: o.startswith("Meta:")),
    # list: the filter words, upstream's meta-filters and flags
    R("machines", "list", "Name", "Eq", "up-m1", out=js(lambda o: names(o) == ["up-m1"])),
    R("machines", "list", "Name=up-m1", out=js(lambda o: names(o) == ["up-m1"])),
    R("machines", "list", "Name", "eq", "up-m1", out=js(lambda o: names(o) == ["up-m1"])),
    R("machines", "list", "Address", "Re", r"^10\.0\.0\.", "sort", "Name",
      out=js(lambda o: names(o) == ["up-m1", "up-m2"])),
    R("machines", "list", "Address", "Between", "10.0.0.1", "10.0.0.10",
      out=js(lambda o: names(o) == ["up-m1"])),
    R("machines", "list", "Address", "Gt", "10.0.0.5", out=js(lambda o: names(o) == ["up-m2"])),
    R("machines", "list", "Name", "In", "up-m1,up-m2", "sort", "Name", "reverse",
      out=js(lambda o: names(o) == ["up-m2", "up-m1"])),
    R("machines", "list", "Name", "Nin", "up-m1", "Name", "Re", "^up-",
      out=js(lambda o: names(o) == ["up-m2"])),
    R("machines", "list", "Profiles", "Eq", "up-p2", out=js(lambda o: names(o) == ["up-m2"])),
    R("machines", "list", "--sort", "Name", "--reverse", "--limit", "1", "Name", "Re", "^up-",
      out=js(lambda o: names(o) == ["up-m2"])),
    R("machines", "list", "Name", "Re", "^up-", "--offset", "1", "--limit", "1", "--sort",
      "Name", out=js(lambda o: names(o) == ["up-m2"])),
    R("machines", "list", "Name", "Eq", "up-m1", "--slim", "Params,Meta",
      out=js(lambda o: "Params" not in o[0] and "Meta" not in o[0])),
    R("machines", "list", "Name", "Frob", "x", status=1, err="unknown operator 'Frob'"),
    R("machines", "list", "Name", "Eq", status=1, err="needs a value"),
    R("machines", "list", "Nope", "Eq", "1", out=js(lambda o: o == [])),  # a param filter
    R("machines", "count", "Name", "Re", "^up-", out="2\n"),
    R("machines", "indexes", out=js(lambda o: o["Name"]["Unique"] and o["Address"]["Type"] == "IP")),
    R("machines", "show", "Address:10.0.0.5", out=js(lambda o: o["Name"] == "up-m1")),
    R("machines", "show", "Name:up-m1", "--slim", "Meta", out=js(lambda o: "Meta" not in o)),
    R("machines", "etag", "Name:up-m1", out=lambda o: o.strip().strip('"').isdigit()),
    # params: set, add (refuses an existing one), get, params (replace all), remove
    R("machines", "set", "Name:up-m1", "param", "up-rank", "to", "3", out="3\n"),
    R("machines", "add", "Name:up-m1", "param", "up-rank", "to", "4", status=1,
      err="Key, up-rank, already present on machine Name:up-m1"),
    R("machines", "add", "Name:up-m1", "param", "up-tag", "to", "blue", out='"blue"\n'),
    R("machines", "get", "Name:up-m1", "param", "up-tag", out='"blue"\n'),
    R("machines", "list", "up-rank", "Eq", "3", out=js(lambda o: names(o) == ["up-m1"])),
    R("machines", "list", "up-rank", "Gte", "4", out="[]\n"),
    R("machines", "params", "Name:up-m1", out=js(lambda o: o == {"up-rank": 3, "up-tag": "blue"})),
    R("machines", "params", "Name:up-m1", '{"up-a": 1, "up-b": [1, 2]}',
      out=js(lambda o: o == {"up-a": 1, "up-b": [1, 2]})),
    R("machines", "params", "Name:up-m1", "-", stdin="up-a: 2\n",
      out=js(lambda o: o == {"up-a": 2})),
    R("machines", "remove", "Name:up-m1", "param", "up-a", out="2\n"),
    R("machines", "params", "Name:up-m1", out="{}\n"),
    # set/remove with -r: only if the value is still the reference's
    R("machines", "set", "Name:up-m1", "param", "up-x", "to", "1", out="1\n"),
    R("machines", "set", "Name:up-m1", "param", "up-x", "to", "2", "-r", "1", out="2\n"),
    R("machines", "set", "Name:up-m1", "param", "up-x", "to", "3", "-r", "1", status=1,
      err="409"),
    R("machines", "remove", "Name:up-m1", "param", "up-x", "-r", "2", out="2\n"),
    # update: merge; -r: the reference form (refused when the object changed)
    R("machines", "update", "Name:up-m1", '{"Description": "first"}',
      out=js(lambda o: o["Description"] == "first")),
    R("machines", "update", "Name:up-m1", '{"Description": "second"}', "-r", SEALED_REF,
      out=js(lambda o: o["Description"] == "second")),
    R("machines", "update", "Name:up-m1", '{"Description": "third"}', "-r", SEALED_REF,
      status=1, err="409"),
    # wait: upstream's answers and exit status
    R("machines", "wait", "Name:up-m1", "Description", "second", out="complete\n"),
    R("machines", "wait", "Name:up-m1", "Description", "never", "1", out="timeout\n"),
    R("machines", "wait", "Name:up-m1", "Locked", "false", "5", out="complete\n"),
    R("machines", "wait", "Name:nobody", "Name", "x", "1", status=1, err="404"),
    # actions and runaction, every upstream form
    R("machines", "actions", "Name:up-m1", "--plugin", "echo1",
      out=js(lambda o: {"echo", "sleep"} <= {a["Command"] for a in o})),
    R("machines", "action", "Name:up-m1", "echo", "--plugin", "echo1",
      out=js(lambda o: o["Command"] == "echo")),
    R("machines", "runaction", "Name:up-m1", "echo", '{"echo/greeting": "map"}',
      out=js(lambda o: o["Params"] == {"echo/greeting": "map"})),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting: yaml-map",
      out=js(lambda o: o["Params"] == {"echo/greeting": "yaml-map"})),
    R("machines", "runaction", "Name:up-m1", "echo", "-", stdin='{"echo/greeting": "stdin"}',
      out=js(lambda o: o["Params"] == {"echo/greeting": "stdin"})),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting", "yes", "echo/delay", "0",
      out=js(lambda o: o["Params"] == {"echo/greeting": True, "echo/delay": 0})),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting", "[a, b]",
      out=js(lambda o: o["Params"]["echo/greeting"] == ["a", "b"])),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting", "k: v",
      out=js(lambda o: o["Params"]["echo/greeting"] == {"k": "v"})),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting", '"9"',
      out=js(lambda o: o["Params"]["echo/greeting"] == "9")),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting", "hi", "--plugin", "",
      out=js(lambda o: o["Params"]["echo/greeting"] == "hi")),
    R("machines", "runaction", "Name:up-m1", "echo", "--plugin=", "echo/greeting", "hi",
      out=js(lambda o: o["Params"]["echo/greeting"] == "hi")),
    R("machines", "runaction", "Name:up-m1", "echo", "echo/greeting", "a: b: c", status=1,
      err="Invalid parameters"),
    R("system", "runaction", "status", "--plugin", "", out=js(lambda o: "Events" in o)),
    # destroy: upstream's line
    R("machines", "destroy", "Name:up-m2", out="Deleted machine Name:up-m2\n"),
    R("machines", "exists", "Name:up-m2", status=1, err="does not exist"),
    R("profiles", "destroy", "up-p2", out="Deleted profile up-p2\n"),
    # global flags anywhere, refusals in one line
    R("machines", "list", "Name", "Eq", "up-m1", "-d",
      out=js(lambda o: names(o) == ["up-m1"])),
    R("machines", "list", "-F", "table", status=1, err="no text or table output"),
    R("machines", "show", "Name:up-m1", "--wait", "5", status=1, err="unknown flag --wait"),
]


@pytest.fixture(scope="module")
def drpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrpdProcess]:
    state = tmp_path_factory.mktemp("upstream") / "state"
    install(state / "plugins", "sdk_echo")
    with DrpdProcess(state) as proc:
        env = cli_env(proc)
        made = run(env, "plugins", "create",
                   json.dumps({"Name": "echo1", "Provider": "sdk_echo",
                               "Params": {"echo/greeting": "from-instance"}}))
        assert made.returncode == 0 and json.loads(made.stdout)["Available"], made
        yield proc


@pytest.fixture(scope="module")
def env(drpd: DrpdProcess) -> dict[str, str]:
    return cli_env(drpd)


def run(env: dict[str, str], *argv: str, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drpd.cli.main", *argv], env=env, input=stdin,
                          capture_output=True, text=True, timeout=DEADLINE, cwd=REPO)


def test_upstream_command_lines(env: dict[str, str]) -> None:
    for number, row in enumerate(ROWS):
        where = f"row {number}: drpcli {' '.join(row.argv)}"
        result = run(env, *row.argv, stdin=row.stdin)
        assert result.returncode == row.status, (where, result.stdout, result.stderr)
        if row.status:
            assert result.stdout == "", where
            assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, where
            assert row.err in result.stderr, (where, result.stderr)
            continue
        if "-d" in row.argv:
            assert "drpcli: GET " in result.stderr and " -> 200" in result.stderr, where
        else:
            assert result.stderr == "", (where, result.stderr)
        if isinstance(row.out, str):
            assert result.stdout == row.out, (where, result.stdout)
        elif row.out is not None:
            assert row.out(result.stdout), (where, result.stdout)


def test_jq_pipelines(env: dict[str, str]) -> None:
    run(env, "machines", "create", '{"Name": "jq-1", "Address": "10.9.0.1"}')
    run(env, "machines", "create", '{"Name": "jq-2", "Address": "10.9.0.2"}')
    for line, expected in [
        ("drpcli machines list Name Re '^jq-' sort Name | jq -r '.[].Name'", "jq-1\njq-2\n"),
        ("drpcli machines list Address Re '^10\\.9\\.' --sort Address --reverse -F json "
         "| jq -r '.[0].Name'", "jq-2\n"),
        ("drpcli machines count Name Re '^jq-' | jq '. + 1'", "3\n"),
        ("drpcli machines show Address:10.9.0.2 | jq -r .Uuid "
         "| xargs -I{} drpcli machines show {} | jq -r .Name", "jq-2\n"),
        ("drpcli machines indexes | jq -r '.Name.Unique'", "true\n"),
        ("drpcli machines set Name:jq-1 param jq/ready to true >/dev/null && "
         "drpcli machines list jq/ready Eq true | jq -r '.[].Name'", "jq-1\n"),
        ("jq -n '{\"echo/greeting\": \"piped\"}' | drpcli machines runaction Name:jq-1 echo - "
         "| jq -r '.Params[\"echo/greeting\"]'", "piped\n"),
        ("drpcli machines destroy Name:jq-2 && drpcli machines exists Name:jq-2 2>/dev/null "
         "|| echo gone", "Deleted machine Name:jq-2\ngone\n"),
        ("drpcli catalog items | jq -r '.incrementer.Type'", "PluginProvider\n"),
        ("drpcli catalog items list | jq -r '.[] | select(.Name == \"incrementer\") "
         "| .ContentType' | sort -u", "PluginProvider\n"),
        ("drpcli catalog item show incrementer | jq -r .Type", "PluginProvider\n"),
        ("drpcli machines wait Name:jq-1 Name jq-1 5 | tr a-z A-Z", "COMPLETE\n"),
    ]:
        r = sh(env, line)
        assert (r.returncode, r.stdout) == (0, expected), (line, r.stderr)


def test_secure_param_sealed_client_side(env: dict[str, str]) -> None:
    """drpcli seals a Secure param to the object's pubkey; drpd stores it
    sealed and reveals it only with --decode."""
    assert run(env, "params", "create",
               '{"Name": "up-secret", "Secure": true, "Schema": {"type": "string"}}'
               ).returncode == 0
    run(env, "machines", "create", '{"Name": "sec-1"}')
    done = run(env, "machines", "set", "Name:sec-1", "param", "up-secret", "to", "hunter2")
    assert (done.returncode, done.stdout) == (0, '"hunter2"\n'), done.stderr
    shown = run(env, "machines", "get", "Name:sec-1", "param", "up-secret")
    assert shown.returncode == 0 and "hunter2" not in shown.stdout
    clear = run(env, "machines", "get", "Name:sec-1", "param", "up-secret", "--decode")
    assert clear.stdout == '"hunter2"\n', clear.stderr
    added = run(env, "machines", "add", "Name:sec-1", "param", "up-other", "to", "x")
    assert added.returncode == 0, added.stderr
    assert run(env, "machines", "params", "Name:sec-1", "--decode").stdout.count("hunter2") == 1
    # the schema still applies to the clear value
    bad = run(env, "machines", "set", "Name:sec-1", "param", "up-secret", "to", "42")
    assert bad.returncode == 1 and "422" in bad.stderr


def test_secure_value_never_on_the_wire_in_clear() -> None:
    """What drpcli sends for a Secure param is a NaCl box only the holder of
    the object's private key opens."""
    from nacl.public import Box, PrivateKey, PublicKey

    server_key = PrivateKey.generate()
    sent: list[bytes] = []

    def reply(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v3/params/pw":
            return httpx.Response(200, json={"Name": "pw", "Secure": True})
        if path.endswith("/pubkey"):
            return httpx.Response(200, json=base64.b64encode(bytes(server_key.public_key)).decode())
        sent.append(request.read())
        return httpx.Response(200, json=json.loads(request.content))

    out, err = io.StringIO(), io.StringIO()
    code = cli_main.run(["profiles", "set", "p1", "param", "pw", "to", "s3cret"], stdout=out,
                        stderr=err, env={}, transport=httpx.MockTransport(reply))
    assert (code, out.getvalue(), err.getvalue()) == (0, '"s3cret"\n', "")
    (body,) = sent
    assert b"s3cret" not in body
    box = json.loads(body)
    assert set(box) == {"Key", "Nonce", "Payload"}
    opened = Box(server_key, PublicKey(base64.b64decode(box["Key"]))).decrypt(
        base64.b64decode(box["Payload"]), base64.b64decode(box["Nonce"]))
    assert json.loads(opened) == "s3cret"


def test_files_upload_explode(env: dict[str, str], tmp_path: Path) -> None:
    tgz = tmp_path / "tree.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in (("a.txt", b"A"), ("sub/b.txt", b"BB")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = run(env, "files", "upload", str(tgz), "as", "trees/tree.tgz", "--explode")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert sorted(answer["Exploded"]) == ["trees/a.txt", "trees/sub/b.txt"]
    got = run(env, "files", "download", "trees/sub/b.txt")
    assert got.stdout == "BB"
    # zip too
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("z/one.txt", "1")
    r = run(env, "files", "upload", str(zpath), "as", "zips/z.zip", "--explode")
    assert json.loads(r.stdout)["Exploded"] == ["zips/z/one.txt"], r.stderr
    # hostile archives are refused in one line, nothing unpacked
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name, kind in (("ok.txt", tarfile.REGTYPE), ("../escape.txt", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            tar.addfile(info, io.BytesIO(b""))
    r = run(env, "files", "upload", str(evil), "as", "evil/evil.tar", "--explode")
    assert r.returncode == 1 and "422" in r.stderr and "'..'" in r.stderr, r.stderr
    listing = json.loads(run(env, "files", "list", "evil").stdout)
    assert listing == ["evil.tar"]
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("l")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    r = run(env, "files", "upload", str(link), "as", "links/link.tar", "--explode")
    assert r.returncode == 1 and "links" in r.stderr.lower()
    notarchive = tmp_path / "plain.bin"
    notarchive.write_bytes(b"\0" * 10)
    r = run(env, "files", "upload", str(notarchive), "as", "x/plain.bin", "--explode")
    assert r.returncode == 1 and "not a tar or zip" in r.stderr


def _pump(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_events_watch_pretty_and_compact(env: dict[str, str]) -> None:
    """Upstream prints each event pretty; --compact keeps one line per event."""
    for flags, pretty in (([], True), (["--compact"], False)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "drpd.cli.main", "events", "watch", "upw.*.*", *flags],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            first = ""
            for _ in range(120):  # post until the watcher has registered and prints
                run(env, "events", "post", '{"Type": "upw", "Action": "a", "Key": "k1"}')
                try:
                    first = lines.get(timeout=0.5)
                    break
                except queue.Empty:
                    continue
            text = first
            if pretty:
                assert first == "{\n", first
                while not text.endswith("}\n"):
                    text += lines.get(timeout=DEADLINE)
                assert text.count("\n") > 3
            else:
                assert first.startswith("{") and first.endswith("}\n"), first
            event = json.loads(text)
            assert (event["Type"], event["Key"]) == ("upw", "k1")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=DEADLINE)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            reader.join(timeout=DEADLINE)
        assert proc.returncode == 0


def test_http_against_the_tls_port(env: dict[str, str], drpd: DrpdProcess) -> None:
    plain = drpd.endpoint.replace("https://", "http://")
    r = run(env, "-E", plain, "info", "get")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "drpd serves HTTPS there" in r.stderr and drpd.endpoint in r.stderr, r.stderr
    r = run(env, "-E", plain, "events", "watch")
    assert r.returncode == 1 and "drpd serves HTTPS there" in r.stderr, r.stderr


def test_help_without_markup() -> None:
    r = subprocess.run([sys.executable, "-m", "drpd.daemon", "--help"], capture_output=True,
                       text=True, timeout=DEADLINE, cwd=REPO)
    assert r.returncode == 0 and "``" not in r.stdout and ":mod:" not in r.stdout
    assert "plugin providers" in r.stdout


def test_catalog_update_local(env: dict[str, str], drpd: DrpdProcess, tmp_path: Path) -> None:
    """``catalog updateLocal`` mirrors the catalog into the file space with a
    catalog of its own that installs from there."""
    r = run(env, "catalog", "updateLocal")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(line.startswith("Downloading ") for line in lines)
    assert any(line.endswith("rebar-catalog/incrementer/1.0.0/any/any/incrementer")
               for line in lines), lines
    # nothing new the second time
    again = run(env, "catalog", "updateLocal")
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
    local = drpd.state_dir / "files" / "rebar-catalog" / "rackn-catalog" / "v1.0.0.json"
    items = json.loads(run(env, "-c", str(local), "catalog", "items").stdout)
    assert items["incrementer"] == {"Type": "PluginProvider", "Versions": ["1.0.0"]}
    target = tmp_path / "incrementer"
    got = run(env, "catalog", "item", "download", "incrementer", "to", str(target),
              "-c", str(local))
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["Path"] == str(target) and os.access(target, os.X_OK)
    # upstream's words: catalog show, catalog item install, the catalog from -c
    shown = json.loads(run(env, "catalog", "show", "-c", str(local)).stdout)
    assert "incrementer-1.0.0" in shown["sections"]["catalog_items"]
    installed = run(env, "catalog", "item", "install", "incrementer", "--version", "1.0.0",
                    "-c", str(local))
    assert installed.returncode == 0, installed.stderr
    assert json.loads(installed.stdout)["Name"] == "incrementer"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("size", "tty", "bar"), [
    (5 * 1024 * 1024, True, True),
    (1024, True, False),  # small: no bar
    (5 * 1024 * 1024, False, False),  # stderr not a terminal: no bar
])
def test_progress_bar_for_big_transfers_on_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, tty: bool, bar: bool) -> None:
    big = tmp_path / "big.iso"
    big.write_bytes(b"x" * size)
    screen = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    received: list[int] = []

    def reply(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            received.append(len(request.read()))
            return httpx.Response(201, json={"Path": "big.iso", "Size": size})
        return httpx.Response(200, content=b"y" * size, headers={"Content-Length": str(size)})

    out = io.StringIO()
    code = cli_main.run(["files", "upload", str(big)], stdout=out, stderr=screen, env={},
                        transport=httpx.MockTransport(reply))
    assert code == 0 and received == [size]
    code = cli_main.run(["files", "download", "big.iso", "to", str(tmp_path / "copy")],
                        stdout=out, stderr=screen, env={}, transport=httpx.MockTransport(reply))
    assert code == 0 and (tmp_path / "copy").stat().st_size == size
    drawn = screen.getvalue()
    if bar:
        assert drawn.count("100%") == 2 and "5.0 MiB/5.0 MiB" in drawn
    else:
        assert drawn == ""


def test_exit_early_and_rs_format(env: dict[str, str]) -> None:
    """-X (RS_OBJECT_ERRORS_ARE_FATAL): an answer with Errors exits 1 after
    printing it; RS_FORMAT picks the output format."""
    made = run(env, "plugins", "create", '{"Name": "up-broken", "Provider": "nope"}', "-X")
    assert made.returncode == 1 and json.loads(made.stdout)["Errors"], made
    assert made.stderr.startswith("Error: the answer has Errors: ")
    shown = run({**env, "RS_OBJECT_ERRORS_ARE_FATAL": "true"}, "plugins", "show", "up-broken")
    assert shown.returncode == 1
    assert run(env, "plugins", "show", "up-broken").returncode == 0
    yaml_out = run({**env, "RS_FORMAT": "yaml"}, "plugins", "show", "up-broken")
    assert yaml.safe_load(yaml_out.stdout)["Name"] == "up-broken"
    assert run(env, "plugins", "destroy", "up-broken").stdout == "Deleted plugin up-broken\n"


def test_explode_refuses_a_file_that_is_also_a_directory(tmp_path: Path) -> None:
    from drpd.explode import ExplodeError, explode

    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("x", "x/y"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ExplodeError, match="both a file and a directory"):
        explode(archive, dest, tmp_path, 1 << 20)
    assert list(dest.iterdir()) == []
    # many members stay quick (the check is not quadratic)
    many = tmp_path / "many.tar"
    with tarfile.open(many, "w") as tar:
        for i in range(5000):
            tar.addfile(tarfile.TarInfo(f"d{i % 50}/f{i}"), io.BytesIO(b""))
    assert len(explode(many, dest, tmp_path, 1 << 20)) == 5000
