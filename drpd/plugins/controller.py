"""The plugin controller: supervisors reconciled with the store, from its change feed.

A controller in Kubernetes' sense. It subscribes to the store's change
feed (``plugins``, ``params``, ``profiles``, ``plugin_providers``,
``contents`` writes), and for each change compares what is stored with
what runs and tells each instance's :class:`~.supervisor.Supervisor` what
to do, level-triggered: it never acts on what an event says, only on what
the store holds when it looks. At start, and whenever its queue overflowed,
it looks at everything. So a write reaches the supervisors however it was
made (the API, a content bundle, a provider install, one day another node).

No API handler calls into supervisors: the API writes to the store, then
(``?wait=true``) calls :meth:`PluginController.settled` with the Seq of
its write, which returns once the controller has seen that far and the
instance has settled. The API sees the controller only as
:class:`~.interface.PluginSide`.

A ``Params`` or ``Provider`` change, or new provider bytes, restarts an
instance; any other change applies at its next start.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..auth import PROVIDER_PRINCIPAL, Authenticator
from ..bus import EventBus, Notice, Subscription
from ..config import Settings
from ..leases import InstanceStatus, LocalLeases, Ownership
from ..models import AvailableAction, DrpError, Event, Plugin, PluginProvider, PluginRuntime
from ..nodes import Node
from ..params import MISSING, ParamChecker
from ..secure import SecureParams
from ..store import Record, Store, public_view
from . import runtime
from .actions import ActionDispatcher, Observer, split_command
from .cgroups import CgroupTree
from .host import OsHost
from .interface import Remote
from .left import LeftInstances
from .lineage import Lineage, become_subreaper, scan
from .processes import RUN_VAR, kill_marked
from .providers import ProviderRegistry
from .server_api import ServerApi
from .spec import Deadlines, Desired, Hold, RunSpec, verbs_for
from .supervisor import Supervisor

log = logging.getLogger("drpd.plugins")
#: what the controller watches; plugins events other than writes are lifecycle events
FEED_TYPES = frozenset({"plugins", "params", "profiles", "plugin_providers", "contents"})
WRITES = frozenset({"create", "update", "save", "delete"})
#: seconds between two looks at who descends from which provider start
LINEAGE_PERIOD = 1.0
#: environment drpd's own service manager sets that providers must not inherit
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES", "RS_KEY", "RS_USERNAME", "RS_PASSWORD")
_encode = msgspec.json.Encoder().encode


def provider_environment(*, endpoint: str, ca_cert: Path | None, fileserver: str,
                         files_dir: Path, run_id: str) -> dict[str, str]:
    """The environment every provider process gets (docs/protocol.md §2), without a token."""
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), env.get("PATH", "/usr/bin:/bin")])
    env.update(RS_ENDPOINT=endpoint, RS_CA_CERT=str(ca_cert) if ca_cert else "",
               RS_FILESERVER=fileserver, RS_WEBROOT=str(files_dir), RS_TOKEN="")
    env[RUN_VAR] = run_id
    return env


def verb_environment(env: Mapping[str, str], auth: Authenticator,
                     settings: Settings) -> Callable[[str], dict[str, str]]:
    """The environment of a provider's ``define`` and ``unpack``: ``env`` with a
    short-lived token of the provider, as DRP promises a token "in all cases"."""

    def of(provider: str) -> dict[str, str]:
        ttl = int(settings.define_timeout) + 60
        return {**env, "RS_TOKEN": auth.issue(f"{PROVIDER_PRINCIPAL}{provider}", ttl)}

    return of


def _feed_wants(event: Event) -> bool:
    return event.Type in FEED_TYPES and (event.Type != "plugins" or event.Action in WRITES)


class _InstanceReporter:
    """A supervisor's :class:`~.spec.Reporter`: events about its one instance."""

    def __init__(self, controller: PluginController, name: str) -> None:
        self._controller = controller
        self._name = name

    async def lifecycle(self, action: str, obj: dict[str, Any]) -> None:
        await self._controller.store.emit(Event(Type="plugins", Action=action, Key=self._name,
                                                Principal="drpd", Object=obj))
        self._controller.leases.kick()  # other nodes show its new state soon

    def verb_worked(self, verb: str) -> None:
        self._controller.remember_verb(self._name, verb)


