"""``drpd``: the daemon's entry point.

``drpd serve`` builds the parts (store, bus, auth, API, static server,
plugin controller), each given its collaborators by constructor, and runs
them under one root nursery. SIGTERM or SIGINT
begin an ordered shutdown bounded by ``shutdown_timeout`` (``Daemon``);
SIGHUP reloads the configuration. Under systemd it reports READY, STATUS,
RELOADING, STOPPING and watchdog pings (``notify``). ``drpd backup`` and
``drpd restore`` copy the store out and back (``backup``); ``drpd passwd``
sets a password while drpd is stopped.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import getpass
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec
import trio

from . import __version__, metrics
from .access import Authorizer, ensure_builtin_roles
from .auth import Authenticator, is_loopback, load_or_create_key
from .backup import KEEP_SUFFIX, BackupError, backup, match_owner, restore
from .bus import EventBus
from .config import FIELDS, RESTART_ONLY, ConfigError, Settings, load_settings
from .leases import Leases, LocalLeases, lease_table_of
from .logs import set_level, setup_logging
from .nodes import Nodes, table_of, this_node
from .notify import Notifier, watchdog, watchdog_interval
from .store import Store, is_postgres, make_store, redact
from .store.sqlite import now_rfc3339
from .sweep import sweep_temporaries

if TYPE_CHECKING:  # imported where the API is built: a CLI command needs none of it
    from .api.hot_http import HotHTTP
    from .api.websocket import RawWebsocket

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
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if root.stat().st_uid == os.geteuid():
            # keys, store and certificates inside: drpd's user only, whatever the umask
            os.chmod(root, 0o700)
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


#: why a Go-SDK provider's event stream fails under --no-tls (in /info's errors and the log)
NO_TLS_GO_EVENTS = (
    "drpd serves plain HTTP (--no-tls): providers built with DRP's Go SDK that watch events "
    "cannot connect, because DRP's Go client always dials the event websocket with TLS "
    "(wss://); run drpd with TLS for them")


async def ensure_global_profile(store: Store) -> None:
    """DRP's ``global`` profile always exists: its params apply to every machine."""
    from .models import Profile

    if store.get("profiles", "global") is None:
        await store.create("profiles", Profile(
            Name="global", Description="Params every machine has after its own profiles",
            Validated=True, Available=True), principal="drpd")


@dataclass
class _Parts:
    """What ``Daemon._build`` made, ready to run."""

    controller: Any
    app: Any
    api_config: Any
    api_sockets: Any
    static_config: Any
    static_sockets: Any
    metrics_sockets: Any
    hyper_config: Callable[[], Any]
    nodes: Nodes
    leases: LocalLeases | Leases
    #: /api/v3/ws, served before hypercorn
    websocket: RawWebsocket
    #: the hot routes' requests, served before hypercorn
    hot: HotHTTP


