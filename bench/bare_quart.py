"""Baseline server: a bare quart-trio app on hypercorn, the floor of drpd's stack.

    python bench/bare_quart.py --fd N [--certfile C --keyfile K]

``GET /get`` returns a constant; ``POST``/``PUT``/``PATCH /post`` reads its
JSON body (an unread body stalls keep-alive: STACK-NOTES) and returns a
constant. With ``--db PATH``, ``POST /store`` also commits the body to
SQLite before answering, as drpd's store does (its schema, WAL,
``synchronous=FULL``, one transaction per request, handed to one writer
thread the way drpd's store hands it, ``drpd.store.store_thread``): the
floor of a durable create. It serves on an already listening socket
handed over as fd N
(``bench.common.BareQuart`` binds 127.0.0.1 port 0 and passes it), with the
hypercorn settings drpd uses (keep-alive 75 s, no access log). SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import uuid
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from drpd.store.sqlite import MIGRATIONS  # noqa: E402
from drpd.store.store_thread import StoreThread  # noqa: E402

CONSTANT = b'{"ok":true}'

app = QuartTrio("bare")
app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False


@app.route("/get", methods=["GET"])
async def get() -> Response:
    return Response(CONSTANT, content_type="application/json")


@app.route("/post", methods=["POST", "PUT", "PATCH"])
async def post() -> Response:
    await request.get_json(force=True)
    return Response(CONSTANT, content_type="application/json")


_db: dict[str, object] = {}


@app.route("/store", methods=["POST"])
async def store() -> Response:
    body = await request.get_data()
    await request.get_json(force=True)
    writer = _db["thread"]
    assert isinstance(writer, StoreThread)
    await writer.run(_commit, body)
    return Response(CONSTANT, content_type="application/json")


def _commit(body: bytes) -> None:
    conn = _db["conn"]
    assert isinstance(conn, sqlite3.Connection)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO objects (prefix, key, rev, data) VALUES (?, ?, ?, ?)",
                 ("machines", str(uuid.uuid4()), 1, body))
    conn.execute("COMMIT")


def _open_db(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    _db["conn"] = conn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--db", help="SQLite file for POST /store")
    args = parser.parse_args(argv)
    config = Config()
    config.bind = [f"fd://{args.fd}"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    if args.certfile:
        config.certfile, config.keyfile = args.certfile, args.keyfile
    if args.db:
        _open_db(args.db)
        trio.run(_serve_with_db, config)
    else:
        trio.run(serve, app, config)
    return 0


async def _serve_with_db(config: Config) -> None:
    writer = _db["thread"] = StoreThread("bare-sqlite")
    writer.start()
    try:
        await serve(app, config)
    finally:
        with trio.CancelScope(shield=True):
            await writer.aclose()


if __name__ == "__main__":
    sys.exit(main())
