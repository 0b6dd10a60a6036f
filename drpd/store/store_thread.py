"""The one OS thread that runs an SQLite store's blocking calls.

Why not ``trio.to_thread.run_sync``: every commit waits on the disk, so
each one is handed to a thread and back, and on a small VM the hand-off is
a visible part of a create's latency. On the 2-core CI machine, one writer,
1.5 ms between commits, the same SQLite commit took 306 µs inline, 431 µs
through ``trio.to_thread.run_sync`` and 352 µs through this thread
(``bench/store.py`` keeps the comparison: "SQLite insert via the store's
thread vs via trio.to_thread"). The difference is what ``to_thread`` does
for any caller and a store does not need: a capacity limiter, a context
copy, a thread cache, and a result delivered by ``run_sync_soon`` to
trio's entry-queue task, which then wakes the caller. Here the thread
writes one byte to a pipe and epoll wakes the waiting task itself.

The thread belongs to its store: started by ``open``, ended by ``aclose``.
Calls run one at a time in the order they are made (``trio.Lock`` is
fair), and a call that has started runs to its end even if its caller is
cancelled, as with ``to_thread``'s default: a commit that has reached
SQLite is never abandoned half way by drpd.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple, Unpack, cast

import trio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_Job = tuple[Callable[..., Any], tuple[Any, ...]]
_PR_SET_NAME = 15


def _name_os_thread(name: str) -> None:
    """Show ``name`` for the calling thread in ``top -H``, ``ps -L`` and py-spy (Linux)."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


class StoreThread:
    """Run blocking functions on one dedicated thread, one at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = trio.Lock()
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._result: Any = None
        self._error: BaseException | None = None
        self._closed = False

    def start(self) -> None:
        if self._thread is not None or self._closed:
            raise RuntimeError(f"{self.name} was already started")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        _name_os_thread(self.name)
        while (job := self._jobs.get()) is not None:
            fn, args = job
            try:
                self._result, self._error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - carried to the caller
                self._result, self._error = None, exc
            os.write(self._wake_w, b"\0")
        os.write(self._wake_w, b"\0")  # the last byte says: this thread is done

    async def _woken(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._wake_r)
            try:
                if os.read(self._wake_r, 1):
                    return
            except BlockingIOError:
                continue

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """``fn(*args)`` on the thread; its result, or its exception raised here."""
        async with self._lock:
            if self._thread is None or self._closed:
                raise RuntimeError(f"{self.name} is not running")
            self._jobs.put((fn, args))
            with trio.CancelScope(shield=True):
                await self._woken()
            result, error = self._result, self._error
            self._result = self._error = None
        if error is not None:
            try:
                raise error
            finally:
                del error
        return cast(T, result)

    async def aclose(self) -> None:
        """End the thread after the calls already made; idempotent."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is None:
                return
            self._jobs.put(None)
            with trio.CancelScope(shield=True):
                await self._woken()
                await trio.to_thread.run_sync(thread.join)
            trio.lowlevel.notify_closing(self._wake_r)
            os.close(self._wake_r)
            os.close(self._wake_w)
