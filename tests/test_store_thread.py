"""The SQLite store's own thread: results, errors, order, cancellation, closing."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import trio

from drpd.store.sqlite import SQLiteStore, StoreVersionError
from drpd.store.store_thread import StoreThread


def _live(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


async def test_runs_on_one_thread_of_its_own_and_carries_results_and_errors() -> None:
    worker = StoreThread("t-results")
    worker.start()
    try:
        idents = {await worker.run(threading.get_ident) for _ in range(5)}
        assert len(idents) == 1 and threading.get_ident() not in idents
        assert await worker.run(lambda a, b: a + b, 2, 3) == 5

        def fail() -> None:
            raise KeyError("the job's own error")

        with pytest.raises(KeyError, match="the job's own error") as caught:
            await worker.run(fail)
        assert caught.traceback[-1].name == "fail"  # raised with the job's traceback
        assert await worker.run(lambda: "still serving") == "still serving"
    finally:
        await worker.aclose()


async def test_calls_run_one_at_a_time_in_the_order_they_were_made() -> None:
    worker = StoreThread("t-order")
    worker.start()
    running = 0
    most = 0
    order: list[int] = []
    release = threading.Event()

    def job(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if i == 0:
            release.wait(10)  # the first holds the thread while the others queue
        order.append(i)
        running -= 1
        return i

    results: dict[int, int] = {}

    async def call(i: int, started: trio.Event) -> None:
        started.set()
        results[i] = await worker.run(job, i)

    try:
        async with trio.open_nursery() as nursery:
            for i in range(8):
                started = trio.Event()
                nursery.start_soon(call, i, started)
                await started.wait()
                await trio.testing.wait_all_tasks_blocked()
            release.set()
    finally:
        await worker.aclose()
    assert order == list(range(8))
    assert most == 1
    assert results == {i: i for i in range(8)}


async def test_a_cancelled_caller_does_not_abandon_a_started_call() -> None:
    worker = StoreThread("t-cancel")
    worker.start()
    entered = threading.Event()
    release = threading.Event()
    done: list[str] = []

    def commit() -> str:
        entered.set()
        release.wait(10)
        done.append("committed")
        return "committed"

    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def cancel_when_running() -> None:
                    await trio.to_thread.run_sync(entered.wait, 10)
                    scope.cancel()
                    release.set()

                nursery.start_soon(cancel_when_running)
                await worker.run(commit)
                await trio.sleep_forever()  # the cancellation arrives here, after the call
        assert scope.cancelled_caught
        assert done == ["committed"]
        assert await worker.run(lambda: "next") == "next"
    finally:
        await worker.aclose()


async def test_aclose_lets_queued_calls_finish_then_ends_the_thread() -> None:
    worker = StoreThread("t-close")
    worker.start()
    assert len(_live("t-close")) == 1
    finished: list[int] = []

    async def call(i: int) -> None:
        await worker.run(finished.append, i)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(call, i)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(worker.aclose)
    assert sorted(finished) == [0, 1, 2]
    assert _live("t-close") == []
    with pytest.raises(RuntimeError, match="not running"):
        await worker.run(lambda: None)
    await worker.aclose()  # a second close does nothing
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()


async def test_the_store_commits_on_its_thread_and_ends_it_on_close(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "drpd.db")
    await store.open()
    thread = store._thread._thread
    try:
        assert thread is not None and thread.name == "drpd-sqlite" and thread.is_alive()
        assert await store._run(threading.get_ident) == thread.ident
        native = await store._run(threading.get_native_id)
        comm = await trio.Path(f"/proc/self/task/{native}/comm").read_text()
        assert comm.strip() == "drpd-sqlite"  # what top -H and ps -L show
    finally:
        await store.aclose()
    assert not thread.is_alive()


async def test_a_store_that_cannot_open_leaves_no_thread(tmp_path) -> None:
    path = tmp_path / "newer.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=999")
    conn.close()
    store = SQLiteStore(path)
    with pytest.raises(StoreVersionError):
        await store.open()
    thread = store._thread._thread
    assert thread is not None and not thread.is_alive()
