"""The gap journal's storage in PostgreSQL (the ``gaps`` and ``service_alive`` tables of migration 0003,
``gap_backfills`` of 0004).

Entries are the dicts of :func:`gcbridge.bridge.gaps.gap_record` (start, end, seconds, reason, topics,
detail, recorded_at), so the file journal and this table hold the same facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from gcbridge import _json

__all__ = ["PgGapStore", "insert_gap"]


async def insert_gap(
    conn: Any, entry: Mapping[str, Any], *, recorded_by: str | None, shard: int | None
) -> None:
    """One gap journal entry into the ``gaps`` table, on ``conn`` (inside the caller's transaction)."""
    await conn.execute(
        "INSERT INTO gaps(start_at, end_at, seconds, reason, topics, detail, recorded_at, recorded_by, "
        "shard) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)",
        entry["start"],
        entry["end"],
        entry["seconds"],
        entry["reason"],
        _json.dumps(list(entry["topics"])).decode(),
        entry.get("detail"),
        entry["recorded_at"],
        recorded_by,
        shard,
    )


class PgGapStore:
    """Gaps and the single-instance ``alive`` mark in PostgreSQL; one small pool of its own."""

    def __init__(self, pool: Any, recorded_by: str | None) -> None:
        self.recorded_by = recorded_by
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, recorded_by: str | None = None) -> PgGapStore:
        # min_size=0: no background reconnects (and tracebacks) while the server restarts (see PostgresOutbox)
        pool = await asyncpg.create_pool(url, min_size=0, max_size=1, timeout=10.0, command_timeout=30.0)
        return cls(pool, recorded_by)

    async def close(self) -> None:
        await self._pool.close()

    async def append(self, entry: Mapping[str, Any]) -> None:
        async with self._pool.acquire() as conn:
            await insert_gap(conn, entry, recorded_by=self.recorded_by, shard=None)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT start_at, end_at, seconds, reason, topics, detail, recorded_at FROM "
                "(SELECT * FROM gaps ORDER BY id DESC LIMIT $1) g ORDER BY id",
                limit,
            )
        return [
            {
                "start": r["start_at"],
                "end": r["end_at"],
                "seconds": r["seconds"],
                "reason": r["reason"],
                "topics": _json.loads(r["topics"]),
                "detail": r["detail"],
                "recorded_at": r["recorded_at"],
            }
            for r in rows
        ]

    async def append_backfill(self, entry: Mapping[str, Any]) -> None:
        """One back-fill outcome (a ``record_backfill`` entry) into ``gap_backfills``."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO gap_backfills(gap, outcome, recorded_at, recorded_by) "
                "VALUES ($1::jsonb, $2::jsonb, $3, $4)",
                _json.dumps(entry["gap"]).decode(),
                _json.dumps(entry["backfill"]).decode(),
                entry["recorded_at"],
                self.recorded_by,
            )

    async def recent_backfills(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` back-fill outcomes, oldest first, in the file journal's shape."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT gap, outcome, recorded_at FROM "
                "(SELECT * FROM gap_backfills ORDER BY id DESC LIMIT $1) b ORDER BY id",
                limit,
            )
        return [
            {
                "backfill": _json.loads(r["outcome"]),
                "gap": _json.loads(r["gap"]),
                "recorded_at": r["recorded_at"],
            }
            for r in rows
        ]

    async def last_alive(self, name: str) -> tuple[float, bool] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT alive_at, clean FROM service_alive WHERE name = $1", name)
        return None if row is None else (float(row["alive_at"]), bool(row["clean"]))

    async def mark_alive(self, name: str, at: float, clean: bool) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO service_alive(name, alive_at, clean) VALUES ($1, $2, $3) "
                "ON CONFLICT (name) DO UPDATE SET alive_at = $2, clean = $3",
                name,
                at,
                clean,
            )
