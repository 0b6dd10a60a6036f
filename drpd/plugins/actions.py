"""Running provider actions: who offers a command, its params, the call.

The path of one action call is: pick the instance (``?plugin=``, else the
only *available* instance offering the command), build ``Action.Params``
from the first place that has each listed param (the call, the object, its
profiles in order, the instance, the param's schema default), check each
value against its Schema, then one HTTP exchange with the provider over
its UNIX socket, bounded by ``action_timeout``. The provider's answer body
goes back to the API client unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from .. import wire
from ..access import InFlight, target_key
from ..config import Settings
from ..http11 import HTTPError
from ..models import (
    Action,
    AvailableAction,
    BadGateway,
    Conflict,
    Error,
    GatewayTimeout,
    NotFound,
    Plugin,
    PluginProvider,
    Unavailable,
    Unprocessable,
)
from ..params import MISSING, ParamChecker
from ..store import Store
from .supervisor import Supervisor

_encode = msgspec.json.Encoder().encode
#: checks an answer is JSON without building Python objects for it
_json_check = msgspec.json.Decoder(msgspec.Raw)
#: called after each action call: (provider, command, seconds, HTTP status)
Observer = Callable[[str, str, float, int], None]
#: the instances to offer actions from: (stored instance, its supervisor)
Instances = Callable[[], Iterable[tuple[Plugin, Supervisor]]]


@dataclass(frozen=True)
class Offer:
    """One instance's provider offering one command for a model."""

    sup: Supervisor
    plugin: Plugin
    provider: PluginProvider
    action: AvailableAction


def split_command(command: str) -> tuple[str | None, str]:
    provider, sep, plain = command.partition(":")
    return (provider, plain) if sep else (None, command)