class PluginController:
    """Runs one supervisor per stored instance; the API's :class:`~.interface.PluginSide`."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus, auth: Authenticator,
                 registry: ProviderRegistry, left: LeftInstances, *, params: ParamChecker,
                 env: Mapping[str, str], run_id: str, runtime_dir: Path, scratch_root: Path,
                 secure: SecureParams | None = None,
                 observe_action: Observer | None = None,
                 leases: Ownership | None = None) -> None:
        self.settings = settings
        #: which instances this node runs (all of them on its own store)
        self.leases: Ownership = leases or LocalLeases(
            Node(Id="local", Name="local", Endpoint="", Started="", LastSeen=""))
        self.store = store
        self.bus = bus
        self.auth = auth
        self.registry = registry
        self.left = left
        self.params = params
        self.secure = secure
        self.run_id = run_id
        self.runtime_dir = runtime_dir
        self.scratch_root = scratch_root
        self._env = dict(env)
        self.supervisors: dict[str, Supervisor] = {}
        self.actions = ActionDispatcher(
            settings, store, params, instances=self._instances, reveal=self.reveal,
            observers=[observe_action] if observe_action is not None else [])
        self.server_api = ServerApi(settings, store, self)
        #: set when drpd stops: supervisors then skip their own /proc sweeps
        self.shutting_down = False
        #: the stored instance each supervisor was last told about, and its restart key
        self._plugins: dict[str, Plugin] = {}
        self._keys: dict[str, tuple[Any, ...]] = {}
        #: instances being destroyed: set once their process and scratch are gone
        self._exits: dict[str, trio.Event] = {}
        self._retiring: dict[Supervisor, trio.Event] = {}
        #: instance -> (its stored Secret, a token bound to it)
        self._tokens: dict[str, tuple[str, str]] = {}
        #: the user providers run as (``provider_user``), None: drpd's own
        self.user = registry.user
        #: which provider start each living descendant process came from
        self.lineage = Lineage()
        #: one cgroup per provider start, when drpd may make them (``run``)
        self.cgroups: CgroupTree | None = None
        #: (provider, sha256) -> the verb its process answered READY! to
        self._verbs: dict[tuple[str, str], str] = {}
        self._nursery: trio.Nursery | None = None
        self._sub: Subscription | None = None
        #: every feed event up to this Seq has been reconciled
        self._synced = 0
        self._busy = False
        self._progress = trio.Event()

    # -- running ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(runtime.prepare, self.runtime_dir,
                                      0o700 if self.user is None else 0o711)
        await self.left.load()
        # a cgroup per provider start where drpd may make them; else orphans of
        # providers re-parent to drpd, not init, and are found by ancestry
        if self.settings.provider_cgroups:
            self.cgroups = await trio.to_thread.run_sync(CgroupTree.create, self.run_id)
        subreaper = self.cgroups is None and await trio.to_thread.run_sync(become_subreaper)
        reaper = await trio.lowlevel.open_process(
            [sys.executable, "-m", "drpd.plugins.reaper", self.run_id],
            stdin=subprocess.PIPE, start_new_session=True,
        )
        if self.cgroups is not None:
            assert reaper.stdin is not None
            await reaper.stdin.send_all(b"cgroup %s\n" % bytes(self.cgroups.base))
        try:
            # subscribed before the first look: nothing written after it is missed
            with self.bus.subscribe(_feed_wants) as sub:
                self._sub = sub
                await self.registry.start()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._resync()
                    nursery.start_soon(self.registry.watch)
                    if self.cgroups is None:  # else each start's cgroup holds its processes
                        nursery.start_soon(self._watch_lineage, subreaper, reaper)
                    nursery.start_soon(self._follow, sub)
                    task_status.started()
                    try:
                        await trio.sleep_forever()
                    finally:
                        self.shutting_down = True
                        for sup in self.supervisors.values():
                            sup.sweep = False
        finally:
            self._nursery = None
            self._sub = None
            with trio.CancelScope(shield=True):
                # one sweep for what any provider left behind, then the directory
                await trio.to_thread.run_sync(kill_marked, RUN_VAR, self.run_id)
                await trio.to_thread.run_sync(self.lineage.kill_all)
                if self.cgroups is not None:
                    await trio.to_thread.run_sync(self.cgroups.remove_all)
                await trio.to_thread.run_sync(
                    lambda: shutil.rmtree(self.runtime_dir, ignore_errors=True))
                # end of file tells the reaper drpd is done; it sweeps and exits
                assert reaper.stdin is not None
                await reaper.stdin.aclose()
                with trio.move_on_after(10):
                    await reaper.wait()

    async def _watch_lineage(self, subreaper: bool, reaper: trio.Process) -> None:
        """Every second: note who descends from which provider start, tell the
        reaper, and collect the zombies of orphans drpd inherited as their
        subreaper."""
        lineage = self.lineage

        def look() -> bytes:
            table = scan()
            lineage.update(table)
            if subreaper:
                lineage.reap(table)
            return b"".join(b"%d %d\n" % entry for entry in lineage.fresh())

        assert reaper.stdin is not None
        told = True
        while True:
            news = await trio.to_thread.run_sync(look)
            if news and told:
                try:
                    await reaper.stdin.send_all(news)
                    log.debug("the reaper knows of processes %s",
                              " ".join(line.split()[0].decode() for line in news.splitlines()))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    log.error("the reaper is gone: providers may outlive a killed drpd")
                    told = False
            await trio.sleep(LINEAGE_PERIOD)

    async def _follow(self, sub: Subscription) -> None:
        """Reconcile what each batch of feed events touched (all of it after a gap)."""
        while True:
            try:
                await sub.wait()
            except trio.EndOfChannel:  # the bus shut down: drpd is stopping
                return
            self._busy = True
            try:
                # read before draining, with no checkpoint between: every feed
                # event up to ``mark`` is in this batch or an earlier one
                mark = self.bus.last_seq
                names: set[str] = set()
                everything = False
                while (item := sub.pop_nowait()) is not None:
                    if isinstance(item, Notice):
                        everything = True  # overflow (events lost) or new settings
                    elif item.event.Type == "plugins":
                        names.add(item.event.Key)
                    else:
                        everything = True  # params, profiles, providers, contents
                if everything:
                    await self._resync()
                else:
                    for name in sorted(names):
                        await self._reconcile(name)
                self._advance(mark)
            finally:
                self._busy = False

    def leases_changed(self) -> None:
        """This node gained or lost instances: the follower reconciles them all."""
        if self._sub is not None:
            self._sub.push(Notice(Action="leases"))

    def statuses(self, names: set[str]) -> dict[str, InstanceStatus]:
        """What other nodes show of the instances this node runs."""
        found = {}
        for name in names:
            sup = self.supervisors.get(name)
            if sup is not None:
                found[name] = InstanceStatus(
                    Available=sup.available, Settled=sup.settled, Errors=list(sup.errors),
                    PluginErrors=list(sup.plugin_errors), Runtime=self.runtime_of(sup))
        return found

    def runtime_of(self, sup: Supervisor) -> PluginRuntime:
        return msgspec.structs.replace(sup.runtime, Node=self.leases.me.Name)

    def settings_changed(self) -> None:
        """The settings changed (SIGHUP): every spec is built again from them.

        Nothing restarts: timeouts and limits apply from the next start (log
        limits at once). Queued as a notice, so the follower does it in turn.
        """
        if self._sub is not None:
            self._sub.push(Notice(Action="settings"))

    def _advance(self, seq: int) -> None:
        if seq > self._synced:
            self._synced = seq
        self._progress.set()
        self._progress = trio.Event()

    def _caught_up(self, seq: int) -> bool:
        if self._synced >= seq:
            return True
        sub = self._sub
        if not self._busy and sub is not None and len(sub) == 0 and not sub.missed:
            # nothing queued or in hand: every feed event so far was reconciled
            self._synced = max(self._synced, self.bus.last_seq)
        return self._synced >= seq

    async def _resync(self) -> None:
        """Look at every stored instance and every supervisor (start, gaps)."""
        names = {record.obj.Name for record in self.store.list("plugins")}
        for name in sorted(names | set(self.supervisors)):
            await self._reconcile(name)

    async def _reconcile(self, name: str) -> None:
        """Make instance ``name``'s supervisor match what is stored now."""
        record = self.store.get("plugins", name)
        sup = self.supervisors.get(name)
        if record is None:
            if sup is not None:
                self._retire(name, sup)
            await self.left.clear(name)
            return
        if not self.leases.owns(name):
            # another node runs it (or nobody yet): not here, and stopped here
            if sup is not None:
                self._retire(name, sup)
            return
        plugin: Plugin = record.obj
        came_back = False
        left_at = self.left.rev(name)
        if left_at == 0:  # left before revisions were recorded: from now on
            await self.left.set(name, record.rev)
        elif left_at is not None and left_at != record.rev:
            # updated since it left: it runs again
            await self.left.clear(name)
            came_back = True
        desired = self._desired(plugin)
        key = self._restart_key(plugin)
        if self.supervisors.get(name) is not sup:  # reconciled meanwhile (awaited above)
            sup = self.supervisors.get(name)
        if sup is None:
            if self._nursery is None:
                return
            sup = Supervisor(name, _InstanceReporter(self, name),
                             lambda m, t, b: self.server_api.handle(name, m, t, b), bus=self.bus,
                             host=OsHost(self.lineage, self.cgroups, self.user))
            self.supervisors[name] = sup
            sup.want(desired)
            self._nursery.start_soon(self._supervise, name, sup, self._exits.get(name),
                                     name=f"supervisor:{name}")
        else:
            sup.want(desired, restart=came_back or key != self._keys.get(name))
        self._plugins[name] = plugin
        self._keys[name] = key

    def _retire(self, name: str, sup: Supervisor) -> None:
        del self.supervisors[name]
        self._plugins.pop(name, None)
        self._keys.pop(name, None)
        self._exits[name] = self._retiring[sup] = trio.Event()
        sup.scope.cancel()

    async def _supervise(self, name: str, sup: Supervisor, before: trio.Event | None) -> None:
        """Run one supervisor; after a destroy, remove what the instance left."""
        if before is not None:  # the previous instance of that name is still going
            await before.wait()
        try:
            await sup.run()
        finally:
            exit_event = self._retiring.pop(sup, None)
            if exit_event is not None and not self.shutting_down:
                self._tokens.pop(name, None)
                with trio.CancelScope(shield=True):
                    await sup.host.release()  # its cgroup, if it had one
                scratch = self.scratch_root / name
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(
                        lambda: shutil.rmtree(scratch, ignore_errors=True))
            if exit_event is not None:
                exit_event.set()
                if self._exits.get(name) is exit_event:
                    del self._exits[name]

    # -- what an instance should be ------------------------------------------------
    def _provider(self, name: str) -> PluginProvider | None:
        record = self.store.get("plugin_providers", name)
        return None if record is None else record.obj

    def _restart_key(self, plugin: Plugin) -> tuple[Any, ...]:
        provider = self._provider(plugin.Provider)
        return (plugin.Provider, plugin.Params, provider.Sha256 if provider else "")

    def _desired(self, plugin: Plugin) -> Desired:
        if plugin.Name in self.left:
            return Hold("left", ("the provider left; update or restart the instance",),
                        reason="left")
        problem = self.problem(plugin)
        if problem is not None:
            return Hold("waiting", (problem,))
        provider = self._provider(plugin.Provider)
        assert provider is not None
        s = self.settings
        body = self.expanded_params(plugin)
        body["Name"] = plugin.Name
        env = dict(self._env)
        env["RS_TOKEN"] = self.token_for(plugin)
        return RunSpec(
            binary=s.plugin_path / provider.Name,
            verbs=verbs_for(provider.PluginVersion,
                            self._verbs.get((provider.Name, provider.Sha256)) or provider.Verb),
            env=env, cwd=self.scratch_root / plugin.Name, config=_encode(body),
            runtime_dir=self.runtime_dir, run_id=self.run_id,
            deadlines=Deadlines(ready=s.ready_timeout, config=s.config_timeout,
                                stop_grace=s.stop_grace, healthy_after=s.healthy_after,
                                backoff_initial=s.backoff_initial, backoff_max=s.backoff_max,
                                publish=s.action_timeout),
            max_connections=s.action_concurrency,
            timeouts_before_restart=s.action_timeouts_before_restart,
            has_publish=bool(provider.HasPublish and not provider.IgnoreEvents),
            plugin_version=provider.PluginVersion,
            log_rate=s.provider_log_rate, log_burst=s.provider_log_burst,
        )

    def problem(self, plugin: Plugin) -> str | None:
        """Why the instance cannot start now, or None."""
        provider = self._provider(plugin.Provider)
        if provider is None:
            return f"provider {plugin.Provider!r} is not installed"
        missing = [name for name in provider.RequiredParams or []
                   if name not in (plugin.Params or {}) and self.params.default(name) is MISSING]
        if missing:
            return f"missing required param{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        for name, value in self.reveal(plugin.Params or {}).items():
            problem = self.params.problem(name, value)
            if problem:
                return problem
        return None

    def expanded_params(self, plugin: Plugin) -> dict[str, Any]:
        params = self.reveal(dict(plugin.Params or {}))
        provider = self._provider(plugin.Provider)
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

    def token_for(self, plugin: Plugin) -> str:
        """The instance's token, bound to its stored ``Secret`` (a new instance of
        the same name has another Secret, so it gets another token); kept while
        the Secret is the same, so a spec stays equal across reconciles."""
        secret = str(getattr(plugin, "Secret", ""))
        cached = self._tokens.get(plugin.Name)
        if cached is None or cached[0] != secret:
            token = self.auth.issue(f"plugin:{plugin.Name}", None, instance=plugin.Name)
            self._tokens[plugin.Name] = cached = (secret, token)
        return cached[1]

    def remember_verb(self, name: str, verb: str) -> None:
        plugin = self._plugins.get(name)
        provider = self._provider(plugin.Provider) if plugin is not None else None
        if provider is None:
            return
        self._verbs[(provider.Name, provider.Sha256)] = verb
        if provider.Verb != verb and self._nursery is not None:
            self._nursery.start_soon(self._store_verb, provider.Name, provider.Sha256, verb)

    async def _store_verb(self, name: str, sha256: str, verb: str) -> None:
        """Keep the verb on the provider's record, so the first start after a
        drpd restart does not cost a Go provider a failed ``serve``."""
        def with_verb(old: Any) -> Any:
            if old is None or old.Sha256 != sha256 or old.Verb == verb:
                return old  # replaced meanwhile, or already known
            return msgspec.structs.replace(old, Verb=verb)

        try:
            await self.store.modify("plugin_providers", name, with_verb, principal="drpd")
        except DrpError as exc:  # gone meanwhile, or the disk is full: only a hint lost
            log.warning("provider %s: cannot store the verb that worked: %s", name, exc)

    def _instances(self) -> Iterator[tuple[Plugin, Supervisor]]:
        for name, sup in self.supervisors.items():
            plugin = self._plugins.get(name)
            if plugin is not None:
                yield plugin, sup

    @property
    def settle_timeout(self) -> float:
        s = self.settings
        return s.ready_timeout * 2 + s.config_timeout + s.stop_grace * 2 + 5

    # -- what providers ask (ServerApi's InstanceHost) ----------------------------
    def log_line(self, name: str, source: str, line: str, level: int) -> None:
        sup = self.supervisors.get(name)
        if sup is not None:
            sup.log_line(source, line, level)

    async def leave(self, name: str) -> None:
        record = self.store.get("plugins", name)
        if record is None:
            return
        await self.left.set(name, record.rev)
        await self._reconcile(name)

    # -- the API's face (interface.PluginSide) --------------------------------------
    def instance(self, name: str) -> Supervisor | None:
        return self.supervisors.get(name)

    def log_lines(self, name: str) -> list[str]:
        sup = self.supervisors.get(name)
        return list(sup.log_lines) if sup is not None else []

    async def restart(self, name: str, *, wait: bool) -> None:
        sup = self.supervisors.get(name)
        record = self.store.get("plugins", name)
        if sup is None or record is None:
            return
        await self.left.clear(name)
        sup.want(self._desired(record.obj), restart=True)
        if wait:
            with trio.move_on_after(self.settle_timeout):
                await sup.wait_settled()

    async def settled(self, name: str, seq: int) -> None:
        with trio.move_on_after(self.settle_timeout):
            while not self._caught_up(seq):
                await self._progress.wait()
            if self.leases.shared:
                await self._settled_anywhere(name)
                return
            sup = self.supervisors.get(name)
            if sup is not None:
                await sup.wait_settled()
                return
            gone = self._exits.get(name)
            if gone is not None:
                await gone.wait()

    async def _settled_anywhere(self, name: str) -> None:
        """Several nodes: until the node that took the instance says it settled."""
        self.leases.kick()  # a round now, not at the next interval
        while True:
            sup = self.supervisors.get(name)
            if sup is not None:
                await sup.wait_settled()
                return
            if self.store.get("plugins", name) is None:
                gone = self._exits.get(name)
                if gone is not None:
                    await gone.wait()
                return
            owner = self.leases.owner(name)
            remote = self.leases.remote_status(name)
            if owner is not None and owner.Id != self.leases.me.Id and remote is not None \
                    and remote.Settled:
                return
            # a round (a lease taken, a report read) or a batch of the follower
            # (a supervisor made) may have changed the answer
            progress = self._progress
            async with trio.open_nursery() as nursery:
                async def first(wait: Callable[[], Awaitable[object]]) -> None:
                    await wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(first, self.leases.next_round)
                nursery.start_soon(first, progress.wait)

    async def _settled_provider(self, name: str) -> None:
        """After a provider install or removal: its instances have settled."""
        seq = self.store.last_seq
        with trio.move_on_after(self.settle_timeout):
            while not self._caught_up(seq):
                await self._progress.wait()
            for plugin, sup in list(self._instances()):
                if plugin.Provider == name:
                    await sup.wait_settled()

    def listing(self, model: str, *, instance: str | None = None) -> list[AvailableAction]:
        found = self.actions.listing(model, instance=instance)
        if not self.leases.shared:
            return found
        # and what the instances other nodes run offer (as they last reported)
        seen = {(a.Provider, a.Command) for a in found}
        for record in self.store.list("plugins"):
            name = record.obj.Name
            remote = self.leases.remote_status(name)
            if (instance is not None and name != instance) or name in self.supervisors \
                    or remote is None or not remote.Available:
                continue
            provider = self.registry.providers.get(record.obj.Provider)
            for action in (provider.AvailableActions or []) if provider else []:
                if (action.Model or "system") == model \
                        and (action.Provider, action.Command) not in seen:
                    seen.add((action.Provider, action.Command))
                    found.append(action)
        return sorted(found, key=lambda a: (a.Provider, a.Command))

    async def run_action(self, model: str, command: str, *, plugin: str | None,
                         instance: str | None, posted: dict[str, Any],
                         target: Any) -> tuple[int, bytes]:
        offer = self.actions.choose(model, command, plugin, instance=instance)
        params = self.actions.build_params(offer, posted, target, model=model)
        target_json = None
        if target is not None:
            target_json = public_view(model, target)
            if self.secure is not None and isinstance(target_json, dict) \
                    and "Params" in target_json:
                target_json = {**target_json, "Params": self.reveal(target_json["Params"])}
        return await self.actions.call(offer, params, target_json)

    async def elsewhere(self, model: str, command: str | None, *, plugin: str | None,
                        instance: str | None) -> Remote | None:
        if not self.leases.shared:
            return None
        named = instance or plugin
        if named is not None:
            if (named not in self.supervisors and self.leases.owner(named) is None
                    and self.store.get("plugins", named) is not None):
                # taken by a node since this one last looked: look again, briefly
                self.leases.kick()
                with trio.move_on_after(self.settings.lease_seconds / 2):
                    await self.leases.next_round()
            return self._remote(named)
        assert command is not None
        provider_name, plain = split_command(command)
        available: list[str] = []
        for record in self.store.list("plugins"):
            name = record.obj.Name
            provider = self.registry.providers.get(record.obj.Provider)
            if provider is None or (provider_name is not None and provider.Name != provider_name):
                continue
            if not any((a.Model or "system") == model and a.Command == plain
                       for a in provider.AvailableActions or []):
                continue
            sup = self.supervisors.get(name)
            remote = self.leases.remote_status(name)
            if (sup is not None and sup.available) or (sup is None and remote is not None
                                                       and remote.Available):
                available.append(name)
        # the only available instance runs elsewhere; else this node answers
        # (it runs it, or says 404 / 409 / 503 as for one node)
        return self._remote(available[0]) if len(available) == 1 else None

    def _remote(self, name: str) -> Remote | None:
        owner = self.leases.owner(name)
        if owner is None or owner.Id == self.leases.me.Id or not owner.Endpoint:
            return None
        return Remote(owner.Name, owner.Endpoint, self.leases.cert_of(owner.Id))

    def has_provider(self, name: str) -> bool:
        return name in self.registry.providers

    def binary_path(self, name: str) -> Path:
        return self.settings.plugin_path / name

    async def upload_provider(self, name: str, chunks: AsyncIterator[bytes]) -> PluginProvider:
        provider = await self.registry.upload(name, chunks)
        await self._settled_provider(provider.Name)
        return provider

    async def remove_provider(self, name: str) -> PluginProvider:
        provider = await self.registry.remove(name)
        await self._settled_provider(name)
        return provider


