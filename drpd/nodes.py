"""The drpd nodes sharing one store, each with its heartbeat.

On the embedded SQLite store there is one node, this one. On PostgreSQL
every node writes its row of ``drpd_nodes`` (id, name, API address, when it
started) every ``HEARTBEAT`` seconds, and reads everyone's: a node not heard
of for ``3 * HEARTBEAT`` seconds is ``gone``. ``GET /api/v3/nodes`` and
``drpcli nodes list`` show them; ``/info`` names the node that answered.
Which node runs which plugin instance is drpd.leases' business.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Protocol

import msgspec
import trio

from .models import DrpError

log = logging.getLogger("drpd.nodes")

#: seconds between two heartbeats of a node
HEARTBEAT = 2.0
#: heartbeats a node may miss before it counts as gone
MISSED = 3


class Node(msgspec.Struct, kw_only=True):
    """One drpd node as ``GET /api/v3/nodes`` shows it."""

    Id: str
    Name: str
    #: the node's API, as other nodes and clients reach it
    Endpoint: str
    Started: str
    #: when it was last heard of (its own clock's heartbeat, as stored)
    LastSeen: str
    #: ``alive``, or ``gone`` after MISSED heartbeats without a word
    State: str = "alive"
    #: the node that answered this request
    Self: bool = False


class NodeTable(Protocol):
    """What a store that several nodes share offers (PostgresStore)."""

    async def node_beat(self, node_id: str, name: str, endpoint: str, started: str,
                        weight: float = 1.0, cert: str = "") -> None: ...
    async def node_rows(self) -> list[tuple[str, str, str, str, str, float]]: ...


def node_id(state_root: Path) -> str:
    """This node's id: made once, kept in the state directory."""
    path = state_root / "node.id"
    try:
        found = path.read_text().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    made = str(uuid.uuid4())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(made + "\n")
    os.replace(tmp, path)
    return made


class Nodes:
    """This node's heartbeat and the list of every node (cached, refreshed with it)."""

    def __init__(self, me: Node, table: NodeTable | None, *, weight: float = 1.0,
                 cert: str = "", files: Path | None = None,
                 problems: list[str] | None = None) -> None:
        self.me = me
        #: the file space: several nodes must share one directory (checked)
        self.files = files
        #: where a file space that is not shared is reported (``/info`` errors)
        self.problems = problems if problems is not None else []
        self._unshared = ""
        self.table = table
        #: this node's share of the plugin instances (drpd.leases)
        self.weight = weight
        #: this node's API certificate (PEM), pinned by nodes that forward to it
        self.cert = cert
        self._known: list[Node] = []
        self._warned = False

    def list(self) -> list[Node]:  # noqa: A003 - what GET /nodes answers
        if self.table is None or not self._known:
            return [msgspec.structs.replace(self.me, Self=True)]
        return [msgspec.structs.replace(n, Self=n.Id == self.me.Id) for n in self._known]

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        task_status.started()
        if self.table is None:
            return
        while True:
            try:
                me = self.me
                await self.table.node_beat(me.Id, me.Name, me.Endpoint, me.Started, self.weight,
                                           self.cert)
                self._known = [
                    Node(Id=i, Name=n, Endpoint=e, Started=s, LastSeen=seen,
                         State="alive" if age < HEARTBEAT * MISSED else "gone")
                    for i, n, e, s, seen, age in await self.table.node_rows()]
                self._warned = False
                await self._check_files()
            except DrpError as exc:  # the database is away: try again next beat
                if not self._warned:
                    log.warning("node heartbeat: %s", exc)
                    self._warned = True
            await trio.sleep(HEARTBEAT)


    async def _check_files(self) -> None:
        """Several nodes serve one file space only if they share its directory:
        each leaves a mark in it, and each looks for the marks of the others."""
        if self.files is None:
            return
        marks = self.files / ".drpd-nodes"
        alive = [n for n in self._known if n.State == "alive" and n.Id != self.me.Id]

        def look() -> list[str]:
            marks.mkdir(mode=0o755, exist_ok=True)
            (marks / self.me.Id).touch()
            return [n.Name for n in alive if not (marks / n.Id).exists()]

        try:
            missing = await trio.to_thread.run_sync(look)
        except OSError as exc:
            missing = [f"? ({exc.strerror})"]
        text = (f"the file space {self.files} is not shared with node(s) "
                f"{', '.join(sorted(missing))}: files written through one node are not served "
                "by the others (mount one shared directory there on every node)"
                if missing else "")
        if text != self._unshared:
            if self._unshared in self.problems:
                self.problems.remove(self._unshared)
            if text:
                self.problems.append(text)
                log.warning("%s", text)
            self._unshared = text


def this_node(state_root: Path, endpoint: str, started: str, name: str = "") -> Node:
    return Node(Id=node_id(state_root), Name=name or socket.gethostname(), Endpoint=endpoint,
                Started=started, LastSeen=started)


def table_of(store: Any) -> NodeTable | None:
    """The store's node table, when it has one (several nodes can share it)."""
    return store if hasattr(store, "node_beat") else None
