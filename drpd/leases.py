"""Which drpd node runs which plugin instance: leases in the shared database.

On the embedded SQLite store there is one node, and it runs every instance
(``LocalLeases``). On PostgreSQL each instance is run by the node holding its
lease (``Leases``, rows of ``drpd_leases``), so it runs exactly once:

- Every round (``interval``) a node renews its leases to ``lease_seconds``
  from the database's ``now()``, reports the state of what it runs (other
  nodes show it), drops the leases of destroyed instances and takes free or
  expired ones that placement gives it: the live node with the fewest
  instances per unit of ``node_weight``. A round is one transaction under
  an advisory lock; a lease is only ever taken once it is free or expired.
- **Fencing**: a node counts a lease as its own until ``lease_seconds -
  (stop_grace + 1)`` after the start of the last round that renewed it,
  measured on its own monotonic clock. A node cut off from the database
  stops its providers at that point, so they are gone (``stop_grace`` ends
  with SIGKILL) before the lease can end in the database and another node
  start the instance. Nothing depends on the nodes' clocks agreeing.
- A node that stops gives its leases up after its providers have stopped,
  so another node takes over at once instead of after ``lease_seconds``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol, cast

import msgspec
import trio

from .config import Settings
from .models import DrpError, PluginRuntime
from .nodes import HEARTBEAT, MISSED, Node
from .store.records import LeaseView

log = logging.getLogger("drpd.leases")


class InstanceStatus(msgspec.Struct, kw_only=True):
    """What the node running an instance reports of it, for the others to show."""

    Available: bool = False
    #: its current start succeeded or failed (``?wait=true`` waits for this)
    Settled: bool = False
    Errors: list[str] = []
    PluginErrors: list[str] = []
    Runtime: PluginRuntime = msgspec.field(default_factory=PluginRuntime)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(InstanceStatus).decode


class LeaseTable(Protocol):
    """What a store several nodes share offers (PostgresStore)."""

    async def lease_round(self, node_id: str, seconds: float, instances: list[str],
                          statuses: dict[str, bytes], live_after: float) -> LeaseView: ...
    async def lease_release(self, node_id: str) -> None: ...


class Ownership(Protocol):
    """What the plugin controller and the API ask of the leases."""

    me: Node
    #: several nodes share the store (an instance may run on another one)
    shared: bool

    def owns(self, name: str) -> bool: ...
    def owner(self, name: str) -> Node | None: ...
    def remote_status(self, name: str) -> InstanceStatus | None: ...
    def cert_of(self, node_id: str) -> str: ...
    def kick(self) -> None: ...
    async def next_round(self) -> None: ...


class LocalLeases:
    """One node on its own store: it runs every instance."""

    shared = False

    def __init__(self, me: Node) -> None:
        self.me = me

    async def next_round(self) -> None:
        await trio.sleep_forever()  # there are none

    def owns(self, name: str) -> bool:
        return True

    def owner(self, name: str) -> Node | None:
        return self.me

    def remote_status(self, name: str) -> InstanceStatus | None:
        return None

    def cert_of(self, node_id: str) -> str:
        return ""

    def kick(self) -> None:
        pass

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        task_status.started()

    async def release(self) -> None:
        pass


class Leases:
    """This node's leases on a shared store, renewed in rounds, fenced by time."""

    shared = True

    def __init__(self, table: LeaseTable, me: Node, settings: Settings, *,
                 instances: Callable[[], list[str]],
                 statuses: Callable[[set[str]], dict[str, InstanceStatus]],
                 changed: Callable[[], None]) -> None:
        self.table = table
        self.me = me
        self.settings = settings
        self._instances = instances
        self._statuses = statuses
        self._changed = changed
        self.held: frozenset[str] = frozenset()
        #: until when (this node's monotonic clock) the held leases are safe to act on
        self.deadline = 0.0
        self.view = LeaseView(owners={}, statuses={}, endpoints={}, names={})
        self._sent: dict[str, bytes] = {}
        self._kick = trio.Event()
        #: set when the deadline or the held set changes (wakes the fence)
        self._moved = trio.Event()
        self._round_done = trio.Event()
        self._warned = False

    @property
    def margin(self) -> float:
        """How long before a lease could end elsewhere this node stops its providers."""
        return self.settings.stop_grace + 1.0

    @property
    def interval(self) -> float:
        """Seconds between rounds: three tries before the fence."""
        return max(0.2, (self.settings.lease_seconds - self.margin) / 3)

    def owns(self, name: str) -> bool:
        return name in self.held and trio.current_time() < self.deadline

    def owner(self, name: str) -> Node | None:
        """The node running ``name`` now (as of the last round), if any."""
        node_id = self.view.owners.get(name)
        if node_id is None:
            return None
        if node_id == self.me.Id:
            return self.me
        return Node(Id=node_id, Name=self.view.names.get(node_id, node_id),
                    Endpoint=self.view.endpoints.get(node_id, ""), Started="", LastSeen="")

    def cert_of(self, node_id: str) -> str:
        """A node's API certificate (PEM), to pin when forwarding to it."""
        return self.view.certs.get(node_id, "")

    def remote_status(self, name: str) -> InstanceStatus | None:
        raw = self.view.statuses.get(name)
        if raw is None:
            return None
        try:
            return _decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    def kick(self) -> None:
        """Run a round now (an instance of this node changed state)."""
        self._kick.set()

    async def next_round(self) -> None:
        """Until the next round has ended (taken, renewed or failed)."""
        await self._round_done.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        async with trio.open_nursery() as nursery:
            # the fence runs on its own: a round stuck on a dead connection
            # must not keep providers running past the deadline
            nursery.start_soon(self._fence)
            task_status.started()
            while True:
                self._kick = trio.Event()
                started = trio.current_time()
                await self._round(started)
                self._round_done.set()
                self._round_done = trio.Event()
                with trio.move_on_at(started + self.interval):
                    await self._kick.wait()

    async def _fence(self) -> None:
        while True:
            moved = self._moved = trio.Event()
            if self.held and trio.current_time() >= self.deadline:
                log.warning("node %s: leases not renewed in time: stopping %d instance(s) "
                            "so another node may run them", self.me.Name, len(self.held))
                self.held = frozenset()
                self._sent.clear()  # reported again once held again
                self._changed()
            with trio.move_on_at(self.deadline if self.held else math.inf):
                await moved.wait()

    async def _round(self, started: float) -> None:
        statuses = {name: _encode(status)
                    for name, status in self._statuses(set(self.held)).items()}
        changed = {name: raw for name, raw in statuses.items() if self._sent.get(name) != raw}
        try:
            with trio.fail_after(self.interval):
                view = await self.table.lease_round(
                    self.me.Id, self.settings.lease_seconds, self._instances(), changed,
                    HEARTBEAT * MISSED)
        except (DrpError, trio.TooSlowError) as exc:
            if not self._warned:
                log.warning("node %s: lease round failed: %s", self.me.Name,
                            exc if str(exc) else "the database did not answer in time")
                self._warned = True
            return
        self._warned = False
        self._sent.update(changed)
        held = frozenset(name for name, node in view.owners.items() if node == self.me.Id)
        self.view = view
        self.deadline = started + self.settings.lease_seconds - self.margin
        self._moved.set()
        for name in set(self._sent) - held:
            del self._sent[name]
        if held != self.held:
            gained, lost = held - self.held, self.held - held
            self.held = held
            if gained:
                log.info("node %s now runs %s", self.me.Name, ", ".join(sorted(gained)))
            if lost:
                log.info("node %s no longer runs %s", self.me.Name, ", ".join(sorted(lost)))
            self._changed()

    async def release(self) -> None:
        """Give the leases up (call once this node's providers have stopped)."""
        self.held = frozenset()
        with trio.move_on_after(5):
            try:
                await self.table.lease_release(self.me.Id)
            except DrpError as exc:
                log.warning("node %s: could not give its leases up: %s", self.me.Name, exc)


def lease_table_of(store: object) -> LeaseTable | None:
    """The store's lease table, when several nodes can share it."""
    return cast(LeaseTable, store) if hasattr(store, "lease_round") else None
