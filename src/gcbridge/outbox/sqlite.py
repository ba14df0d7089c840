"""The default outbox: one SQLite file in WAL mode, one writer thread, grouped commits.

Usage::

    store = await SqliteOutbox.open("/var/lib/gcbridge/outbox.db")
    new = await store.put_many(items)          # durable (fsynced) when this returns
    rows = await store.claim(64, now=time.time())
    ...
    await store.close()

Everything, reads included, runs on the writer thread: claims and acks are writes anyway, admin reads are
rare, and a single owner keeps the in-memory :class:`~gcbridge.outbox.schedule.KeySchedule` exactly in step
with the database. Concurrent calls from the event loop coalesce into one transaction (see
:mod:`gcbridge.outbox._writer`), so the fsync that ``synchronous=FULL`` costs is paid once per group.

Durability (``synchronous``):

* ``"FULL"`` (default): the WAL is fsynced at every commit. A row survives a process kill *and* a power
  loss or kernel crash once ``put_many`` has returned. Genesys does not redeliver notifications, so an event
  that we have taken off the socket exists nowhere else: this is the only setting under which "durable before
  it counts as received" holds. Grouped commits make it affordable (see ``bench/README-outbox.md``).
* ``"NORMAL"``: commits reach the OS page cache, not the disk. They survive a process kill (the kernel still
  writes them) but the last commits before a power loss may roll back. Faster on slow disks; opt in knowingly.

Only ingest (``put_many``) and the operator's ``replay`` / ``purge`` need that fsync. Claims, acks, retries
and dead-letterings commit at ``NORMAL`` whatever the setting: losing the newest of them to a power loss only
hands a row out again (at-least-once delivery, which the ServiceNow side absorbs anyway), and WAL frames are
ordered, so the next fsync persists them together with every earlier change.

One process at a time: :meth:`SqliteOutbox.open` takes an exclusive ``flock`` on ``<path>.lock``, so that
in-flight rows found at open time provably belong to a dead process and are recovered at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from gcbridge.outbox._writer import GroupCommitWriter
from gcbridge.outbox.base import (
    ALL,
    OutboxItem,
    OutboxRow,
    OutboxStats,
    OutboxStore,
    RowInfo,
    Selection,
)
from gcbridge.outbox.rowcodes import (
    DEAD,
    DELIVERED,
    IN_FLIGHT,
    PENDING,
    STATE_NAMES,
    clip_error,
    item_params,
    newest_by_state,
    not_older,
    same_state,
)
from gcbridge.outbox.schedule import KeySchedule

__all__ = ["OutboxLockedError", "SqliteOutbox"]

T = TypeVar("T")

Synchronous = Literal["FULL", "NORMAL"]

_SQL_VARS = 500  # ids per IN (...) list, well below SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused after purges
    dedup_key        TEXT    NOT NULL UNIQUE,
    order_key        TEXT    NOT NULL,
    topic            TEXT    NOT NULL,
    payload          BLOB    NOT NULL,
    received_at      REAL    NOT NULL,
    state            INTEGER NOT NULL DEFAULT 0,         -- 0 pending, 1 in flight, 2 delivered, 3 dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL    NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at REAL,
    finished_at      REAL,
    detail           TEXT
);
-- (state, finished_at, rowid): retention scans, the dead-letter list, the oldest undelivered row by id
CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, finished_at);
CREATE TABLE IF NOT EXISTS outbox_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO outbox_meta(name, value) VALUES ('schema_version', '1');
"""

_ROW_COLUMNS = "id, dedup_key, order_key, topic, payload, received_at, attempts, last_error"
_INFO_COLUMNS = (
    "id, dedup_key, order_key, topic, payload, received_at, state, attempts, next_attempt_at, last_error, "
    "lease_owner, lease_expires_at, finished_at, detail"
)


class OutboxLockedError(RuntimeError):
    """Another process (or another open store in this one) already owns this outbox file."""


