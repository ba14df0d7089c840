"""Back-fill jobs in the PostgreSQL outbox's database (table ``backfill_jobs``, migration ``0002``).

Statements run on the outbox store's pool, each operation in one transaction. ``start`` moves a job to
``running`` only if it is still pending (a conditional ``UPDATE``) and ``claim`` picks the earliest due job
with ``FOR UPDATE SKIP LOCKED``, so two processes never run one job.

Several instances share the table (``[ha]``, migration ``0006``): a running job carries its ``owner`` and a
``lease_until`` by the DATABASE clock (machines whose clocks drift still agree), which the owner renews while
the job runs. ``recover`` takes back the owner's own running jobs (a restart under a fixed instance id) and
those whose lease lapsed (an owner that died, or lost the database for longer than the lease), never a job
that a live instance runs.
"""

from __future__ import annotations

from typing import Any, Final

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
from gcbridge.outbox.pg_leases import DB_NOW
from gcbridge.outbox.postgres import PostgresOutbox

__all__ = ["DEFAULT_LEASE", "PostgresBackfillJobs"]

DEFAULT_LEASE: Final = 60.0
"""Seconds a running job stays its owner's without a renewal, unless the service sets it (``[ha]
lease_ttl``): how long a dead owner's job waits before another instance takes it back."""
_COLUMNS: Final = f"{JOB_COLUMNS}, owner"
_START: Final = (
    "state = 'running', attempts = attempts + 1, started_at = $2, updated_at = $2, owner = $3, "
    f"lease_until = {DB_NOW} + $4"
)


