"""What the API's handlers share: the parts of the running daemon they use."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..access import Authorizer
from ..auth import Authenticator
from ..bus import EventBus
from ..config import Settings
from ..metrics import Metrics
from ..nodes import Node
from ..params import ParamChecker
from ..plugins.interface import PluginSide
from ..store import Record, Store


class NodesView(Protocol):
    def list(self) -> list[Node]: ...  # noqa: A003


class KindHooks(Protocol):
    """Lets another part of drpd take part in writes to one prefix.

    The plugin manager uses it: runtime state is merged into what is shown,
    and a write settles (the instance is started or stopped) before the API
    answers.
    """

    def present(self, record: Record, data: dict[str, Any]) -> dict[str, Any]: ...
    def prepare(self, old: Any | None, new: Any) -> Any: ...
    async def after_write(self, action: str, old: Record | None, new: Record | None,
                          wait: bool) -> None: ...


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    bus: EventBus
    auth: Authenticator
    api_port: int = 0
    static_port: int = 0
    #: the address providers and clients reach drpd at (``/info``'s ``address``)
    address: str = "127.0.0.1"
    #: standing problems ``/info`` reports in ``errors`` (e.g. no TLS for Go providers)
    info_errors: list[str] = field(default_factory=list)
    version: str = "0.1.0"
    started: float = field(default_factory=time.monotonic)
    params: ParamChecker | None = None
    #: drpd.content.ContentService
    content: Any = None
    #: drpd.secure.SecureParams
    secure: Any = None
    hooks: dict[str, KindHooks] = field(default_factory=dict)
    #: the plugin side (instances, actions, providers), through its typed face
    plugins: PluginSide | None = None
    #: the file space, <state>/files
    files_dir: Path | None = None
    #: request counts and ``GET /api/v3/metrics`` (None: counted nowhere)
    metrics: Metrics | None = None
    #: the drpd nodes sharing the store (drpd.nodes.Nodes)
    nodes: NodesView | None = None
    #: what each principal may do (made by create_app when not given)
    access: Authorizer | None = None
    #: extra sub-resource handlers: (prefix, name) -> handler
    extras: dict[tuple[str, str], Any] = field(default_factory=dict)

    def plugin_side(self) -> PluginSide:
        """The plugin side, or 503 when this drpd runs without one."""
        if self.plugins is None:
            from ..models import Unavailable

            raise Unavailable("the plugin side is not running")
        return self.plugins
