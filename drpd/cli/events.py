"""``drpcli events watch [<type>.<action>.<key> ...] [--compact]``: the event stream on stdout.

Each event printed pretty, as DRP's drpcli does (indented JSON, or YAML with
``-F yaml``); with ``--compact``, one JSON event per line (the frame as drpd
sent it, so ``jq -c`` and ``grep`` work line by line), until SIGINT or
SIGTERM, which end it with status 0. The websocket
client is :class:`drpd.wsclient.EventStream`: acknowledgements are not
printed, a dropped connection is resumed with ``since=`` so no event is lost
or repeated, and what cannot be recovered (a ``gap``) or a lost connection
is said in one line on stderr. trio and trio-websocket load only for this
command, so the rest of drpcli starts as fast as before.

stdout is written from a worker thread, fed by a bounded channel: a slow
pipe slows the reading of the websocket (drpd then tells this client it
overflowed, and the stream resumes from the ring), never the trio loop.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, TYPE_CHECKING, Any

from ..client import ClientError, speaks_tls
from .registry import NO_OUTPUT, Args, CliError, Context, command

if TYPE_CHECKING:
    from ..wsclient import EventStream

#: lines waiting for the writer thread
_BUFFER = 1000


@command(
    "watch",
    "[<pattern>...]",
    "print events matching <type>.<action>.<key> (default *.*.*), pretty; "
    "--compact: one JSON per line",
    ("events",),
    flags={"compact": False},
)
def watch(ctx: Context, a: Args) -> Any:
    from ..patterns import Pattern, PatternError

    patterns = a["pattern"] or ["*.*.*"]
    for pattern in patterns:
        try:
            Pattern(pattern)
        except PatternError as exc:
            raise CliError(str(exc)) from None
    import trio

    from ..wsclient import EventStream

    # built before the loop runs: it reads the CA file
    stream = EventStream(ctx.settings, patterns)
    fmt = ctx.flag("format") or ctx.client.env.get("RS_FORMAT") or "json"
    try:
        trio.run(_watch, stream, ctx.stdout or sys.stdout, ctx.stderr or sys.stderr,
                 None if a.get("--compact") else fmt)
    except ClientError as exc:
        endpoint = ctx.settings.endpoint
        if exc.code == 0 and endpoint.startswith("http://") and speaks_tls(endpoint):
            https = "https://" + endpoint[len("http://"):]
            raise ClientError(f"{endpoint} does not answer plain HTTP: drpd serves HTTPS "
                              f"there; use -E {https} (or RS_ENDPOINT={https})") from None
        raise
    return NO_OUTPUT


def _pretty(text: str, fmt: str) -> str:
    import json

    from .output import render

    try:
        event = json.loads(text)
    except ValueError:
        return text
    return render(event, fmt).rstrip("\n")


async def _watch(stream: EventStream, out: IO[str], err: IO[str],
                 pretty: str | None = None) -> None:
    import signal

    import trio

    from ..models import Event

    send, receive = trio.open_memory_channel[tuple[IO[str], str]](_BUFFER)
    failure: list[BaseException] = []

    async def deliver(event: Event, text: str) -> None:
        await send.send((out, text if pretty is None else _pretty(text, pretty)))

    async def notice(frame: Event) -> None:
        if frame.Action == "gap":
            obj = frame.Object if isinstance(frame.Object, dict) else {}
            line = (f"drpcli: events after Seq {obj.get('Since')} and before "
                    f"{obj.get('Oldest')} are no longer kept by drpd; they are lost")
        else:
            line = f"drpcli: drpd says: {frame.Action} {frame.Key} {frame.Object}"
        await send.send((err, " ".join(line.split())))

    def disconnected(reason: str) -> None:
        try:
            send.send_nowait((err, f"drpcli: event stream interrupted ({reason}); resuming"))
        except trio.WouldBlock:
            pass

    async def follow(nursery: trio.Nursery) -> None:
        try:
            await stream.run(deliver, on_notice=notice, on_disconnect=disconnected,
                             fail_first=True)
        except Exception as exc:  # ClientError: refused, or drpd not there at all
            failure.append(exc)
            nursery.cancel_scope.cancel()

    async def write(nursery: trio.Nursery) -> None:
        async with receive:
            async for first in receive:
                batch = [first]
                while True:
                    try:
                        batch.append(receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    await trio.to_thread.run_sync(_write_batch, batch)
                except BrokenPipeError as exc:  # `drpcli events watch | head`
                    failure.append(exc)
                    nursery.cancel_scope.cancel()
                    return

    async def until_signalled(nursery: trio.Nursery) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # driven in-process by a test: the caller cancels
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, nursery)
        nursery.start_soon(until_signalled, nursery)
        nursery.start_soon(follow, nursery)
    if failure:
        raise failure[0]


def _write_batch(batch: list[tuple[IO[str], str]]) -> None:
    touched: list[IO[str]] = []
    for stream, line in batch:
        stream.write(line + "\n")
        if stream not in touched:
            touched.append(stream)
    for stream in touched:
        stream.flush()
