"""``drpd``: the daemon's entry point.

``drpd serve`` builds the parts (store, bus, auth, API, static server) and
runs them under one root nursery; SIGTERM or SIGINT cancel it, and shutdown
is that cancellation unwinding, bounded by ``shutdown_timeout``.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import getpass
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from . import __version__
from .auth import DEFAULT_USER, Authenticator, is_loopback, load_or_create_key
from .bus import EventBus
from .config import FIELDS, ConfigError, Settings, load_settings
from .logs import setup_logging
from .store import SQLiteStore

log = logging.getLogger("drpd")


class StartupError(Exception):
    """Why drpd cannot start, as one line for the operator."""


@dataclass
class StateDir:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "drpd.db"

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def tls(self) -> Path:
        return self.root / "tls"


def prepare_state_dir(settings: Settings) -> StateDir:
    root = Path(settings.state_dir).absolute()
    try:
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("files", "tls"):
            (root / sub).mkdir(exist_ok=True)
        settings.plugin_path.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"state directory {root} is not usable: {exc.strerror or exc}"
        ) from None
    return StateDir(root)


def lock_state_dir(state: StateDir, stack: ExitStack) -> None:
    """One drpd per state directory: a second one would fork the store's memory."""
    fd = os.open(state.root / "drpd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StartupError(f"another drpd is running on state directory {state.root}") from None


def bind_socket(host: str, port: int, what: str) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot bind {what} to {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{what} port {port} on {host} is already in use") from None
        raise StartupError(f"cannot bind {what} to {host}:{port}: {exc.strerror}") from None
    return sock


def url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Daemon:
    """The running parts of one drpd, wired together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = prepare_state_dir(settings)
        self.bus = EventBus(retain=settings.event_retain, queue_size=settings.event_queue)
        self.store = SQLiteStore(self.state.db, on_change=self.bus.publish)
        self.api_port = 0
        self.static_port = 0
        self.cert: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.settings.scheme}://{url_host(self.settings.bind)}:{self.api_port}"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config as HyperConfig
        from hypercorn.config import Sockets
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        from .api.app import create_app
        from .api.context import ApiContext
        from .content import ContentService
        from .params import ParamChecker
        from .plugins.manager import ParamsHooks, PluginManager
        from .plugins.runtime import RuntimeDirError
        from .plugins.runtime import prepare as prepare_runtime_dir
        from .secure import SecureParams
        from .secure import load_or_create_key as load_secure_key
        from .static import StaticFiles
        from .tls import ensure_certificate

        settings = self.settings
        with ExitStack() as stack:
            lock_state_dir(self.state, stack)
            try:
                await self.store.open()
            except Exception as exc:
                raise StartupError(f"cannot open the store {self.state.db}: {exc}") from None
            try:
                loopback = is_loopback(settings.bind)
                users = self.store.list("users")
                if not loopback and not users:
                    raise StartupError(
                        f"drpd binds {settings.bind}, which is not a loopback address: "
                        "set an admin password first with `drpd passwd <user>`"
                    )
                auth = Authenticator(
                    await trio.to_thread.run_sync(load_or_create_key, self.state.root / "token.key"),
                    password_hash_of=self._password_hash_of,
                    default_user=loopback and self.store.get("users", DEFAULT_USER) is None,
                    cache_seconds=settings.basic_auth_cache,
                    # an instance's token lasts until the instance is destroyed
                    token_revoked=lambda claims: self.store.get("plugins", claims.i) is None,
                )
                api_sock = bind_socket(settings.bind, settings.api_port, "API")
                stack.callback(api_sock.close)
                static_sock = bind_socket(settings.bind, settings.static_port, "static file server")
                stack.callback(static_sock.close)
                self.api_port = api_sock.getsockname()[1]
                self.static_port = static_sock.getsockname()[1]
                context = ApiContext(
                    settings=settings, store=self.store, bus=self.bus, auth=auth,
                    api_port=self.api_port, static_port=self.static_port, version=__version__,
                    params=ParamChecker(self.store), content=ContentService(self.store),
                    secure=SecureParams(await trio.to_thread.run_sync(
                        load_secure_key, self.state.root / "secure.key"), self.store),
                )
                self.context = context
                if not settings.no_tls:
                    self.cert, _ = await trio.to_thread.run_sync(
                        ensure_certificate, self.state.tls, settings.bind
                    )
                api_config = HyperConfig()
                api_config.keep_alive_timeout = 75
                api_config.graceful_timeout = min(5.0, settings.shutdown_timeout)
                api_config.accesslog = None
                api_config.errorlog = logging.getLogger("hypercorn.error")
                if settings.no_tls:
                    api_sockets = Sockets([], [api_sock], [])
                else:
                    assert self.cert is not None
                    api_config.certfile = str(self.cert)
                    api_config.keyfile = str(self.cert.with_name("server.key"))
                    api_sockets = Sockets([api_sock], [], [])
                try:
                    manager = PluginManager(
                        settings, self.store, auth, state_root=self.state.root,
                        files_dir=self.state.files, endpoint=self.endpoint,
                        fileserver=f"http://{url_host(settings.bind)}:{self.static_port}",
                        ca_cert=self.cert, params=context.params, content=context.content,
                    )
                    await trio.to_thread.run_sync(prepare_runtime_dir, manager.runtime_dir)
                except RuntimeDirError as exc:
                    raise StartupError(str(exc)) from None
                context.manager = manager
                manager.secure = context.secure
                context.hooks["plugins"] = manager
                context.hooks["params"] = ParamsHooks(manager)
                static_config = HyperConfig()
                static_config.accesslog = None
                static_config.errorlog = logging.getLogger("hypercorn.error")
                static_config.graceful_timeout = 1.0
                app = create_app(context)
                async with trio.open_nursery() as nursery:
                    await nursery.start(manager.run)
                    await nursery.start(self._serve, worker_serve, wrap_app(app, 0, "asgi"),
                                        api_config, api_sockets)
                    await nursery.start(self._serve, worker_serve,
                                        wrap_app(StaticFiles(self.state.files), 0, "asgi"),
                                        static_config, Sockets([], [static_sock], []))
                    log.info("serving %s (static files on port %d)", self.endpoint,
                             self.static_port)
                    task_status.started(self.endpoint)
            finally:
                with trio.CancelScope(shield=True):
                    await self.store.aclose()

    @staticmethod
    async def _serve(worker_serve: Any, app: Any, config: Any, sockets: Any,
                     *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await worker_serve(app, config, sockets=sockets, task_status=task_status)

    def _password_hash_of(self, user: str) -> str | None:
        record = self.store.get("users", user)
        return None if record is None else record.obj.PasswordHash


async def serve(settings: Settings) -> int:
    daemon = Daemon(settings)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            endpoint = await nursery.start(daemon.run)
            print(f"drpd: serving {endpoint}", flush=True)
            async for signum in signals:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                break
            nursery.cancel_scope.deadline = trio.current_time() + settings.shutdown_timeout
            nursery.cancel_scope.cancel()
    return 0


# -- command line ---------------------------------------------------------------
def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (see conf/drpd.toml)")
    parser.add_argument("--state-dir", help="store, certificates, file space")
    parser.add_argument("--api-port", type=int, help="API port (0 picks a free one)")
    parser.add_argument("--static-port", type=int, help="static file server port")
    parser.add_argument("--bind", help="address to listen on")
    parser.add_argument("--plugin-dir", help="provider executables (default <state-dir>/plugins)")
    parser.add_argument("--no-tls", action="store_const", const=True, help="serve plain HTTP")
    parser.add_argument("--log-level", help="debug, info, warning, error")


def _settings_from(args: argparse.Namespace) -> Settings:
    flags = {k: v for k, v in vars(args).items() if k in FIELDS}
    return load_settings(flags, config_file=args.config)


def _read_new_password(user: str) -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"New password for {user}: ")
        if getpass.getpass("Again: ") != password:
            raise StartupError("the passwords differ")
    if not password:
        raise StartupError("an empty password is not allowed")
    return password


async def set_password(settings: Settings, user: str, password: str) -> None:
    from .auth import hash_password
    from .models import User
    from .models.names import check_name

    check_name(user, model="users")
    state = prepare_state_dir(settings)
    with ExitStack() as stack:
        try:
            lock_state_dir(state, stack)
        except StartupError:
            raise StartupError(
                "drpd is running on this state directory: set the password with "
                f"`drpcli users password {user} <password>` instead"
            ) from None
        store = SQLiteStore(state.db)
        await store.open()
        try:
            hashed = await trio.to_thread.run_sync(hash_password, password)
            if store.get("users", user) is None:
                await store.create(
                    "users", User(Name=user, PasswordHash=hashed, Validated=True, Available=True),
                    principal="drpd-passwd",
                )
            else:
                import msgspec

                await store.modify(
                    "users", user, lambda old: msgspec.structs.replace(old, PasswordHash=hashed),
                    principal="drpd-passwd",
                )
        finally:
            await store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drpd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"drpd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the daemon")
    _add_setting_flags(serve_p)
    passwd_p = sub.add_parser("passwd", help="set a user's password (prompt or stdin)")
    passwd_p.add_argument("user")
    _add_setting_flags(passwd_p)
    args = parser.parse_args(argv)
    try:
        return _run_command(args)
    except BaseExceptionGroup as group:
        # a start-up failure inside the root nursery arrives wrapped
        found, rest = group.split((StartupError, ConfigError))
        if found is None:
            raise
        first: BaseException = found
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        print(f"drpd: cannot start: {first}", file=sys.stderr)
        return 1


def _run_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings_from(args)
        setup_logging(settings.log_level)
        if args.command == "serve":
            return trio.run(serve, settings)
        if args.command == "passwd":
            password = _read_new_password(args.user)
            trio.run(set_password, settings, args.user, password)
            print(f"drpd: password set for {args.user}")
            return 0
    except (ConfigError, StartupError) as exc:
        print(f"drpd: cannot start: {exc}" if args.command == "serve" else f"drpd: {exc}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
