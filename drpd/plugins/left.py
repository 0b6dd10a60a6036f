"""Instances whose provider said ``leaving``: the one owner of that state.

An instance that left stays stopped, across drpd restarts, until it is
updated (its stored revision moves past the one it left at) or restarted
through the API. The state is stored once, in ``plugins-left.json`` under
the state directory (written atomically, fsynced), and only this class
reads or writes it; every change is awaited before it is acted on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import trio

log = logging.getLogger("drpd.plugins")


class LeftInstances:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: instance name -> its stored revision when it left (0: unknown)
        self._left: dict[str, int] = {}

    async def load(self) -> None:
        self._left = await trio.to_thread.run_sync(self._read)

    def __contains__(self, name: object) -> bool:
        return name in self._left

    def rev(self, name: str) -> int | None:
        """The revision the instance left at (0: unknown), or None if it did not leave."""
        return self._left.get(name)

    async def set(self, name: str, rev: int) -> None:
        if self._left.get(name) == rev:
            return
        self._left[name] = rev
        await self._save()

    async def clear(self, name: str) -> None:
        if self._left.pop(name, None) is not None:
            await self._save()

    async def _save(self) -> None:
        snapshot = dict(sorted(self._left.items()))
        with trio.CancelScope(shield=True):  # memory and file stay in step
            await trio.to_thread.run_sync(self._write, snapshot)

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as exc:
            log.error("cannot read %s (%s): no instance is kept stopped", self.path, exc)
            return {}
        if isinstance(data, list):  # the first format: names only
            return {str(name): 0 for name in data}
        if isinstance(data, dict):
            return {str(k): v if isinstance(v, int) else 0 for k, v in data.items()}
        return {}

    def _write(self, data: dict[str, int]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
