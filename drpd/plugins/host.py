"""What one start of a provider needs of the operating system (``Host``).

A supervisor asks its host for a fresh socket directory, to spawn the
process, to signal its process group, to sweep escaped children and to
remove the directory. :class:`OsHost` does it for real (blocking work in
worker threads); a test gives a supervisor a host of its own and drives it
under trio's ``MockClock`` without real processes or threads.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import trio

from .cgroups import TRAMPOLINE, CgroupTree
from .identity import ProviderUser, spawn_options
from .lineage import Lineage
from .processes import INSTANCE_VAR, kill_marked, signal_group


class ProviderProcess(Protocol):
    """The parts of ``trio.Process`` a supervisor uses."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdout(self) -> trio.abc.ReceiveStream | None: ...
    @property
    def stderr(self) -> trio.abc.ReceiveStream | None: ...
    async def wait(self) -> int: ...


class Host(Protocol):
    async def workspace(self, runtime_dir: Path, cwd: Path) -> Path:
        """A new private directory for one start's sockets; makes ``cwd`` too. OSError."""
        ...

    async def spawn(self, argv: list[str], *, env: Mapping[str, str],
                    cwd: Path) -> ProviderProcess:
        """Start the process in a session of its own, output piped. OSError."""
        ...

    def signal(self, process: ProviderProcess, signum: int) -> None:
        """Signal the process's whole group (gone already: nothing)."""
        ...

    async def remember(self) -> None:
        """Note the descendants of running starts now (before a stop signals
        them: a child that left the group is still found by ancestry)."""
        ...

    async def sweep(self, marker: str) -> int:
        """End every process of the start: carrying its marker or descending
        from it (``lineage``); how many there were."""
        ...

    async def release(self) -> None:
        """The instance is gone for good: free what its starts shared (its cgroup)."""
        ...

    async def remove(self, path: Path) -> None:
        """Remove a directory tree (the start's sockets)."""
        ...


class OsHost:
    """The real thing: processes, /proc sweeps and the file system.

    ``lineage`` is shared by every instance's host (one walk of ``/proc``
    serves them all); without one, a host of its own is used.
    """

    def __init__(self, lineage: Lineage | None = None,
                 cgroups: CgroupTree | None = None, user: ProviderUser | None = None) -> None:
        self.lineage = lineage if lineage is not None else Lineage()
        self.cgroups = cgroups
        #: the user providers run as (``provider_user``), None: drpd's own
        self.user = user
        #: this instance's cgroup, made at its first start and kept for the
        #: next ones (making and removing a cgroup costs milliseconds), so
        #: a restart costs one ``cgroup.kill``; removed by ``release``
        self._group: Path | None = None
        #: starts no cgroup holds (none could be made): found by ancestry
        self._ungrouped: set[str] = set()

    async def workspace(self, runtime_dir: Path, cwd: Path) -> Path:
        user = self.user

        def make() -> Path:
            cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
            sockdir = Path(tempfile.mkdtemp(prefix="", dir=runtime_dir))
            if user is not None:  # the provider binds and connects in there
                user.give(cwd)
                user.give(sockdir)
            return sockdir

        return await trio.to_thread.run_sync(make)

    async def spawn(self, argv: list[str], *, env: Mapping[str, str],
                    cwd: Path) -> ProviderProcess:
        marker = env.get(INSTANCE_VAR, "")
        grouped = False
        as_user = spawn_options(self.user)
        drop = self.user.drop_argv() if self.user is not None else []
        if self.cgroups is not None and marker and drop is not None:
            # the shell joins the cgroup as drpd's user (only it may move a
            # process there), then becomes the provider's user, then execs
            try:
                group = (self._group if self._group is not None
                         else await trio.to_thread.run_sync(self.cgroups.make, marker))
            except OSError as exc:
                logging.getLogger("drpd.plugins").warning(
                    "no cgroup for %s (%s): its processes are found by ancestry", marker, exc)
            else:
                self._group = group
                grouped = True
                argv = [*TRAMPOLINE, str(group), *drop, *argv]
                as_user = {}
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=str(cwd), env=dict(env), start_new_session=True, **as_user,
        )
        if not grouped:  # no cgroup holds this start: ancestry must
            self._ungrouped.add(marker)
            self.lineage.add_root(process.pid, marker or f"pid:{process.pid}")
        return process

    def signal(self, process: ProviderProcess, signum: int) -> None:
        signal_group(process.pid, signum)

    async def remember(self) -> None:
        if self._ungrouped:  # a start in a cgroup needs no look: the cgroup holds them all
            await trio.to_thread.run_sync(self.lineage.update)

    async def sweep(self, marker: str) -> int:
        group = None if marker in self._ungrouped else self._group
        self._ungrouped.discard(marker)
        cgroups = self.cgroups

        def both() -> int:
            if cgroups is not None and group is not None:  # emptied, kept for the next start
                return cgroups.kill(group, remove=False) + kill_marked(INSTANCE_VAR, marker)
            return kill_marked(INSTANCE_VAR, marker) + self.lineage.kill(marker)

        return await trio.to_thread.run_sync(both)

    async def release(self) -> None:
        """The instance is gone: remove its cgroup (emptied first)."""
        group, self._group = self._group, None
        if group is not None and self.cgroups is not None:
            await trio.to_thread.run_sync(self.cgroups.kill, group)

    async def remove(self, path: Path) -> None:
        await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
