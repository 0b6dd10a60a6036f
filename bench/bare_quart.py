"""Baseline server: a bare quart-trio app on hypercorn, the floor of drpd's stack.

    python bench/bare_quart.py --fd N [--certfile C --keyfile K]

``GET /get`` returns a constant; ``POST``/``PUT``/``PATCH /post`` reads its
JSON body (an unread body stalls keep-alive: STACK-NOTES) and returns a
constant. It serves on an already listening socket handed over as fd N
(``bench.common.BareQuart`` binds 127.0.0.1 port 0 and passes it), with the
hypercorn settings drpd uses (keep-alive 75 s, no access log). SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args(argv)
    config = Config()
    config.bind = [f"fd://{args.fd}"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    if args.certfile:
        config.certfile, config.keyfile = args.certfile, args.keyfile
    trio.run(serve, app, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
