"""One thread that owns a SQLite connection and runs queued operations in grouped commits.

Every operation submitted while the thread is busy joins the next group: the thread takes all queued
operations (up to ``max_group``), runs each inside its own savepoint of one ``BEGIN IMMEDIATE`` transaction,
commits once, and only then releases the awaiting callers. So 50 concurrent ``put_many`` calls cost one commit
(one fsync with ``synchronous=FULL``), and a caller never hears "done" for something that is not committed.

An operation that raises is rolled back to its savepoint and its caller gets the exception; the others in the
group still commit. If the commit itself fails, every caller in the group gets the error. In both cases
``on_abort`` runs (the store uses it to rebuild its in-memory index from what the database now holds).
``after_group`` runs on the writer thread after every group, before the callers are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Operation = Callable[[sqlite3.Connection], T]


@dataclass(slots=True)
class _Job(Generic[T]):
    op: Operation[T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    durable: bool


_STOP = object()


class WriterClosedError(RuntimeError):
    """The outbox writer thread has stopped; nothing more can be stored."""


class GroupCommitWriter:
    """Runs ``op(connection)`` callables on a dedicated thread, many per transaction."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        max_group: int = 256,
        on_abort: Callable[[sqlite3.Connection], None] | None = None,
        after_group: Callable[[], None] | None = None,
        durable_level: str = "FULL",
        name: str = "gcbridge-outbox-writer",
    ) -> None:
        self._conn = connection
        self._max_group = max_group
        self._on_abort = on_abort
        self._after_group = after_group
        self._durable_level = durable_level
        self._level = ""  # the connection's current synchronous level, set lazily per group
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self.commits = 0  # groups committed, for benchmarks and metrics
        self.operations = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: Operation[T], *, durable: bool = False) -> asyncio.Future[T]:
        """Queue ``op``; the returned future resolves after the transaction that ran it has committed.

        A group that holds a ``durable`` operation commits at the writer's ``durable_level`` (``FULL``: the
        WAL is fsynced); any other group commits at ``NORMAL`` (no fsync). In WAL mode a later fsync covers
        every earlier frame, so a power loss can only take the newest non-durable commits with it.
        """
        if self._closed:
            raise WriterClosedError("the outbox is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(op, future, loop, durable))
        return future

    async def close(self) -> None:
        """Finish queued work, stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # -- thread side -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_Job[Any]] = [first]
                stop = False
                while len(batch) < self._max_group:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                self._run_group(batch)
                if stop:
                    return
        finally:
            # also reached when the thread dies of an unexpected error: later submits must fail, not hang
            self._closed = True
            self._conn.close()
            self._fail_queued()

    def _run_group(self, batch: list[_Job[Any]]) -> None:
        results: list[tuple[bool, Any]] = []
        conn = self._conn
        try:
            level = self._durable_level if any(job.durable for job in batch) else "NORMAL"
            if level != self._level:
                conn.execute(f"PRAGMA synchronous={level}")
                self._level = level
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.future.cancelled():
                    # the caller gave up before we started: skipping is safe, nothing was promised
                    results.append((False, asyncio.CancelledError()))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    value = job.op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    self._abort(conn)
                    results.append((False, exc))
                else:
                    conn.execute("RELEASE op")
                    results.append((True, value))
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the original error is the one worth reporting
                    conn.execute("ROLLBACK")
            self._abort(conn)
            results = [(False, exc)] * len(batch)
        self.commits += 1
        self.operations += len(batch)
        if self._after_group is not None:
            self._after_group()
        _resolve_all(batch, results)

    def _abort(self, conn: sqlite3.Connection) -> None:
        if self._on_abort is not None:
            self._on_abort(conn)

    def _fail_queued(self) -> None:
        leftovers: list[_Job[Any]] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                leftovers.append(job)
        _resolve_all(leftovers, [(False, WriterClosedError("the outbox is closed"))] * len(leftovers))


def _resolve_all(batch: list[_Job[Any]], results: list[tuple[bool, Any]]) -> None:
    """Hand results back to their event loops: one thread-safe call per loop, not one per caller."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for job, (ok, value) in zip(batch, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