class PostgresBackfillJobs:
    """:class:`~gcbridge.outbox.backfill_jobs.BackfillJobStore` in the PostgreSQL outbox's database."""

    def __init__(
        self, outbox: PostgresOutbox, *, owner: str = "single", lease: float = DEFAULT_LEASE
    ) -> None:
        if lease <= 0:
            raise ValueError("a back-fill job lease must be positive")
        self._outbox = outbox
        self.owner = owner
        self.lease = lease

    @classmethod
    async def open(
        cls, outbox: PostgresOutbox, *, owner: str = "single", lease: float = DEFAULT_LEASE
    ) -> PostgresBackfillJobs:
        """The jobs of ``outbox``'s database (its migrations, applied when it opened, made the table), run
        as ``owner`` (the instance id with ``[ha]``; every instance needs its own)."""
        return cls(outbox, owner=owner, lease=lease)

    def __repr__(self) -> str:
        return f"PostgresBackfillJobs(owner={self.owner!r}, lease={self.lease:g})"

    async def enqueue(self, gap: JobGap, run_at: float, now: float) -> tuple[BackfillJob, bool]:
        params = job_params(gap)

        async def insert(conn: Any) -> tuple[BackfillJob, bool]:
            inserted = await conn.fetchval(
                "INSERT INTO backfill_jobs(gap_key, gap_start, gap_end, topics, reason, detail, next_at, "
                "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
                "ON CONFLICT (gap_key) DO NOTHING RETURNING id",
                *params,
                run_at,
                now,
            )
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM backfill_jobs WHERE gap_key = $1",  # noqa: S608 - constants only
                params[0],
            )
            return job_from_row(row), inserted is not None

        return await self._outbox.transact(insert, durable=True)

    async def due(self, now: float, limit: int = 1) -> list[BackfillJob]:
        return await self._select(
            "WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2", now, limit
        )

    async def next_due(self) -> float | None:
        async def read(conn: Any) -> float | None:
            value = await conn.fetchval("SELECT MIN(next_at) FROM backfill_jobs WHERE state = 'pending'")
            return None if value is None else float(value)

        return await self._outbox.transact(read)

    async def start(self, job_id: int, now: float) -> BackfillJob | None:
        async def update(conn: Any) -> BackfillJob | None:
            row = await conn.fetchrow(
                f"UPDATE backfill_jobs SET {_START} WHERE id = $1 AND state = 'pending' RETURNING {_COLUMNS}",  # noqa: S608 - constants only
                job_id,
                now,
                self.owner,
                self.lease,
            )
            return None if row is None else job_from_row(row)

        return await self._outbox.transact(update, durable=True)

    async def claim(self, now: float) -> BackfillJob | None:
        async def update(conn: Any) -> BackfillJob | None:
            # SKIP LOCKED: a job another instance is claiming this instant is passed over, not waited for
            row = await conn.fetchrow(
                f"UPDATE backfill_jobs SET {_START} WHERE id = ("  # noqa: S608 - constants only
                "SELECT id FROM backfill_jobs WHERE state = 'pending' AND next_at <= $1 "
                "ORDER BY next_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
                f") RETURNING {_COLUMNS}",
                now,
                now,
                self.owner,
                self.lease,
            )
            return None if row is None else job_from_row(row)

        return await self._outbox.transact(update, durable=True)

    async def renew(self, job_id: int) -> bool:
        async def update(conn: Any) -> bool:
            status = await conn.execute(
                f"UPDATE backfill_jobs SET lease_until = {DB_NOW} + $3 "  # noqa: S608 - constants only
                "WHERE id = $1 AND state = 'running' AND owner = $2",
                job_id,
                self.owner,
                self.lease,
            )
            return bool(status.endswith(" 1"))

        return await self._outbox.transact(update)

    async def finish(
        self, job_id: int, state: JobState, outcome: JobOutcome, now: float, next_at: float | None = None
    ) -> bool:
        check_finish(state, next_at)
        finished = None if state == "pending" else now

        async def update(conn: Any) -> bool:
            status = await conn.execute(
                "UPDATE backfill_jobs SET state = $2, outcome = $3, updated_at = $4, finished_at = $5, "
                "next_at = COALESCE($6, next_at), lease_until = NULL "
                "WHERE id = $1 AND state = 'running' AND owner = $7",
                job_id,
                state,
                outcome_to_json(outcome),
                now,
                finished,
                next_at,
                self.owner,
            )
            return bool(status.endswith(" 1"))

        return await self._outbox.transact(update, durable=True)

    async def recover(self, now: float) -> int:
        async def update(conn: Any) -> int:
            status = await conn.execute(
                "UPDATE backfill_jobs SET state = 'pending', next_at = $1, updated_at = $1, "  # noqa: S608 - constants only
                "lease_until = NULL WHERE state = 'running' "
                f"AND (owner IS NULL OR owner = $2 OR lease_until IS NULL OR lease_until < {DB_NOW})",
                now,
                self.owner,
            )
            return int(status.rsplit(" ", 1)[-1])

        return await self._outbox.transact(update, durable=True)

    async def get(self, job_id: int) -> BackfillJob | None:
        found = await self._select("WHERE id = $1", job_id)
        return found[0] if found else None

    async def recent(self, limit: int = 20) -> list[BackfillJob]:
        return await self._select("ORDER BY id DESC LIMIT $1", limit)

    async def counts(self) -> dict[str, int]:
        async def read(conn: Any) -> dict[str, int]:
            found = dict(await conn.fetch("SELECT state, COUNT(*) FROM backfill_jobs GROUP BY state"))
            return {state: int(found.get(state, 0)) for state in JOB_STATES}

        return await self._outbox.transact(read)

    async def forget_finished(self, before: float) -> int:
        async def delete(conn: Any) -> int:
            status = await conn.execute(
                "DELETE FROM backfill_jobs WHERE state IN ('done', 'partial', 'failed') AND finished_at < $1",
                before,
            )
            return int(status.rsplit(" ", 1)[-1])

        return await self._outbox.transact(delete)

    async def _select(self, where: str, *params: Any) -> list[BackfillJob]:
        sql = f"SELECT {_COLUMNS} FROM backfill_jobs {where}"  # noqa: S608 - constants only

        async def read(conn: Any) -> list[BackfillJob]:
            return [job_from_row(r) for r in await conn.fetch(sql, *params)]

        return await self._outbox.transact(read)


def _satisfies_protocol(store: PostgresBackfillJobs) -> BackfillJobStore:
    return store  # never called: mypy proves the protocol is implemented