class PluginsHooks:
    """The ``plugins`` prefix's hooks in the API's object router (``KindHooks``):
    runtime state shown on read, never stored; ``?wait=true`` waits for the
    controller to settle the write."""

    def __init__(self, controller: PluginController) -> None:
        self.controller = controller

    def present(self, record: Record, data: dict[str, Any]) -> dict[str, Any]:
        name = record.obj.Name
        sup = self.controller.instance(name)
        if sup is not None:
            data.update(Available=sup.available, Errors=list(sup.errors),
                        PluginErrors=list(sup.plugin_errors),
                        Runtime=msgspec.to_builtins(self.controller.runtime_of(sup)))
            return data
        leases = self.controller.leases
        owner = leases.owner(name)
        remote = leases.remote_status(name) if owner is not None else None
        if owner is not None and owner.Id != leases.me.Id and remote is not None:
            # another node runs it: what that node last reported
            data.update(Available=remote.Available, Errors=remote.Errors,
                        PluginErrors=remote.PluginErrors,
                        Runtime=msgspec.to_builtins(msgspec.structs.replace(
                            remote.Runtime, Node=owner.Name)))
            return data
        waiting = "not running" if owner is None or owner.Id == leases.me.Id \
            else f"starting on node {owner.Name}"
        data.update(Available=False, Errors=[waiting], PluginErrors=[],
                    Runtime=msgspec.to_builtins(PluginRuntime(
                        Node=owner.Name if owner is not None else "")))
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
        if not wait:
            return
        name = (new or old).obj.Name  # type: ignore[union-attr]
        seq = new.rev if new is not None else self.controller.store.last_seq
        await self.controller.settled(name, seq)
