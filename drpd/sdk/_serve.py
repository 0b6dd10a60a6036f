"""The ``serve`` / ``listen`` verb: docs/protocol.md §1 and §2 on trio + h11.

Start-up order: connect the server socket (so ``ctx`` works from the first
``config``), listen on the plugin socket, then print ``READY!``. Every
request runs in its own task (one per connection in :mod:`drpd.http11`),
so actions run concurrently while ``publish`` calls, which drpd sends one
at a time, are handled in order.

Exit: after ``stop`` has been answered (or after a second if the answer
could not be written), or on SIGTERM/SIGINT, the stop handler having run
once, the process exits 0. Actions still running then are cancelled:
drpd gives them their grace period before it sends ``stop``.
"""

from __future__ import annotations

import signal
import socket
import sys
import traceback
from functools import partial
from typing import Any

import msgspec
import trio

from drpd import http11, wire
from drpd.models.errors import Error
from drpd.models.objects import Action, Event

from ._context import Context
from ._provider import ActionError, Provider

PLUGIN_PREFIX = wire.PLUGIN_PREFIX
#: How long to wait for the ``stop`` answer to reach drpd before exiting anyway.
STOP_FLUSH = 1.0

_ok = wire.ok()[1]
_action_decoder = msgspec.json.Decoder(Action)
_event_decoder = msgspec.json.Decoder(Event)


def _answer(error: Error) -> tuple[int, bytes]:
    return error.Code, msgspec.json.encode(error)


def _fail(code: int, message: str, *, model: str = "", key: str = "") -> tuple[int, bytes]:
    return wire.plugin_error(code, message, model=model, key=key)


