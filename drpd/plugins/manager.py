"""The plugin manager: one nursery holding one supervisor per instance.

It owns the installed providers (``ProviderRegistry``), starts a supervisor
for every stored instance, and takes part in API writes to ``plugins``
(``KindHooks``): a write settles (the instance is available, or has
failed) before the API answers, and only a change of ``Params`` or
``Provider`` restarts the provider.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..auth import PROVIDER_PRINCIPAL, Authenticator
from ..bus import EventBus
from ..config import Settings
from ..content import ContentService
from ..models import KINDS, AvailableAction, Event, Plugin, PluginProvider, PluginRuntime
from ..models.extended import ExtendedKind, extended_kind
from ..models.names import is_fixed_route, is_valid_name
from ..params import MISSING, ParamChecker
from ..secure import SecureParams
from ..store import Record, Store, public_view
from . import runtime
from .actions import ActionDispatcher, Observer
from .processes import RUN_VAR, kill_marked
from .providers import ProviderRegistry
from .server_api import ServerApi
from .supervisor import Supervisor

log = logging.getLogger("drpd.plugins")
#: environment drpd's own service manager sets that providers must not inherit
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES", "RS_KEY", "RS_USERNAME", "RS_PASSWORD")


class PluginManager:
    def __init__(self, settings: Settings, store: Store, auth: Authenticator, *,
                 state_root: Path, files_dir: Path, endpoint: str, fileserver: str,
                 ca_cert: Path | None, params: ParamChecker | None = None,
                 content: ContentService | None = None, bus: EventBus | None = None,
                 secure: SecureParams | None = None,
                 observe_action: Observer | None = None) -> None:
        self.settings = settings
        self.store = store
        self.auth = auth
        self.state_root = state_root
        self.files_dir = files_dir
        self.endpoint = endpoint
        self.fileserver = fileserver
        self.ca_cert = ca_cert
        self.providers: dict[str, PluginProvider] = {}
        self.supervisors: dict[str, Supervisor] = {}
        self.registry = ProviderRegistry(self)
        self.actions = ActionDispatcher(self)
        if observe_action is not None:
            self.actions.observers.append(observe_action)
        #: HasPublish forwarding subscribes here (plugins/publisher.py)
        self.bus = bus
        self.server_api = ServerApi(self)
        self.params = params or ParamChecker(store)
        self.content = content or ContentService(store)
        self.run_id = uuid.uuid4().hex
        self.runtime_dir = runtime.runtime_dir(state_root)
        self._serial = 0
        self._verbs: dict[str, str] = {}
        self._left_file = state_root / "plugins-left.json"
        self._left: set[str] = set()
        self._tokens: dict[str, str] = {}
        self._nursery: trio.Nursery | None = None
        #: set when drpd stops: supervisors then skip their own /proc sweeps
        self.shutting_down = False
        self._base_env = self._make_base_env()
        #: secure params revealed to providers, when enabled
        self.secure = secure

    # -- running -------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(runtime.prepare, self.runtime_dir)
        self._left = await trio.to_thread.run_sync(self._load_left)
        reaper = await trio.lowlevel.open_process(
            [sys.executable, "-m", "drpd.plugins.reaper", self.run_id],
            stdin=subprocess.PIPE, start_new_session=True,
        )
        try:
            for record in self.store.list("plugin_providers"):
                self.providers[record.obj.Name] = record.obj
            await self.registry.recover()
            await self.registry.scan()
            self.sync_object_types()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for record in self.store.list("plugins"):
                    self._start(record.obj)
                nursery.start_soon(self.registry.watch)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    self.shutting_down = True
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                # one sweep for what any provider left behind, then the directory
                await trio.to_thread.run_sync(kill_marked, RUN_VAR, self.run_id)
                await trio.to_thread.run_sync(
                    lambda: shutil.rmtree(self.runtime_dir, ignore_errors=True))
                # end of file tells the reaper drpd is done; it sweeps and exits
                assert reaper.stdin is not None
                await reaper.stdin.aclose()
                with trio.move_on_after(10):
                    await reaper.wait()

    def _start(self, plugin: Plugin) -> Supervisor:
        assert self._nursery is not None, "the plugin manager is not running"
        sup = Supervisor(self, plugin)
        self.supervisors[plugin.Name] = sup
        self._nursery.start_soon(sup.run, name=f"supervisor:{plugin.Name}")
        return sup

    async def _stop(self, name: str) -> None:
        sup = self.supervisors.pop(name, None)
        if sup is not None:
            sup.scope.cancel()
            await sup.done.wait()

    @property
    def settle_timeout(self) -> float:
        s = self.settings
        return s.ready_timeout * 2 + s.config_timeout + s.stop_grace * 2 + 5

    # -- KindHooks for "plugins" ------------------------------------------------
    def present(self, record: Record, data: dict[str, Any]) -> dict[str, Any]:
        sup = self.supervisors.get(record.obj.Name)
        if sup is None:
            data.update(Available=False, Errors=["not running"], PluginErrors=[],
                        Runtime=msgspec.to_builtins(PluginRuntime()))
            return data
        data.update(Available=sup.available, Errors=list(sup.errors),
                    PluginErrors=list(sup.plugin_errors),
                    Runtime=msgspec.to_builtins(sup.runtime))
        return data

    def prepare(self, old: Any | None, new: Any) -> Any:
        # Available, Errors, PluginErrors and Runtime are runtime state, never stored
        new.Available = False
        new.Errors = []
        new.PluginErrors = []
        new.Runtime = None
        return new

    async def after_write(self, action: str, old: Record | None, new: Record | None,
                          wait: bool) -> None:
        if action == "delete":
            assert old is not None
            await self._stop(old.obj.Name)
            self._tokens.pop(old.obj.Name, None)
            if old.obj.Name in self._left:
                await self.set_left(old.obj.Name, False)
            return
        assert new is not None
        plugin: Plugin = new.obj
        sup = self.supervisors.get(plugin.Name)
        if sup is None:
            sup = self._start(plugin)
        else:
            before: Plugin = sup.plugin
            restart = (before.Params != plugin.Params or before.Provider != plugin.Provider
                       or sup.left)
            if sup.left:
                await self.set_left(plugin.Name, False)
            sup.update(plugin, restart=restart)
            if not restart:
                return
        if wait:
            with trio.move_on_after(self.settle_timeout):
                await sup.wait_settled()

    async def restart(self, name: str, *, wait: bool) -> None:
        sup = self.supervisors.get(name)
        if sup is None:
            return
        if sup.left:
            await self.set_left(name, False)
        sup.restart()
        if wait:
            with trio.move_on_after(self.settle_timeout):
                await sup.wait_settled()

    # -- the API's face (drpd.plugins.interface.PluginSide) -------------------------
    def instance(self, name: str) -> Supervisor | None:
        return self.supervisors.get(name)

    def log_lines(self, name: str) -> list[str]:
        sup = self.supervisors.get(name)
        return list(sup.log_lines) if sup is not None else []

    async def settled(self, name: str, seq: int) -> None:
        sup = self.supervisors.get(name)
        if sup is not None:
            with trio.move_on_after(self.settle_timeout):
                await sup.wait_settled()

    def listing(self, model: str, *, instance: str | None = None) -> list[AvailableAction]:
        return self.actions.listing(model, instance=instance)

    async def run_action(self, model: str, command: str, *, plugin: str | None,
                         instance: str | None, posted: dict[str, Any],
                         target: Any) -> tuple[int, bytes]:
        offer = self.actions.choose(model, command, plugin, instance=instance)
        params = self.actions.build_params(offer, posted, target, model=model)
        target_json = None if target is None else self.reveal_object(
            model, public_view(model, target))
        return await self.actions.call(offer, params, target_json)

    def has_provider(self, name: str) -> bool:
        return name in self.providers

    async def upload_provider(self, name: str, chunks: AsyncIterator[bytes]) -> PluginProvider:
        return await self.registry.upload(name, chunks)

    async def remove_provider(self, name: str) -> PluginProvider:
        return await self.registry.remove(name)

    # -- what supervisors ask ------------------------------------------------------
    def problem(self, plugin: Plugin) -> str | None:
        """Why the instance cannot start now, or None."""
        provider = self.providers.get(plugin.Provider)
        if provider is None:
            return f"provider {plugin.Provider!r} is not installed"
        missing = [name for name in provider.RequiredParams or []
                   if name not in plugin.Params and self.params.default(name) is MISSING]
        if missing:
            return f"missing required param{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        for name, value in self.reveal(plugin.Params).items():
            problem = self.params.problem(name, value)
            if problem:
                return problem
        return None

    def expanded_params(self, plugin: Plugin) -> dict[str, Any]:
        params = self.reveal(dict(plugin.Params))
        provider = self.providers.get(plugin.Provider)
        if provider is not None:
            for name in [*(provider.RequiredParams or []), *(provider.OptionalParams or [])]:
                if name not in params:
                    default = self.params.default(name)
                    if default is not MISSING:
                        params[name] = default
        return params

    def reveal(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params as providers see them: secure values in clear text."""
        secure = self.secure
        return {k: secure.reveal(v) for k, v in params.items()} if secure else params

    def reveal_object(self, prefix: str, data: Any) -> Any:
        """An object's JSON as providers see it: its secure param values in clear."""
        if self.secure is None or not isinstance(data, dict) or "Params" not in data:
            return data
        return {**data, "Params": self.reveal(data["Params"])}

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def scratch_dir(self, name: str) -> Path:
        path = self.state_root / "scratch" / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def binary_path(self, provider: str) -> Path:
        return self.settings.plugin_path / provider

    def verb_for(self, provider: str) -> str:
        return self._verbs.get(provider, "serve")

    def remember_verb(self, provider: str, verb: str) -> None:
        self._verbs[provider] = verb

    def _make_base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env["PATH"] = os.pathsep.join(
            [os.path.dirname(sys.executable), env.get("PATH", "/usr/bin:/bin")])
        env.update(
            RS_ENDPOINT=self.endpoint,
            RS_CA_CERT=str(self.ca_cert) if self.ca_cert else "",
            RS_FILESERVER=self.fileserver,
            RS_WEBROOT=str(self.files_dir),
        )
        env[RUN_VAR] = self.run_id
        return env

    def provider_env(self, instance: str | None, provider: str = "") -> dict[str, str]:
        """The environment of a provider verb; ``define`` and ``unpack`` (no
        instance) get a short-lived token of the provider, as DRP promises a
        token "in all cases"."""
        env = dict(self._base_env)
        if instance:
            env["RS_TOKEN"] = self.token_for(instance)
        else:
            ttl = int(self.settings.define_timeout) + 60
            env["RS_TOKEN"] = self.auth.issue(f"{PROVIDER_PRINCIPAL}{provider}", ttl)
        return env

    def token_for(self, instance: str) -> str:
        # not cached: the token is bound to the stored instance's Secret, and a
        # cache could outlive an instance destroyed and made again elsewhere
        return self.auth.issue(f"plugin:{instance}", None, instance=instance)

    async def lifecycle(self, name: str, action: str, obj: dict[str, Any]) -> None:
        await self.store.emit(Event(Type="plugins", Action=action, Key=name, Principal="drpd",
                                    Object=obj))

    # -- leaving -------------------------------------------------------------------
    def is_left(self, name: str) -> bool:
        return name in self._left

    async def set_left(self, name: str, left: bool) -> None:
        if left == (name in self._left):
            return
        if left:
            self._left.add(name)
        else:
            self._left.discard(name)
        await trio.to_thread.run_sync(self._save_left, sorted(self._left))

    def _load_left(self) -> set[str]:
        try:
            return set(json.loads(self._left_file.read_text()))
        except FileNotFoundError:
            return set()
        except (ValueError, OSError) as exc:
            log.error("cannot read %s (%s): no instance is kept stopped", self._left_file, exc)
            return set()

    def _save_left(self, names: list[str]) -> None:
        tmp = self._left_file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(names, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._left_file)

    # -- providers -------------------------------------------------------------------
    def sync_object_types(self) -> None:
        """Serve each installed provider's StoreObjects prefixes; keep the
        objects of prefixes nobody declares any more, read-only."""
        store = self.store
        declared: dict[str, tuple[str, Any]] = {}
        for provider in sorted(self.providers.values(), key=lambda p: p.Name):
            for prefix, schema in (provider.StoreObjects or {}).items():
                if prefix in KINDS or is_fixed_route(prefix) or not is_valid_name(prefix):
                    # a record stored by an older drpd: never served
                    log.error("provider %s: StoreObjects %r is not allowed; ignored",
                              provider.Name, prefix)
                    continue
                if prefix in declared:
                    log.error("provider %s: StoreObjects %s is already declared by %s",
                              provider.Name, prefix, declared[prefix][0])
                    continue
                declared[prefix] = (provider.Name, schema)
        for prefix, (owner, schema) in declared.items():
            current = store.kinds.get(prefix)
            if (isinstance(current, ExtendedKind) and current.writable
                    and current.provider == owner and current.schema == schema):
                continue
            try:
                store.add_kind(extended_kind(prefix, schema, provider=owner))
            except Exception as exc:  # a schema stored by an older drpd
                # readable, not writable (drpd.models.schemas refuses it now)
                log.error("provider %s: StoreObjects %s has a schema drpd cannot use (%s): "
                          "its objects are read-only", owner, prefix, exc)
                store.add_kind(extended_kind(prefix, {}, provider=owner, writable=False))
        for prefix, kind in list(store.kinds.items()):
            if isinstance(kind, ExtendedKind) and prefix not in declared and kind.writable:
                store.add_kind(extended_kind(prefix, kind.schema, provider=kind.provider,
                                             writable=False))
        for prefix in store.stored_prefixes():
            if prefix not in store.kinds:
                store.add_kind(extended_kind(prefix, {}, provider="", writable=False))

    async def provider_changed(self, name: str, *, replaced: bool, wait: bool = False) -> None:
        """Restart (new bytes) or re-check (installed, removed) the provider's instances.

        With ``wait``, returns once each of them has settled (bounded).
        """
        self.sync_object_types()
        affected = [sup for sup in self.supervisors.values() if sup.plugin.Provider == name]
        for sup in affected:
            if replaced and name in self.providers:
                sup.restart()
            else:
                sup.poke()
        provider = self.providers.get(name)
        if provider is not None and provider.AutoStart and self.store.get("plugins", name) is None:
            log.info("provider %s is AutoStart: creating instance %s", name, name)
            record = await self.store.create(
                "plugins", Plugin(Name=name, Provider=name, Validated=True), principal="drpd")
            if self._nursery is not None:
                affected.append(self._start(record.obj))
        if wait:
            with trio.move_on_after(self.settle_timeout):
                for sup in affected:
                    await sup.wait_settled()

    def params_changed(self) -> None:
        """A params object changed: instances waiting on a param may start now."""
        for sup in self.supervisors.values():
            if not sup.available:
                sup.poke()


class ParamsHooks:
    """Pokes waiting instances when a ``params`` object (schema, default) changes."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    def present(self, record: Record, data: dict[str, Any]) -> dict[str, Any]:
        return data

    def prepare(self, old: Any | None, new: Any) -> Any:
        return new

    async def after_write(self, action: str, old: Record | None, new: Record | None,
                          wait: bool) -> None:
        self.manager.params_changed()
