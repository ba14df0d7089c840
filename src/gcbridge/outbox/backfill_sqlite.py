"""Back-fill jobs in the SQLite outbox's file: table ``backfill_jobs``, written on the outbox's writer thread.

SQLite allows one writer; the outbox already owns it (one thread, grouped commits). The jobs therefore run
their statements through :meth:`SqliteOutbox.transact`, in the same transactions as the outbox's own
operations, never through a second connection (which would wait on the lock and slow ingest down).

One process owns the file, so its running jobs are its own: the owner and lease of the Protocol are kept for
the runner's sake (renewals always succeed) and ``recover`` takes back every running job.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from gcbridge.core.backfill_rules import JOB_STATES, JobState
from gcbridge.outbox.backfill_jobs import (
    JOB_COLUMNS,
    BackfillJob,
    BackfillJobStore,
    JobGap,
    JobOutcome,
    check_finish,
    job_from_row,
    job_params,
    outcome_to_json,
)
from gcbridge.outbox.sqlite import SqliteOutbox

__all__ = ["SqliteBackfillJobs"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS backfill_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gap_key     TEXT    NOT NULL UNIQUE,   -- one job per gap, however often it is reported
    gap_start   REAL    NOT NULL,
    gap_end     REAL    NOT NULL,
    topics      TEXT    NOT NULL,          -- JSON list
    reason      TEXT    NOT NULL,
    detail      TEXT,
    state       TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL    NOT NULL,
    outcome     TEXT,                      -- JSON (JobOutcome) of the last attempt
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL
)""",
    "CREATE INDEX IF NOT EXISTS backfill_jobs_due ON backfill_jobs(state, next_at)",
)


class SqliteBackfillJobs:
    """:class:`~gcbridge.outbox.backfill_jobs.BackfillJobStore` in the SQLite outbox's file."""

    lease = 60.0
    """Renewals cost a transaction on the writer thread each; with one process nothing depends on them."""

    def __init__(self, outbox: SqliteOutbox, *, owner: str = "single") -> None:
        self._outbox = outbox
        self.owner = owner

    @classmethod
    async def open(cls, outbox: SqliteOutbox, *, owner: str = "single") -> SqliteBackfillJobs:
        """The jobs of ``outbox``'s file (the table is created if needed)."""

        def create(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                conn.execute(statement)

        await outbox.transact(create, durable=True)
        return cls(outbox, owner=owner)

    async def enqueue(self, gap: JobGap, run_at: float, now: float) -> tuple[BackfillJob, bool]:
        params = job_params(gap)

        def insert(conn: sqlite3.Connection) -> tuple[BackfillJob, bool]:
            cursor = conn.execute(
                "INSERT INTO backfill_jobs(gap_key, gap_start, gap_end, topics, reason, detail, next_at, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(gap_key) DO NOTHING",
                (*params, run_at, now, now),
            )
            new = cursor.rowcount == 1
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM backfill_jobs WHERE gap_key = ?",  # noqa: S608 - constants only
                (params[0],),
            ).fetchone()
            return job_from_row(row), new

        return await self._outbox.transact(insert, durable=True)

    async def due(self, now: float, limit: int = 1) -> list[BackfillJob]:
        return await self._select(
            "WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?", (now, limit)
        )

    async def next_due(self) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            sql = "SELECT MIN(next_at) FROM backfill_jobs WHERE state = 'pending'"
            (value,) = conn.execute(sql).fetchone()
            return None if value is None else float(value)

        return await self._outbox.transact(read)

    async def start(self, job_id: int, now: float) -> BackfillJob | None:
        def update(conn: sqlite3.Connection) -> BackfillJob | None:
            changed = conn.execute(
                "UPDATE backfill_jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
                "updated_at = ? WHERE id = ? AND state = 'pending'",
                (now, now, job_id),
            ).rowcount
            return _one(conn, job_id) if changed else None

        return await self._outbox.transact(update, durable=True)

    async def claim(self, now: float) -> BackfillJob | None:
        def update(conn: sqlite3.Connection) -> BackfillJob | None:
            # one writer thread: the select and the update are one transaction nobody else interleaves
            row = conn.execute(
                "SELECT id FROM backfill_jobs WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id "
                "LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE backfill_jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
                "updated_at = ? WHERE id = ?",
                (now, now, row[0]),
            )
            return _one(conn, int(row[0]))

        return await self._outbox.transact(update, durable=True)

    async def renew(self, job_id: int) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            sql = "SELECT 1 FROM backfill_jobs WHERE id = ? AND state = 'running'"
            return conn.execute(sql, (job_id,)).fetchone() is not None

        return await self._outbox.transact(read)

    async def finish(
        self, job_id: int, state: JobState, outcome: JobOutcome, now: float, next_at: float | None = None
    ) -> bool:
        check_finish(state, next_at)
        finished = None if state == "pending" else now

        def update(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE backfill_jobs SET state = ?, outcome = ?, updated_at = ?, finished_at = ?, "
                    "next_at = COALESCE(?, next_at) WHERE id = ? AND state = 'running'",
                    (state, outcome_to_json(outcome), now, finished, next_at, job_id),
                ).rowcount
                == 1
            )

        return await self._outbox.transact(update, durable=True)

    async def recover(self, now: float) -> int:
        def update(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE backfill_jobs SET state = 'pending', next_at = ?, updated_at = ? "
                "WHERE state = 'running'",
                (now, now),
            ).rowcount

        return await self._outbox.transact(update, durable=True)

    async def get(self, job_id: int) -> BackfillJob | None:
        return await self._outbox.transact(lambda conn: _one(conn, job_id))

    async def recent(self, limit: int = 20) -> list[BackfillJob]:
        return await self._select("ORDER BY id DESC LIMIT ?", (limit,))

    async def counts(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            found = dict(conn.execute("SELECT state, COUNT(*) FROM backfill_jobs GROUP BY state").fetchall())
            return {state: int(found.get(state, 0)) for state in JOB_STATES}

        return await self._outbox.transact(read)

    async def forget_finished(self, before: float) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM backfill_jobs WHERE state IN ('done', 'partial', 'failed') AND finished_at < ?",
                (before,),
            ).rowcount

        return await self._outbox.transact(delete)

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[BackfillJob]:
        sql = f"SELECT {JOB_COLUMNS} FROM backfill_jobs {where}"  # noqa: S608 - constants only

        def read(conn: sqlite3.Connection) -> list[BackfillJob]:
            return [job_from_row(r) for r in conn.execute(sql, params).fetchall()]

        return await self._outbox.transact(read)


def _one(conn: sqlite3.Connection, job_id: int) -> BackfillJob | None:
    row = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM backfill_jobs WHERE id = ?",  # noqa: S608 - constants only
        (job_id,),
    ).fetchone()
    return None if row is None else job_from_row(row)


def _satisfies_protocol(store: SqliteBackfillJobs) -> BackfillJobStore:
    return store  # never called: mypy proves the protocol is implemented