class SqliteOutbox:
    """Durable outbox on SQLite; satisfies :class:`gcbridge.outbox.base.OutboxStore`.

    Create it with :meth:`open`. All methods are coroutines that never block the event loop. Times are
    wall-clock UNIX seconds passed in by the caller (``now``), so tests drive it with a fake clock.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        lock_fd: int,
        *,
        lease_ttl: float,
        retention: float,
        owner: str,
        max_group: int,
        synchronous: Synchronous,
    ) -> None:
        self.path = path
        self.lease_ttl = lease_ttl
        self.retention = retention
        self.owner = owner
        self._lock_fd = lock_fd
        self._schedule = KeySchedule()
        self._delivered = 0
        self._dead = 0
        self.recovered_on_open = 0
        """How many rows were in flight when the file was opened (left by a process that died)."""
        self._rebuild(conn)
        self._next_due: float | None = self._schedule.next_due()
        self._writer = GroupCommitWriter(
            conn,
            max_group=max_group,
            on_abort=self._rebuild,
            after_group=self._publish_next_due,
            durable_level=synchronous,
        )

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        lease_ttl: float = 300.0,
        retention: float = 24 * 3600.0,
        owner: str | None = None,
        max_group: int = 256,
    ) -> SqliteOutbox:
        """Open (creating if needed) the outbox at ``path`` and recover rows left in flight.

        ``lease_ttl`` (default 300 s): how long a claimed row stays in flight before it is handed out again;
        keep it well above the sink's request timeout. ``retention`` (default 24 h): how long delivered rows
        are kept for inspection and for de-duplication of late repeats. ``max_group`` (default 256): most
        operations per transaction. ``owner`` names this process in claim leases (default: a random id).
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if lease_ttl <= 0 or retention < 0 or max_group < 1:
            raise ValueError("lease_ttl must be > 0, retention >= 0 and max_group >= 1")
        db_path = Path(path)
        owner_name = owner if owner is not None else f"gcbridge-{uuid.uuid4().hex[:12]}"

        def setup() -> SqliteOutbox:
            lock_fd = _lock(db_path)
            try:
                conn = _connect(db_path, synchronous)
                conn.execute("BEGIN IMMEDIATE")
                recovered = conn.execute(
                    "UPDATE outbox SET state = ?, lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE state = ?",
                    (PENDING, IN_FLIGHT),
                ).rowcount
                conn.execute("COMMIT")
                store = cls(
                    db_path,
                    conn,
                    lock_fd,
                    lease_ttl=lease_ttl,
                    retention=retention,
                    owner=owner_name,
                    max_group=max_group,
                    synchronous=synchronous,
                )
                store.recovered_on_open = recovered
                return store
            except BaseException:
                os.close(lock_fd)
                raise

        return await asyncio.to_thread(setup)

    def __repr__(self) -> str:
        return f"SqliteOutbox(path={str(self.path)!r}, owner={self.owner!r})"

    @property
    def commits(self) -> int:
        """Transactions committed by the writer so far (operations per commit shows the grouping)."""
        return self._writer.commits

    # -- ingest ------------------------------------------------------------------------------------------

    async def put_many(self, items: Sequence[OutboxItem]) -> int:
        """Store ``items`` durably; returns how many were new. Repeats (same ``dedup_key``) are ignored,
        also against delivered rows still within retention and dead rows not yet purged."""
        if not items:
            return 0
        params = [item_params(i, item) for i, item in enumerate(items)]
        return await self._run(lambda conn: self._put(conn, params), durable=True)

    def _put(self, conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> int:
        (before,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        conn.executemany(
            "INSERT INTO outbox(dedup_key, order_key, topic, payload, received_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(dedup_key) DO NOTHING",
            params,
        )
        return self._schedule_new(conn, before)

    def _schedule_new(self, conn: sqlite3.Connection, before: int) -> int:
        new = conn.execute(
            "SELECT id, order_key, topic FROM outbox WHERE id > ? ORDER BY id", (before,)
        ).fetchall()
        for row_id, order_key, topic in new:
            self._schedule.add(row_id, order_key, topic, 0.0)
        return len(new)

    async def put_unless_newer(
        self, items: Sequence[OutboxItem], *, after_id: int = 0, state_of: Callable[[str], str] = same_state
    ) -> int:
        """Like :meth:`put_many`, for back-filled states (``received_at``: the moment the state was read): an
        item is skipped when a row of its ``order_key`` with an id above ``after_id`` was received after the
        item's ``received_at`` (or an earlier item of ``items`` was), so that an older state never lands
        behind a newer live one. Checked in the insert's transaction on the writer thread: no live put slips
        in between. Returns how many were stored.

        ``after_id``: :meth:`last_id` taken before the states were read. A row received after a read was
        stored after it, so it has a higher id: the check scans only the rows stored since (no index on
        ``order_key`` is needed, which would cost every live insert).

        ``state_of(topic)``: rows of one order key block each other only when they carry the same state
        (by default all of them do); topics that write different fields of one record are different states."""
        if not items:
            return 0
        params = [item_params(i, item) for i, item in enumerate(items)]
        return await self._run(lambda conn: self._put_guarded(conn, params, after_id, state_of), durable=True)

    def _put_guarded(
        self,
        conn: sqlite3.Connection,
        params: list[tuple[Any, ...]],
        after_id: int,
        state_of: Callable[[str], str],
    ) -> int:
        (before,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        found = conn.execute(
            "SELECT order_key, topic, MAX(received_at) FROM outbox WHERE id > ? GROUP BY order_key, topic",
            (after_id,),
        ).fetchall()
        conn.executemany(
            "INSERT INTO outbox(dedup_key, order_key, topic, payload, received_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(dedup_key) DO NOTHING",
            not_older(params, newest_by_state(found, state_of), state_of),
        )
        return self._schedule_new(conn, before)

    async def last_id(self) -> int:
        """The highest row id stored so far (0 for an empty outbox); see :meth:`put_unless_newer`."""
        return await self._run(
            lambda conn: int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0])
        )

    def transact(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> asyncio.Future[T]:
        """Run ``op(connection)`` on the writer thread, inside its grouped transaction (rolled back alone if
        it raises), for tables that live beside the outbox in this file (back-fill jobs). ``op`` must not
        change the ``outbox`` table: the store's in-memory schedule would not know."""
        return self._run(op, durable=durable)

    # -- delivery ----------------------------------------------------------------------------------------

    async def claim(self, limit: int, now: float, *, coalesce: bool = False) -> list[OutboxRow]:
        """Up to ``limit`` due rows, at most one per order key, each the oldest pending row of its key and
        none for a key with a row already in flight. Claimed rows are in flight until acked, retried or
        dead-lettered, or until ``lease_ttl`` passes. See :meth:`OutboxStore.claim` for ``coalesce``."""
        if limit <= 0:
            return []
        return await self._run(lambda conn: self._claim(conn, limit, now, coalesce))

    def _claim(self, conn: sqlite3.Connection, limit: int, now: float, coalesce: bool) -> list[OutboxRow]:
        self._recover_expired(conn, now)
        claims = self._schedule.claim(limit, now, now + self.lease_ttl, coalesce=coalesce)
        if not claims:
            return []
        conn.executemany(
            "UPDATE outbox SET state = ?, lease_owner = ?, lease_expires_at = ? WHERE id = ?",
            [(IN_FLIGHT, self.owner, now + self.lease_ttl, c.row_id) for c in claims],
        )
        superseded = [(now, f"superseded by #{c.row_id}", s) for c in claims for s in c.superseded]
        if superseded:
            conn.executemany(
                f"UPDATE outbox SET state = {DELIVERED}, finished_at = ?, detail = ? WHERE id = ?",  # noqa: S608 - constants only
                superseded,
            )
            self._delivered += len(superseded)
        by_id = {
            r[0]: OutboxRow(*r)
            for r in _select_in(
                conn,
                f"SELECT {_ROW_COLUMNS} FROM outbox WHERE id IN",  # noqa: S608 - constants only
                [c.row_id for c in claims],
            )
        }
        return [by_id[c.row_id] for c in claims]

    def _recover_expired(self, conn: sqlite3.Connection, now: float) -> None:
        expired = self._schedule.expired_leases(now)
        if not expired:
            return
        conn.executemany(
            "UPDATE outbox SET state = ?, lease_owner = NULL, lease_expires_at = NULL, "
            "last_error = 'claim lease expired' WHERE id = ?",
            [(PENDING, row_id) for row_id in expired],
        )
        for row_id in expired:
            self._schedule.retry(row_id, now)

    async def next_due(self) -> float | None:
        """When the earliest waiting row becomes claimable; ``None`` if no row waits (or all keys busy).

        As of the last completed write: answered without a round trip to the writer thread, so an idle
        dispatcher can ask after every claim.
        """
        return self._next_due

    def _publish_next_due(self) -> None:
        # a float or None assigned in one step: safe to read from the event loop thread
        self._next_due = self._schedule.next_due()

    async def ack(self, row_ids: Sequence[int], now: float) -> int:
        """Mark in-flight rows delivered; ids not in flight (already acked, lease lost) are ignored."""
        ids = list(row_ids)
        return await self._run(lambda conn: self._finish(conn, ids, now))

    def _finish(self, conn: sqlite3.Connection, ids: list[int], now: float) -> int:
        live = [i for i in ids if self._schedule.is_in_flight(i)]
        conn.executemany(
            "UPDATE outbox SET state = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ?",
            [(DELIVERED, now, i) for i in live],
        )
        for i in live:
            self._schedule.finish(i)
        self._delivered += len(live)
        return len(live)

    async def retry(self, row_id: int, next_attempt_at: float, error: str) -> bool:
        """Back to pending, due at ``next_attempt_at``, one more attempt counted, ``error`` kept as
        ``last_error``. Later rows of the key wait for it. ``False`` if the row was not in flight."""
        return await self._run(lambda conn: self._retry(conn, row_id, next_attempt_at, error))

    def _retry(self, conn: sqlite3.Connection, row_id: int, next_attempt_at: float, error: str) -> bool:
        if not self._schedule.is_in_flight(row_id):
            return False
        conn.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            (PENDING, next_attempt_at, clip_error(error), row_id),
        )
        self._schedule.retry(row_id, next_attempt_at)
        return True

    async def hold(self, row_id: int, error: str) -> bool:
        """Back to pending, due first (time 0), attempts unchanged (a sink-wide failure, not the row's)."""
        return await self._run(lambda conn: self._hold(conn, row_id, error))

    def _hold(self, conn: sqlite3.Connection, row_id: int, error: str) -> bool:
        if not self._schedule.is_in_flight(row_id):
            return False
        conn.execute(
            "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ?, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            (PENDING, 0.0, clip_error(error), row_id),
        )
        self._schedule.retry(row_id, 0.0)
        return True

    async def release_held(self, now: float) -> int:
        """Every pending row due later than ``now`` becomes due at ``now``; returns how many."""
        return await self._run(lambda conn: self._release_held(conn, now))

    def _release_held(self, conn: sqlite3.Connection, now: float) -> int:
        moved = self._schedule.due_by(now)
        if moved:
            conn.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE state = ? AND next_attempt_at > ?",
                (now, PENDING, now),
            )
        return len(moved)

    async def dead_letter(self, row_id: int, reason: str, now: float) -> bool:
        """Move a pending or in-flight row to the dead-letter list with ``reason`` (counted as an attempt
        when it was in flight). Its key is released: later rows proceed. ``False`` if the row was neither."""
        return await self._run(lambda conn: self._bury(conn, row_id, reason, now))

    def _bury(self, conn: sqlite3.Connection, row_id: int, reason: str, now: float) -> bool:
        in_flight = self._schedule.is_in_flight(row_id)
        if not in_flight and not self._schedule.is_pending(row_id):
            return False
        conn.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + ?, last_error = ?, finished_at = ?, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            (DEAD, 1 if in_flight else 0, clip_error(reason), now, row_id),
        )
        if in_flight:
            self._schedule.finish(row_id)
        else:
            self._schedule.drop_pending([row_id])
        self._dead += 1
        return True

    # -- inspection and the dead-letter workflow -------------------------------------------------------

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[RowInfo]:
        """Dead-lettered rows, oldest id first, ``limit`` at a time from ``offset``."""

        def read(conn: sqlite3.Connection) -> list[RowInfo]:
            rows = conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM outbox WHERE state = ? ORDER BY id LIMIT ? OFFSET ?",  # noqa: S608 - constants only
                (DEAD, limit, offset),
            ).fetchall()
            return [_info(r) for r in rows]

        return await self._run(read)

    async def inspect(self, row_id: int) -> RowInfo | None:
        """One row in any state, ``None`` when there is no such row (never stored, expired or purged)."""

        def read(conn: sqlite3.Connection) -> RowInfo | None:
            row = conn.execute(f"SELECT {_INFO_COLUMNS} FROM outbox WHERE id = ?", (row_id,)).fetchone()  # noqa: S608 - constants only
            return None if row is None else _info(row)

        return await self._run(read)

    async def replay(self, rows: Selection, now: float) -> int:
        """Dead rows (``ALL`` or the given ids; other ids are ignored) back to pending, due at once, with
        attempts reset. A replayed row keeps its id, so it goes before later pending rows of its key; rows of
        its key delivered meanwhile are not undone. Returns how many rows were replayed."""
        return await self._run(lambda conn: self._replay(conn, rows), durable=True)

    def _replay(self, conn: sqlite3.Connection, rows: Selection) -> int:
        where, ids = _selection(rows)
        found = _select_in(
            conn,
            f"SELECT id, order_key, topic FROM outbox WHERE state = {DEAD} {where}",  # noqa: S608 - constants only
            ids,
        )
        conn.executemany(
            "UPDATE outbox SET state = ?, attempts = 0, next_attempt_at = 0, finished_at = NULL WHERE id = ?",
            [(PENDING, r[0]) for r in found],
        )
        for row_id, order_key, topic in found:
            self._schedule.add(row_id, order_key, topic, 0.0)
        self._dead -= len(found)
        return len(found)

    async def purge(self, rows: Selection) -> int:
        """Delete dead rows (``ALL`` or the given ids; other ids are ignored). Their dedup keys are freed, so
        a later put of the same event is accepted again. Returns how many rows were deleted."""

        def delete(conn: sqlite3.Connection) -> int:
            where, ids = _selection(rows)
            found = [
                r[0]
                for r in _select_in(conn, f"SELECT id FROM outbox WHERE state = {DEAD} {where}", ids)  # noqa: S608 - constants only
            ]
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in found])
            self._dead -= len(found)
            return len(found)

        return await self._run(delete, durable=True)

    async def expire_delivered(self, now: float, *, batch: int = 500) -> int:
        """Delete up to ``batch`` delivered rows finished before ``now - retention``; returns how many.

        Call it repeatedly (the dispatcher does, every ``housekeeping_interval``) until it returns less than
        ``batch``: small batches keep each transaction short so ingest never waits long behind a cleanup.
        """
        cutoff = now - self.retention

        def delete(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = ? AND finished_at < ? "
                "LIMIT ?)",
                (DELIVERED, cutoff, batch),
            ).rowcount
            self._delivered -= deleted
            return deleted

        return await self._run(delete)

    async def stats(self, now: float) -> OutboxStats:
        """Row counts by state and the age of the oldest undelivered row (pending or in flight)."""

        def read(conn: sqlite3.Connection) -> OutboxStats:
            oldest: float | None = None
            for state in (PENDING, IN_FLIGHT):
                row = conn.execute(
                    "SELECT received_at FROM outbox WHERE state = ? AND finished_at IS NULL "
                    "ORDER BY id LIMIT 1",
                    (state,),
                ).fetchone()
                if row is not None:
                    oldest = row[0] if oldest is None else min(oldest, row[0])
            return OutboxStats(
                pending=self._schedule.pending,
                in_flight=self._schedule.in_flight,
                dead=self._dead,
                delivered=self._delivered,
                oldest_pending_age=0.0 if oldest is None else max(0.0, now - oldest),
            )

        return await self._run(read)

    async def close(self) -> None:
        """Finish queued operations, close the database and release the file lock. Idempotent."""
        await self._writer.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def __aenter__(self) -> SqliteOutbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------------------------

    def _run(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> asyncio.Future[T]:
        return self._writer.submit(op, durable=durable)

    def _rebuild(self, conn: sqlite3.Connection) -> None:
        """Load the in-memory schedule and counters from the database (on open, and after a failed write)."""
        schedule = KeySchedule()
        for row_id, order_key, topic, due, state, lease in conn.execute(
            "SELECT id, order_key, topic, next_attempt_at, state, lease_expires_at FROM outbox "
            "WHERE state IN (0, 1) ORDER BY id"
        ):
            schedule.add(row_id, order_key, topic, due)
            if state == IN_FLIGHT:
                # only after a failed write inside a running store: keep the claim, with its lease
                schedule.mark_in_flight(row_id, lease if lease is not None else 0.0)
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM outbox WHERE state IN (2, 3) GROUP BY state"))
        self._schedule = schedule
        self._delivered = counts.get(DELIVERED, 0)
        self._dead = counts.get(DEAD, 0)


def _lock(db_path: Path) -> int:
    lock_path = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutboxLockedError(
            f"outbox {str(db_path)!r} is already open in another process (lock file {str(lock_path)!r})"
        ) from None
    return fd


def _connect(db_path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    # check_same_thread=False: created here, then used only by the writer thread
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch {str(db_path)!r} to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def _info(row: tuple[Any, ...]) -> RowInfo:
    values = list(row)
    values[6] = STATE_NAMES[values[6]]
    return RowInfo(*values)


def _selection(rows: Selection) -> tuple[str, list[int] | None]:
    if isinstance(rows, str):
        if rows != ALL:
            raise ValueError(f"rows must be a sequence of row ids or {ALL!r}, got {rows!r}")
        return "", None
    return "AND id IN", [int(r) for r in rows]


def _select_in(conn: sqlite3.Connection, sql: str, ids: list[int] | None) -> list[tuple[Any, ...]]:
    """Run ``sql`` (ending in ``id IN`` when ids are given) over ids in chunks under SQLite's variable cap."""
    if ids is None:
        return conn.execute(sql).fetchall()
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), _SQL_VARS):
        chunk = ids[start : start + _SQL_VARS]
        out.extend(conn.execute(f"{sql} ({','.join('?' * len(chunk))})", chunk).fetchall())
    return out


def _satisfies_protocol(store: SqliteOutbox) -> OutboxStore:
    return store  # never called: mypy proves that SqliteOutbox implements every OutboxStore method
