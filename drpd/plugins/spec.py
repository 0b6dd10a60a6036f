"""What a supervisor is told, and what it tells: frozen specs and a reporter.

A :class:`Supervisor` (``supervisor.py``) knows nothing of the part that
owns it. It is told what to run as a :class:`RunSpec` (argv, environment,
working directory, the config body, deadlines), frozen when the controller
built it from what is stored, or to stay down (:class:`Hold`, with the
reason shown in ``Errors``). It reports through a :class:`Reporter`: a
lifecycle event, the verb that worked. Tests drive a supervisor with a
spec and a reporter of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import wire

#: default bounds of provider output into drpd's log (``provider_log_rate`` / ``_burst``)
LOG_RATE, LOG_BURST = 100.0, 1_000
#: what a provider asks on its server socket: (method, target, body) -> (status, body)
ServerHandler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Every bound of one start, in seconds (``Settings`` at the time of the spec)."""

    ready: float = 10.0
    config: float = 10.0
    stop_grace: float = 5.0
    #: a run at least this long resets the back-off
    healthy_after: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    #: one HasPublish delivery
    publish: float = 30.0


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One instance's provider process, as the store says it should run.

    ``verbs`` are tried in order for each start; a later verb is tried only
    when the provider did not know the earlier one (docs/protocol.md §1: DRP's
    Go providers know ``listen`` only). ``run_id`` tags every process of
    this drpd (``processes.py``); each start gets ``<run_id>/<n>``.
    """

    binary: Path
    verbs: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    #: the body of ``POST config``
    config: bytes
    #: each start gets a fresh directory for its two sockets under this one
    runtime_dir: Path
    run_id: str
    deadlines: Deadlines = field(default_factory=Deadlines)
    #: connections kept to the provider (action concurrency)
    max_connections: int = 32
    #: forward every event to ``POST publish`` (HasPublish, not IgnoreEvents)
    has_publish: bool = False
    #: the provider's PluginVersion (a v4 provider may know ``listen`` only)
    plugin_version: int = 4
    #: output lines into drpd's log: a second, and in a burst (``provider_log_*``)
    log_rate: float = LOG_RATE
    log_burst: int = LOG_BURST
    #: actions in a row that time out before the process is restarted (0: never)
    timeouts_before_restart: int = 3

    def argv(self, verb: str, plugin_sock: str, server_sock: str) -> list[str]:
        return [str(self.binary), verb, plugin_sock, server_sock]


def verbs_for(plugin_version: int, remembered: str | None) -> tuple[str, ...]:
    """The verbs to try: the one that worked last, else ``serve`` then ``listen`` (v4)."""
    if remembered in (wire.SERVE, wire.LISTEN):  # a stored value is only a hint
        return (remembered,)
    return (wire.SERVE, wire.LISTEN) if plugin_version == 4 else (wire.SERVE,)


@dataclass(frozen=True, slots=True)
class Hold:
    """Stay down (``state`` ``waiting`` or ``left``), showing ``errors``.

    ``reason``, when set, goes into the ``stopped`` event of a running
    provider that this hold stops (``left``).
    """

    state: str
    errors: tuple[str, ...] = ()
    reason: str = ""


Desired = RunSpec | Hold


class Reporter(Protocol):
    """What a supervisor tells its owner; each call is about its one instance."""

    async def lifecycle(self, action: str, obj: dict[str, Any]) -> None:
        """A lifecycle event (``started``, ``available``, ``crashed``, ``stopped``,
        ``restarted``). May fail (a full disk): the supervisor logs and goes on."""
        ...

    def verb_worked(self, verb: str) -> None:
        """The provider answered READY! to ``verb``: try it first next time."""
        ...