class Daemon:
    """The running parts of one drpd, wired together.

    ``run`` starts them and returns only after an ordered shutdown, which
    ``request_stop`` begins (serve() calls it on SIGTERM / SIGINT):

    1. ``STOPPING=1``; the API, static and metrics listeners stop accepting
       connections, and requests in flight get hypercorn's graceful period;
    2. every supervisor stops its provider (docs/protocol.md section 5), all at once;
    3. providers still alive shortly before ``shutdown_timeout`` are
       SIGKILLed, with anything carrying drpd's run marker, so the bound
       holds even for providers that ignore /stop and SIGTERM;
    4. the store is closed (its WAL checkpointed).
    """

    def __init__(self, settings: Settings, *, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.state = prepare_state_dir(settings)
        self.bus = EventBus(retain=settings.event_retain, queue_size=settings.event_queue,
                            retain_bytes=settings.event_retain_bytes,
                            queue_bytes=settings.event_queue_bytes,
                            max_patterns=settings.max_ws_patterns)
        self.store: Store = make_store(settings.store_url, self.state.db,
                                       on_change=self.bus.publish)
        self.notifier = notifier or Notifier(None)
        self.metrics = metrics.Metrics()
        self.api_port = 0
        self.static_port = 0
        self.metrics_port = 0
        self.cert: Path | None = None
        #: the plugin controller (drpd.plugins.controller), once built
        self.controller: Any = None
        self.app: Any = None
        #: True from READY=1 until shutdown begins: SIGHUP is honoured then
        self.running = False
        self.stop_requested = trio.Event()

    @property
    def endpoint(self) -> str:
        return f"{self.settings.scheme}://{url_host(self.settings.bind)}:{self.api_port}"

    @property
    def node_endpoint(self) -> str:
        """The API URL other nodes reach this one at: ``127.0.0.1`` only works
        for a node on the same machine, so a wildcard bind advertises this
        host's name (in drpd's certificate too)."""
        if self.settings.node_endpoint:
            return self.settings.node_endpoint.rstrip("/")
        if self.settings.bind in ("0.0.0.0", "", "::"):
            host = socket.gethostname() or "127.0.0.1"
            return f"{self.settings.scheme}://{host}:{self.api_port}"
        return self.endpoint

    def request_stop(self) -> None:
        """Begin the ordered shutdown (once ``run`` has started everything)."""
        self.stop_requested.set()

    def status(self) -> str:
        """One line for ``systemctl status``: instance counts and the endpoint."""
        sups = list(self.controller.supervisors.values()) if self.controller is not None else []
        available = sum(1 for sup in sups if sup.available)
        failing = sum(1 for sup in sups if metrics.is_failing(sup))
        return (f"{available} of {len(sups)} instance(s) available, {failing} failing; "
                f"API {self.endpoint}")

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Build the parts (``_build``), then run them under one nursery until stopped."""
        from hypercorn.trio.run import worker_serve
        from hypercorn.typing import ASGIFramework
        from hypercorn.utils import wrap_app

        from .api.server import serve_api
        from .static import StaticFiles

        with ExitStack() as stack:
            lock_state_dir(self.state, stack)
            # under the lock: no other drpd writes these
            await trio.to_thread.run_sync(sweep_temporaries, self.state.root, self.state.files,
                                          self.settings.plugin_path)
            where = redact(self.settings.store_url) or str(self.state.db)
            try:
                await self.store.open()
            except Exception as exc:
                detail = str(exc)
                if self.settings.store_url:  # never a password in a message
                    detail = detail.replace(self.settings.store_url, where)
                raise StartupError(f"cannot open the store {where}: {detail}") from None
            log.info("store: %s", where)
            await ensure_global_profile(self.store)
            # events of an earlier run are not retained: resumes from before are gaps
            self.bus.resume_from(self.store.last_seq)
            try:
                parts = await self._build(stack)
                controller = parts.controller
                # set by the shutdown: every listener stops accepting
                listeners_stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.bus.pace)  # event fan-out, a few at a time
                    serve_store = getattr(self.store, "serve", None)
                    if serve_store is not None:  # other nodes' changes reach this one
                        await nursery.start(serve_store)
                    await nursery.start(parts.nodes.serve)
                    controller_scope = trio.CancelScope()
                    controller_done = trio.Event()
                    await nursery.start(_in_scope, controller_scope, controller_done,
                                        controller.run)
                    # leases after the controller: what they give it, it starts
                    leases_scope = trio.CancelScope()
                    await nursery.start(_in_scope, leases_scope, trio.Event(),
                                        parts.leases.serve)
                    await nursery.start(_serve, partial(serve_api, websocket=parts.websocket, hot=parts.hot),
                                        wrap_app(parts.app, 0, "asgi"),
                                        parts.api_config, parts.api_sockets, listeners_stop)
                    await nursery.start(_serve, worker_serve,
                                        wrap_app(cast(ASGIFramework, StaticFiles(self.state.files)), 0, "asgi"),
                                        parts.static_config, parts.static_sockets,
                                        listeners_stop)
                    if parts.metrics_sockets is not None:
                        await nursery.start(_serve, worker_serve,
                                            wrap_app(cast(ASGIFramework, metrics.MetricsApp(self.metrics)),
                                                     0, "asgi"),
                                            _plain_config(parts.hyper_config()),
                                            parts.metrics_sockets, listeners_stop)
                        log.info("metrics without authentication on http://%s:%d/metrics",
                                 url_host(self.settings.bind), self.metrics_port)
                    log.info("serving %s (static files on port %d)", self.endpoint,
                             self.static_port)
                    self.running = True
                    self.notifier.ready(self.status())
                    background = trio.CancelScope()
                    await nursery.start(self._background, background)
                    task_status.started(self.endpoint)
                    await self.stop_requested.wait()
                    await self._shutdown(nursery, controller, controller_scope, controller_done,
                                         listeners_stop)
                    # renewed until the providers stopped (fencing), then given up so
                    # another node takes the instances over now, not at lease end
                    leases_scope.cancel()
                    await parts.leases.release()
                    background.cancel()
                    # what is left runs until cancelled: the store's change feed
                    # and the node heartbeat (the plugin side stopped above)
                    nursery.cancel_scope.cancel()
            finally:
                self.running = False
                with trio.CancelScope(shield=True):
                    await self.store.aclose()
                self.notifier.status("stopped")

    async def _build(self, stack: ExitStack) -> _Parts:
        """Make every part, each given its collaborators by constructor; start nothing.

        Sockets are bound here (a port in use fails the start at once), and
        closed by ``stack``.
        """
        import uuid

        from hypercorn.config import Config as HyperConfig
        from hypercorn.config import Sockets

        from .api.app import create_app
        from .api.context import ApiContext
        from .api.events import WsFront
        from .api.hot_http import HotHTTP
        from .api.hot_routes import HotRoutes
        from .api.websocket import RawWebsocket
        from .content import ContentService
        from .params import ParamChecker
        from .plugins.controller import (
            PluginController,
            PluginsHooks,
            provider_environment,
            verb_environment,
        )
        from .plugins.identity import ProviderUserError
        from .plugins.identity import resolve as resolve_provider_user
        from .plugins.left import LeftInstances
        from .plugins.providers import BlobTable, ProviderRegistry
        from .plugins.runtime import RuntimeDirError, runtime_dir
        from .plugins.runtime import prepare as prepare_runtime_dir
        from .secure import SecureParams
        from .secure import load_or_create_key as load_secure_key
        from .tls import ensure_certificate

        settings = self.settings
        loopback = is_loopback(settings.bind)
        # only a user with a real password counts: one created without one cannot log in
        if not loopback and not any(r.obj.PasswordHash for r in self.store.list("users")):
            raise StartupError(
                f"drpd binds {settings.bind}, which is not a loopback address: "
                "set an admin password first with `drpd passwd <user>`"
            )
        token_key = await trio.to_thread.run_sync(load_or_create_key,
                                                  self.state.root / "token.key")
        secure_key = await trio.to_thread.run_sync(load_secure_key,
                                                   self.state.root / "secure.key")
        shared = getattr(self.store, "shared_secret", None)
        if shared is not None:
            # nodes sharing the store sign tokens and seal Secure params alike
            token_key = await shared("token", token_key)
            secure_key = await shared("secure", secure_key)
        auth = Authenticator(
            token_key,
            user_of=self._user_of,
            # an instance's token lasts until the instance is destroyed
            instance_secret_of=self._instance_secret_of,
            default_user=loopback,
            cache_seconds=settings.basic_auth_cache,
            failures_allowed=settings.login_failures_allowed,
            backoff_max=settings.login_backoff_max,
        )
        api_sock = bind_socket(settings.bind, settings.api_port, "API")
        stack.callback(api_sock.close)
        static_sock = bind_socket(settings.bind, settings.static_port, "static file server")
        stack.callback(static_sock.close)
        metrics_sockets = None
        if settings.metrics_port >= 0:
            metrics_sock = bind_socket(settings.bind, settings.metrics_port, "metrics")
            stack.callback(metrics_sock.close)
            self.metrics_port = metrics_sock.getsockname()[1]
            metrics_sockets = Sockets([], [metrics_sock], [])
        self.api_port = api_sock.getsockname()[1]
        self.static_port = static_sock.getsockname()[1]
        if not settings.no_tls:
            self.cert, _ = await trio.to_thread.run_sync(
                ensure_certificate, self.state.tls, settings.bind)
        params = ParamChecker(self.store)
        secure = SecureParams(secure_key, self.store)
        content = ContentService(self.store, secure=secure)

        # the plugin side: providers, "left" instances, the controller
        run_id = uuid.uuid4().hex
        try:
            provider_user = resolve_provider_user(settings.provider_user)
        except ProviderUserError as exc:
            raise StartupError(str(exc)) from None
        if provider_user is None and os.geteuid() == 0:
            log.warning("providers run as root and can read drpd's keys and store: set "
                        "provider_user (or create the user drpd-provider) to run them as "
                        "an unprivileged user")
        elif provider_user is not None:
            log.info("providers run as user %s (uid %d)", provider_user.name, provider_user.uid)
        try:
            sockets_dir = runtime_dir(self.state.root, for_others=provider_user is not None)
            await trio.to_thread.run_sync(prepare_runtime_dir, sockets_dir)
            if provider_user is not None:
                await trio.to_thread.run_sync(self._let_providers_through, sockets_dir)
        except RuntimeDirError as exc:
            raise StartupError(str(exc)) from None
        env = provider_environment(
            endpoint=self.endpoint, ca_cert=self.cert,
            fileserver=f"http://{url_host(settings.bind)}:{self.static_port}",
            files_dir=self.state.files, run_id=run_id)
        blobs = getattr(self.store, "blob_get", None) and cast(BlobTable, self.store)
        registry = ProviderRegistry(settings, self.store, content, state_root=self.state.root,
                                    files_dir=self.state.files,
                                    env=verb_environment(env, auth, settings),
                                    user=provider_user, blobs=blobs or None,
                                    fetched=lambda: controller.leases_changed())
        me = this_node(self.state.root, self.node_endpoint, now_rfc3339(), settings.node_name)
        cert_pem = "" if self.cert is None else await trio.to_thread.run_sync(
            self.cert.read_text)
        info_errors = [NO_TLS_GO_EVENTS] if settings.no_tls else []
        nodes = Nodes(me, table_of(self.store), weight=settings.node_weight, cert=cert_pem,
                      files=self.state.files, problems=info_errors)
        table = lease_table_of(self.store)
        leases: LocalLeases | Leases = LocalLeases(me)
        if table is not None:  # several nodes may share the store: each instance runs once
            leases = Leases(
                table, me, settings,
                instances=lambda: [r.obj.Name for r in self.store.list("plugins")],
                statuses=lambda names: controller.statuses(names),
                changed=lambda: controller.leases_changed())
        controller = PluginController(
            settings, self.store, self.bus, auth, registry,
            LeftInstances(self.state.root / "plugins-left.json"), params=params, env=env,
            run_id=run_id, runtime_dir=sockets_dir, scratch_root=self.state.root / "scratch",
            secure=secure, observe_action=self.metrics.observe_action, leases=leases)
        self.controller = controller
        self.metrics.bind(manager=controller, bus=self.bus, version=__version__)
        await ensure_builtin_roles(self.store)
        access = Authorizer(self.store, controller.actions.inflight,
                            default_user=auth.default_user)
        access.bind_providers(registry.providers.get)
        context = ApiContext(
            settings=settings, store=self.store, bus=self.bus, auth=auth,
            api_port=self.api_port, static_port=self.static_port, version=__version__,
            address=url_host(settings.bind).strip("[]"),
            info_errors=info_errors,
            files_dir=self.state.files, metrics=self.metrics, params=params, content=content,
            secure=secure, plugins=controller, hooks={"plugins": PluginsHooks(controller)},
            nodes=nodes, access=access,
        )
        self.app = create_app(context)
        # the websocket: taken before hypercorn (RawWebsocket), or in front of
        # quart for an upgrade that reaches hypercorn (WsFront)
        hot_routes = HotRoutes(self.app, context)
        served = WsFront(hot_routes, context)
        websocket = RawWebsocket(context)

        def hyper_config() -> Any:
            return HyperConfig()

        api_config = HyperConfig()
        api_config.keep_alive_timeout = 75
        api_config.graceful_timeout = min(5.0, settings.shutdown_timeout)
        api_config.accesslog = None
        api_config.errorlog = logging.getLogger("hypercorn.error")
        if settings.no_tls:
            log.warning(NO_TLS_GO_EVENTS)
            api_sockets = Sockets([], [api_sock], [])
        else:
            assert self.cert is not None
            api_config.certfile = str(self.cert)
            api_config.keyfile = str(self.cert.with_name("server.key"))
            api_sockets = Sockets([api_sock], [], [])
        return _Parts(controller=controller, app=served, api_config=api_config,
                      api_sockets=api_sockets, static_config=_plain_config(HyperConfig()),
                      static_sockets=Sockets([], [static_sock], []),
                      metrics_sockets=metrics_sockets, hyper_config=hyper_config,
                      nodes=nodes, leases=leases, websocket=websocket,
                      hot=HotHTTP(hot_routes, api_config))

    async def _shutdown(self, nursery: trio.Nursery, controller: Any,
                        controller_scope: trio.CancelScope, controller_done: trio.Event,
                        listeners_stop: trio.Event) -> None:
        """Steps 1-3 of the ordered shutdown (the class docstring), within the bound."""
        self.running = False
        timeout = self.settings.shutdown_timeout
        deadline = trio.current_time() + timeout
        # the last resort: nothing unshielded outlives the bound
        nursery.cancel_scope.deadline = deadline
        count = sum(1 for sup in controller.supervisors.values() if sup.pid)
        self.notifier.stopping(f"stopping {count} provider(s)")
        log.info("shutting down: stopping %d provider(s) within %g s", count, timeout)
        listeners_stop.set()
        self.bus.shutdown()  # websocket connections close now, not after the graceful period
        controller_scope.cancel()
        # leave time after the kill for the supervisors and the store to finish
        with trio.move_on_at(deadline - min(2.0, timeout / 5)):
            await controller_done.wait()
        if not controller_done.is_set():
            killed = await kill_providers(controller)
            log.warning("shutdown: %d provider process(es) had not stopped in time: killed",
                        killed)

    async def _background(self, scope: trio.CancelScope, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The watchdog pings and STATUS updates, until the shutdown is done."""
        with scope:
            async with trio.open_nursery() as nursery:
                interval = watchdog_interval()
                if self.notifier.enabled:
                    if interval is not None:
                        log.info("systemd watchdog: pinging every %g s", interval)
                        nursery.start_soon(watchdog, self.notifier, interval)
                    nursery.start_soon(self._report_status)
                task_status.started()

    async def _report_status(self) -> None:
        """Send STATUS= when the counts change (checked every second)."""
        while True:
            await trio.sleep(STATUS_INTERVAL)
            status = self.status()
            if self.running and status != self.notifier.last_status:
                self.notifier.status(status)

    async def reload(self, load: Callable[[], Settings]) -> None:
        """SIGHUP: read the settings again and apply what can change live.

        A new configuration that does not load is logged and ignored: the
        running one stays, whole.
        """
        self.notifier.reloading()
        try:
            new = await trio.to_thread.run_sync(load)
        except ConfigError as exc:
            log.error("configuration not reloaded, the running one stays: %s", exc)
        except Exception:
            log.exception("configuration not reloaded, the running one stays")
        else:
            self.apply_settings(new)
        self.notifier.ready(self.status())

    def apply_settings(self, new: Settings) -> None:
        """Copy every live-changeable setting into the running ``Settings``.

        The parts share one ``Settings`` object and read timeouts and limits
        where they use them, so changing it in place applies at once; the
        few values copied elsewhere at start are updated here too.
        """
        current = self.settings
        changes = {name: (getattr(current, name), getattr(new, name)) for name in FIELDS
                   if getattr(current, name) != getattr(new, name)}
        applied = []
        for name, (before, after) in sorted(changes.items()):
            if name in RESTART_ONLY:
                log.warning("configuration: %s changed (%r -> %r): takes effect when drpd "
                            "restarts", name, before, after)
                continue
            setattr(current, name, after)
            applied.append(f"{name} {before!r} -> {after!r}")
        set_level(current.log_level)
        self.bus.queue_size = current.event_queue
        self.bus.queue_bytes = current.event_queue_bytes
        self.bus.retain_bytes = current.event_retain_bytes
        self.bus.max_patterns = current.max_ws_patterns
        if self.app is not None:
            self.app.config["BODY_TIMEOUT"] = current.body_timeout
        if self.controller is not None:
            self.controller.settings_changed()  # specs built again from the new settings
        log.info("configuration reloaded: %s", "; ".join(applied) or "nothing to change")
        log.debug("effective configuration: %s", msgspec.json.encode(current).decode())

    async def handle_signals(self, signals: AsyncIterator[int],
                             load: Callable[[], Settings] | None,
                             serve_scope: trio.CancelScope) -> None:
        """SIGTERM/SIGINT stop drpd, SIGHUP reloads its configuration.

        A stop during start-up cannot be ordered yet: it cancels the start
        (bounded by ``shutdown_timeout``) instead.
        """
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if not self.running or load is None:
                    log.warning("received SIGHUP while starting or stopping: ignored")
                    continue
                log.info("received SIGHUP: reloading the configuration")
                await self.reload(load)
                continue
            if self.stop_requested.is_set():
                log.info("received %s: already shutting down", name)
                continue
            log.info("received %s: shutting down", name)
            self.request_stop()
            if not self.running:
                self.notifier.stopping("stopping during start-up")
                serve_scope.deadline = trio.current_time() + self.settings.shutdown_timeout
                serve_scope.cancel()

    def _let_providers_through(self, sockets_dir: Path) -> None:
        """With ``provider_user``: the provider's user may traverse (not list)
        the directories on the way to its binary, its scratch and its sockets;
        everything in them keeps its own mode (keys and store 0600)."""
        scratch = self.state.root / "scratch"
        scratch.mkdir(mode=0o711, exist_ok=True)
        plugins = self.settings.plugin_path
        plugins.mkdir(mode=0o711, parents=True, exist_ok=True)
        for path in (self.state.root, scratch, plugins, sockets_dir):
            os.chmod(path, 0o711)

    def _user_of(self, user: str) -> Any:
        record = self.store.get("users", user)
        return None if record is None else record.obj

    def _instance_secret_of(self, name: str) -> str | None:
        record = self.store.get("plugins", name)
        return None if record is None else record.obj.Secret


#: seconds between checks for a STATUS= change
STATUS_INTERVAL = 1.0


def _plain_config(config: Any) -> Any:
    """hypercorn settings of the small listeners (static files, metrics)."""
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    return config


async def _in_scope(scope: trio.CancelScope, done: trio.Event, fn: Any, *,
                    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``fn`` under a cancel scope of its own: one part stops, the rest go on."""
    try:
        with scope:
            await fn(task_status=task_status)
    finally:
        done.set()


async def _serve(worker_serve: Any, app: Any, config: Any, sockets: Any, stop: trio.Event,
                 *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until ``stop`` is set, then close the listening sockets at once.

    hypercorn stops accepting on ``stop`` and gives requests in flight its
    graceful period; closing the sockets after it makes new connections fail
    fast instead of waiting in the backlog until drpd exits.
    """
    try:
        await worker_serve(app, config, sockets=sockets, shutdown_trigger=stop.wait,
                           task_status=task_status)
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()


async def kill_providers(controller: Any) -> int:
    """SIGKILL every provider process group and every process with drpd's run marker."""
    from .plugins.processes import RUN_VAR, kill_marked, signal_group

    count = 0
    for sup in list(controller.supervisors.values()):
        if sup.pid:
            signal_group(sup.pid, signal.SIGKILL)
            count += 1
    count += await trio.to_thread.run_sync(kill_marked, RUN_VAR, controller.run_id)
    return count


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one; returns (soft, hard).

    200 instances hold two sockets, two pipes and a pool of connections
    each; the common soft default of 1024 is too few. systemd's default hard
    limit (524288) is plenty. Providers inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft, hard


async def serve(settings: Settings, load: Callable[[], Settings] | None = None) -> int:
    """``drpd serve``: run a Daemon until SIGTERM / SIGINT; SIGHUP reloads via ``load``."""
    notifier = Notifier.from_env()
    daemon = Daemon(settings, notifier=notifier)
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.handle_signals, signals, load, nursery.cancel_scope)
                try:
                    async with trio.open_nursery() as inner:
                        endpoint = await inner.start(daemon.run)
                        print(f"drpd: serving {endpoint}", flush=True)
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        notifier.close()
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
    parser.add_argument("--store", dest="store_url", metavar="URL",
                        help="postgresql://user:password@host:port/db (default: the embedded "
                             "SQLite store in the state directory)")
    parser.add_argument("--provider-user",
                        help="run providers as this user (needs root; keeps them from drpd's keys)")


def _add_state_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (see conf/drpd.toml)")
    parser.add_argument("--state-dir", help="drpd's state directory")


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
    from .auth import hash_password, new_secret
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
        store = make_store(settings.store_url, state.db)
        await store.open()
        try:
            hashed = await trio.to_thread.run_sync(hash_password, password)
            if store.get("users", user) is None:
                await store.create(
                    # the host's administrator makes an administrator
                    "users", User(Name=user, PasswordHash=hashed, Secret=new_secret(), Validated=True,
                                 Available=True, Roles=["superuser"]),
                    principal="drpd-passwd",
                )
            else:
                import msgspec

                def reset(old: Any) -> Any:
                    return msgspec.structs.replace(old, PasswordHash=hashed, Secret=new_secret())

                await store.modify("users", user, reset, principal="drpd-passwd")
        finally:
            await store.aclose()


def backup_command(settings: Settings, dest: Path) -> int:
    if is_postgres(settings.store_url):
        raise StartupError("the store is PostgreSQL: back it up with pg_dump (drpd backup "
                           "copies the embedded SQLite store)")
    state = StateDir(Path(settings.state_dir).absolute())
    count = backup(state.db, dest)
    print(f"drpd: backed up {count} object(s) from {state.db} to {dest}")
    return 0


def restore_command(settings: Settings, source: Path) -> int:
    if is_postgres(settings.store_url):
        raise StartupError("the store is PostgreSQL: restore it with pg_restore or psql")
    root = Path(settings.state_dir).absolute()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"state directory {root} is not usable: {exc.strerror}") from None
    state = StateDir(root)
    lock = root / "drpd.lock"
    created = not lock.exists()
    with ExitStack() as stack:
        try:
            lock_state_dir(state, stack)
        except StartupError:
            raise StartupError(
                f"drpd is running on {root}: stop it first (systemctl stop drpd)") from None
        if created:
            match_owner(lock, root)
        count = restore(source, root)
    print(f"drpd: restored {count} object(s) from {source} into {state.db} "
          f"(the store it replaced, if any, is kept as {state.db.name}{KEEP_SUFFIX})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drpd",
        description="drpd runs Digital Rebar Provision (DRP v4) plugin providers "
                    "and serves DRP's REST API, events and file space.",
        epilog="drpcli talks to a running drpd (drpcli --help).")
    parser.add_argument("--version", action="version", version=f"drpd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the daemon")
    _add_setting_flags(serve_p)
    passwd_p = sub.add_parser("passwd", help="set a user's password (prompt or stdin)")
    passwd_p.add_argument("user")
    _add_setting_flags(passwd_p)
    backup_p = sub.add_parser(
        "backup", help="copy the store to FILE consistently (also while drpd runs)")
    backup_p.add_argument("file")
    _add_state_flags(backup_p)
    restore_p = sub.add_parser(
        "restore", help="put a backup FILE back as the store of a stopped drpd")
    restore_p.add_argument("file")
    _add_state_flags(restore_p)
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
        return _cannot_start(str(first))


def _cannot_start(reason: str) -> int:
    """One line on stderr, and the same as systemd's STATUS (``systemctl status``)."""
    print(f"drpd: cannot start: {reason}", file=sys.stderr)
    notifier = Notifier.from_env()
    notifier.status(f"cannot start: {reason}")
    notifier.close()
    return 1


def _run_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings_from(args)
        setup_logging(settings.log_level)
        if args.command == "serve":
            raise_nofile_limit()
            return trio.run(serve, settings, lambda: _settings_from(args))
        if args.command == "backup":
            return backup_command(settings, Path(args.file))
        if args.command == "restore":
            return restore_command(settings, Path(args.file))
        if args.command == "passwd":
            password = _read_new_password(args.user)
            trio.run(set_password, settings, args.user, password)
            print(f"drpd: password set for {args.user}")
            return 0
    except (ConfigError, StartupError, BackupError) as exc:
        if args.command == "serve":
            return _cannot_start(str(exc))
        print(f"drpd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