@dataclass
class ActionDispatcher:
    """Chooses the instance, builds the params and calls it (collaborators by constructor)."""

    settings: Settings
    store: Store
    params: ParamChecker
    #: the running instances, each with its stored object
    instances: Instances
    #: secure param values in clear, as providers see them
    reveal: Callable[[dict[str, Any]], dict[str, Any]]
    #: called after each call (metrics)
    observers: list[Observer] = field(default_factory=list)
    #: the objects actions run on now: the provider's token may write them meanwhile
    inflight: InFlight = field(default_factory=InFlight)

    def _provider(self, name: str) -> PluginProvider | None:
        record = self.store.get("plugin_providers", name)
        return None if record is None else record.obj

    def offers(self, model: str, *, instance: str | None = None) -> list[Offer]:
        """Every (instance, action) pair for ``model``, available or not."""
        found = []
        for plugin, sup in self.instances():
            if instance is not None and sup.name != instance:
                continue
            provider = self._provider(plugin.Provider)
            if provider is None:
                continue
            for action in provider.AvailableActions or []:
                if (action.Model or "system") == model:
                    found.append(Offer(sup, plugin, provider, action))
        return found

    def listing(self, model: str, *, instance: str | None = None) -> list[AvailableAction]:
        """The actions available now on an object of ``model`` (one per provider:command)."""
        seen: dict[tuple[str, str], AvailableAction] = {}
        for offer in self.offers(model, instance=instance):
            if offer.sup.available:
                seen.setdefault((offer.provider.Name, offer.action.Command), offer.action)
        return [seen[k] for k in sorted(seen)]

    def choose(self, model: str, command: str, plugin: str | None,
               *, instance: str | None = None) -> Offer:
        """Which instance runs ``command``; raises 404 / 409 / 503 as docs/api.md says."""
        provider_name, plain = split_command(command)
        offers = [o for o in self.offers(model, instance=instance)
                  if o.action.Command == plain
                  and (provider_name is None or o.provider.Name == provider_name)]
        if plugin is not None:
            offers = [o for o in offers if o.sup.name == plugin]
            if not offers:
                raise NotFound(f"plugin {plugin} offers no action {command!r} on {model}",
                               model=model, key=command)
        if not offers:
            raise NotFound(f"no plugin offers action {command!r} on {model}", model=model,
                           key=command)
        ready = [o for o in offers if o.sup.available]
        if not ready:
            names = ", ".join(sorted(o.sup.name for o in offers))
            raise Unavailable(f"action {command!r}: plugin {names} is not available",
                              model=model, key=command)
        if len(ready) > 1:
            names = ", ".join(sorted(o.sup.name for o in ready))
            raise Conflict(f"action {command!r} is offered by several plugins ({names}): "
                           "name one with ?plugin=<instance> or <provider>:<command>",
                           model=model, key=command)
        return ready[0]

    def build_params(self, offer: Offer, posted: dict[str, Any], target: Any,
                     *, model: str) -> dict[str, Any]:
        """Action.Params: each listed param from the first place that has it."""
        store = self.store
        checker = self.params
        sources: list[dict[str, Any]] = [posted]
        if target is not None and isinstance(getattr(target, "Params", None), dict):
            sources.append(target.Params)
            profiles = list(getattr(target, "Profiles", []) or [])
            if model == "machines":
                profiles.append("global")  # DRP: after the machine's own profiles
            for name in profiles:
                profile = store.get("profiles", name)
                if profile is not None:
                    sources.append(profile.obj.Params or {})
        sources.append(offer.plugin.Params or {})
        required = list(offer.action.RequiredParams or [])
        optional = list(offer.action.OptionalParams or [])
        params: dict[str, Any] = {}
        missing = []
        for name in [*required, *optional]:
            for source in sources:
                if name in source:
                    params[name] = source[name]
                    break
            else:
                default = checker.default(name)
                if default is not MISSING:
                    params[name] = default
                elif name in required:
                    missing.append(name)
        if missing:
            raise Unprocessable(
                f"action {offer.action.Command!r} needs param{'s' if len(missing) > 1 else ''} "
                + ", ".join(missing), model=model, key=offer.action.Command)
        for name, value in posted.items():
            params.setdefault(name, value)
        params = self.reveal(params)
        for name, value in params.items():
            problem = checker.problem(name, value)  # against the clear value
            if problem:
                raise Unprocessable(problem, model=model, key=offer.action.Command)
        return params

    async def call(self, offer: Offer, params: dict[str, Any], target_json: Any) -> tuple[int, bytes]:
        """POST the action to the provider; returns (status, body) to answer with."""
        sup = offer.sup
        action = Action(Model=target_json, Plugin=sup.name, Command=offer.action.Command,
                        CommandSet=offer.provider.Name, Params=params)
        timeout = self.settings.action_timeout
        started = time.monotonic()
        status = 500
        key = target_key(offer.action.Model, target_json)
        acting = self.inflight.acting(sup.name, offer.action.Model, key) if key else nullcontext()
        try:
            with acting, sup.action_slot() as client:
                with trio.move_on_after(timeout) as scope:
                    try:
                        status, body = await client.request("POST", wire.ACTION_PATH,
                                                            _encode(action))
                    except HTTPError as exc:
                        if await sup.exited_soon():  # it stopped or crashed meanwhile
                            status = 503
                            raise Unavailable(
                                f"plugin {sup.name} stopped during action "
                                f"{offer.action.Command!r}: {exc}",
                                model="plugins", key=sup.name) from None
                        status = 502
                        message = (f"plugin {sup.name}: action {offer.action.Command!r} "
                                   f"failed: {exc}")
                        sup.note_error(message)
                        raise BadGateway(message, model="plugins", key=sup.name) from None
                if scope.cancelled_caught:
                    status = 504
                    message = (f"plugin {sup.name} did not answer action "
                               f"{offer.action.Command!r} within {timeout:g} s")
                    sup.action_timed_out(message)
                    raise GatewayTimeout(message, model="plugins", key=sup.name)
                sup.action_answered()
        finally:
            for observe in self.observers:
                observe(offer.provider.Name, offer.action.Command,
                        time.monotonic() - started, status)
        if 200 <= status < 300:
            try:
                _json_check.decode(body)
            except (msgspec.DecodeError, RecursionError) as exc:
                message = (f"plugin {sup.name} answered action {offer.action.Command!r} "
                           f"with invalid JSON: {exc}")
                sup.note_error(message)
                raise BadGateway(message, model="plugins", key=sup.name) from None
            return status, body
        return status, _as_error(status, body, sup.name)


def _as_error(status: int, body: bytes, instance: str) -> bytes:
    """A provider's error answer as a DRP Error (it may already be one)."""
    try:
        error = msgspec.json.decode(body, type=Error)
        if error.Messages:
            return body
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    text = body.decode(errors="replace")[:500] or "no details"
    return wire.plugin_error(status, f"plugin {instance} answered {status}: {text}",
                             model="plugins", key=instance)[1]