class _Runtime:
    """Routes the plugin socket's requests to the provider's handlers."""

    def __init__(self, provider: Provider, ctx: Context) -> None:
        self.provider = provider
        self.ctx = ctx
        self._stop_answered = trio.Event()
        self._stopping = False
        self._nursery: trio.Nursery | None = None

    async def handle(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        path = target.split("?", 1)[0]
        if not path.startswith(PLUGIN_PREFIX):
            return _fail(404, f"no such path {path}")
        verb = path[len(PLUGIN_PREFIX) :]
        route = {
            "config": self._config,
            "action": self._action,
            "publish": self._publish,
            "stop": self._stop,
        }.get(verb)
        if route is None:
            return _fail(404, f"no such path {path}")
        if method != "POST":
            return _fail(405, f"{method} {path}: only POST")
        return await route(body)

    def on_sent(self, method: str, target: str, status: int) -> None:
        if target.split("?", 1)[0] == wire.STOP_PATH and self._stopping:
            self._stop_answered.set()

    async def _config(self, body: bytes) -> tuple[int, bytes]:
        try:
            params = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return _fail(400, f"config: malformed JSON: {exc}", model="plugins")
        if not isinstance(params, dict):
            return _fail(400, "config: expected a JSON object of params", model="plugins")
        name = params.get("Name")
        self.ctx.name = name if isinstance(name, str) else ""
        self.ctx.config = params
        handler = self.provider.config_handler
        if handler is not None:
            try:
                await handler(self.ctx, params)
            except ActionError as exc:
                return _answer(exc.to_error(model="plugins", key=self.ctx.name))
            except Exception as exc:
                traceback.print_exc()
                return _fail(
                    500,
                    f"config failed: {type(exc).__name__}: {exc}",
                    model="plugins",
                    key=self.ctx.name,
                )
        return 200, _ok

    async def _action(self, body: bytes) -> tuple[int, bytes]:
        try:
            action = _action_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _fail(400, f"action: {exc}", model="plugins", key=self.ctx.name)
        found = self.provider.actions.get(action.Command)
        if found is None:
            return _fail(
                404,
                f"{self.provider.name} has no action {action.Command!r}",
                model="plugins",
                key=action.Plugin or self.ctx.name,
            )
        try:
            result: Any = await found.handler(self.ctx, action)
            return 200, msgspec.json.encode(result)
        except ActionError as exc:
            return _answer(exc.to_error(model=found.model, key=_key_of(action)))
        except Exception as exc:
            traceback.print_exc()
            return _fail(
                500,
                f"action {action.Command} failed: {type(exc).__name__}: {exc}",
                model=found.model,
                key=_key_of(action),
            )

    async def _publish(self, body: bytes) -> tuple[int, bytes]:
        try:
            event = _event_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _fail(400, f"publish: {exc}")
        handler = self.provider.publish_handler
        if handler is not None:
            try:
                await handler(self.ctx, event)
            except ActionError as exc:
                return _answer(exc.to_error(model=event.Type, key=event.Key))
            except Exception as exc:
                traceback.print_exc()
                return _fail(500, f"publish failed: {type(exc).__name__}: {exc}")
        return 200, _ok

    async def _stop(self, body: bytes) -> tuple[int, bytes]:
        if not self._stopping:
            self._stopping = True
            await self._run_stop_handler()
            assert self._nursery is not None
            self._nursery.start_soon(self._exit_once_answered)
        return 200, _ok

    async def _run_stop_handler(self) -> None:
        handler = self.provider.stop_handler
        if handler is None:
            return
        try:
            await handler(self.ctx)
        except Exception:
            traceback.print_exc()

    async def _exit_once_answered(self) -> None:
        with trio.move_on_after(STOP_FLUSH):
            await self._stop_answered.wait()
        self._exit()

    def _exit(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                if not self._stopping:
                    self._stopping = True
                    await self._run_stop_handler()
                self._exit()

    async def _start_events(self, nursery: trio.Nursery) -> None:
        """Subscribe to the selected events before READY!, so none published
        once the instance is available is missed (bounded: drpd's API may
        still be starting, and the stream keeps trying in the background)."""
        from ._events import REGISTER_TIMEOUT, follow_events

        registered = trio.Event()
        nursery.start_soon(follow_events, self.provider, self.ctx, registered)
        with trio.move_on_after(REGISTER_TIMEOUT):
            await registered.wait()

    async def run(self, plugin_sock: str, server: http11.UnixHTTPClient,
                  bound: tuple[socket.socket, int] | None = None) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.watch_signals)
            await server.connect()
            await nursery.start(
                partial(http11.serve_unix, plugin_sock, self.handle, on_sent=self.on_sent,
                        bound=bound)
            )
            if bound is not None:
                return  # READY! was printed once the socket was bound (Provider.run)
            if self.provider.selects_events:
                await self._start_events(nursery)
            sys.stdout.write(wire.READY + "\n")
            sys.stdout.flush()
            # serve_unix runs until stop or a signal cancels this nursery.


def _key_of(action: Action) -> str:
    model = action.Model
    if isinstance(model, dict):
        for field in ("Uuid", "Name", "Id"):
            if isinstance(model.get(field), str) and model[field]:
                return model[field]
    return action.Plugin


async def _main(provider: Provider, plugin_sock: str, server_sock: str,
                bound: tuple[socket.socket, int] | None = None) -> None:
    server = http11.UnixHTTPClient(server_sock, max_connections=8, max_idle=2)
    ctx = Context(provider, server)
    try:
        await _Runtime(provider, ctx).run(plugin_sock, server, bound)
    finally:
        with trio.CancelScope(shield=True):
            await ctx.aclose()
            await server.aclose()


def run_serve(provider: Provider, plugin_sock: str, server_sock: str,
              bound: tuple[socket.socket, int] | None = None) -> int:
    """Serve until stopped; 0 on a clean stop, 1 when start-up fails (reason on stderr)."""
    if provider.selects_events:
        from ._events import selections

        try:
            selections(provider)
        except ValueError as exc:
            sys.stderr.write(f"{provider.name}: cannot serve: {exc}\n")
            return 1
    try:
        trio.run(_main, provider, plugin_sock, server_sock, bound)
    except BaseExceptionGroup as group:
        startup, rest = group.split((http11.HTTPError, OSError, ValueError))
        if rest is not None or startup is None:
            raise
        sys.stderr.write(f"{provider.name}: cannot serve: {_first(startup)}\n")
        return 1
    return 0


def _first(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
