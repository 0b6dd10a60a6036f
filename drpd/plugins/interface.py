"""What the API needs from the plugin side, as a typed face (``PluginSide``).

The API imports this module and nothing else of ``drpd.plugins``: it lists
and runs actions, restarts instances, reads their logs and runtime state,
installs and removes providers, and waits for an instance to settle after
a write. How supervisors do it stays behind this line (as httpx's client
knows its transports only through their interface).

Instances are driven by the store's change feed, not by the API: a write
goes to the store, and :meth:`PluginSide.settled` lets a ``?wait=true``
handler answer once the plugin side has caught up with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..models import AvailableAction, PluginProvider, PluginRuntime


@dataclass(frozen=True)
class Remote:
    """Another drpd node that runs the instance a request is about."""

    name: str
    endpoint: str
    #: its API certificate (PEM) to pin; empty without TLS
    cert: str = ""


class InstanceView(Protocol):
    """One instance's runtime state, as the API shows it (never stored)."""

    @property
    def available(self) -> bool: ...
    @property
    def errors(self) -> Sequence[str]: ...
    @property
    def plugin_errors(self) -> Sequence[str]: ...
    @property
    def runtime(self) -> PluginRuntime: ...


class PluginSide(Protocol):
    """The plugin side as the API sees it."""

    # -- instances ---------------------------------------------------------
    def instance(self, name: str) -> InstanceView | None:
        """The running state of instance ``name``, or None when none runs."""
        ...

    def log_lines(self, name: str) -> list[str]:
        """The instance's last log lines (stdout, stderr, ``/log``), oldest first."""
        ...

    async def restart(self, name: str, *, wait: bool) -> None:
        """Stop and start the instance again (also one that left)."""
        ...

    async def settled(self, name: str, seq: int) -> None:
        """Return once the plugin side has seen every change up to ``seq`` and
        instance ``name`` has settled (started, failed or gone); bounded."""
        ...

    # -- actions -----------------------------------------------------------
    def listing(self, model: str, *, instance: str | None = None) -> list[AvailableAction]:
        """The actions available now on an object of ``model``."""
        ...

    async def run_action(self, model: str, command: str, *, plugin: str | None,
                         instance: str | None, posted: dict[str, Any],
                         target: Any) -> tuple[int, bytes]:
        """Choose the instance, build ``Action.Params``, call it; (status, body).

        Raises a ``DrpError`` (404, 409, 422, 502, 503, 504) as docs/api.md says.
        """
        ...

    async def elsewhere(self, model: str, command: str | None, *, plugin: str | None,
                        instance: str | None) -> Remote | None:
        """The other node to forward to, when the instance this request goes to
        (named, or the only available one offering ``command``) runs there."""
        ...

    # -- providers ---------------------------------------------------------
    def has_provider(self, name: str) -> bool: ...

    def binary_path(self, name: str) -> Path: ...

    async def upload_provider(self, name: str, chunks: AsyncIterator[bytes]) -> PluginProvider:
        """Install an uploaded executable (validated; nothing changes when it is bad)."""
        ...

    async def remove_provider(self, name: str) -> PluginProvider: ...
