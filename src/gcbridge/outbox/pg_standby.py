"""Hot standby coverage in PostgreSQL: the I/O half of :mod:`gcbridge.core.standby_cover`.

A standby instance :meth:`~StandbyCoverageStore.publish` es, about once a second, the stretch in which all of
its paths have been live and the last frame they read; a standby whose own path had a gap
:meth:`~StandbyCoverageStore.truncate` s its coverage back to the gap's start. The instance that takes a
shard over calls :func:`standby_holes` inside its takeover transaction and journals only what is left.

Times: a standby passes its own wall-clock times together with its wall-clock ``now``; they are stored on the
database clock (``stored = time - now + database now``), the clock the shard leases use, so that the
standby's and the taker's times compare even when the machines' clocks drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from gcbridge.core.standby_cover import CoverSpan, Hole, split, uncovered

__all__ = ["STANDBY_FRESH", "StandbyCoverageStore", "standby_holes"]

DB_NOW: Final = "extract(epoch from clock_timestamp())"
STANDBY_FRESH: Final = 5.0
"""Seconds since its last publish within which a standby counts as live: a takeover's gap that only it can
cover is then provisional, and the taker checks again after this long (it publishes about once a second)."""


async def standby_holes(
    conn: Any,
    start: float,
    end: float,
    topics: Sequence[str],
    *,
    margin: float = 0.5,
    fresh: float | None = None,
) -> tuple[list[Hole], list[Hole]]:
    """(definite, provisional) parts of the gap ``[start, end]`` (database time) on ``topics`` that no
    standby covered (see :func:`gcbridge.core.standby_cover.split`; ``conn``: an asyncpg connection,
    typically inside the takeover's transaction). ``fresh=None``: strict, nothing provisional (a re-check)."""
    if not topics:  # a shard without topics: no event can have been missed
        return [], []
    rows = await conn.fetch(
        f"SELECT instance, since, seen, topics, updated_at, {DB_NOW} AS now FROM standby_coverage "  # noqa: S608 - constants only
        "WHERE seen > $1::float8 - $3::float8 AND since < $2::float8",
        start,
        end,
        STANDBY_FRESH,
    )
    spans = [
        CoverSpan(r["instance"], r["since"], r["seen"], frozenset(r["topics"]), r["updated_at"]) for r in rows
    ]
    if fresh is None:
        return uncovered(start, end, topics, spans, margin), []
    now = float(rows[0]["now"]) if rows else end
    return split(start, end, topics, spans, now=now, fresh=fresh, margin=margin)


class StandbyCoverageStore:
    """One standby instance's coverage rows (``pool``: an asyncpg pool on the outbox database)."""

    def __init__(self, pool: Any, instance_id: str) -> None:
        self.instance_id = instance_id
        self.pool = pool

    def __repr__(self) -> str:
        return f"StandbyCoverageStore(instance_id={self.instance_id!r})"

    async def publish(self, since: float, seen: float, topics: Sequence[str], now: float) -> None:
        """All paths live since ``since``, frames read up to ``seen`` (wall-clock, as is ``now``)."""
        await self.pool.execute(
            f"INSERT INTO standby_coverage(instance, stretch, since, seen, topics, updated_at) "  # noqa: S608 - constants only
            f"VALUES ($1, $2::float8, $2::float8 - $5::float8 + {DB_NOW}, "
            f"$3::float8 - $5::float8 + {DB_NOW}, $4::text[], {DB_NOW}) "
            "ON CONFLICT (instance, stretch) DO UPDATE SET "
            "seen = GREATEST(standby_coverage.seen, EXCLUDED.seen), topics = EXCLUDED.topics, "
            "updated_at = EXCLUDED.updated_at",
            self.instance_id,
            since,  # one row per stretch: the same `since` on every publish of it
            seen,
            list(topics),
            now,
        )

    async def truncate(self, at: float, until: float, now: float) -> int:
        """This standby missed events from ``at`` to ``until`` (wall-clock): no stretch that began before
        ``until`` reaches past ``at`` (later stretches, live again after the gap, stay)."""
        status = await self.pool.execute(
            f"UPDATE standby_coverage SET seen = GREATEST(since, $2::float8 - $4::float8 + {DB_NOW}) "  # noqa: S608 - constants only
            f"WHERE instance = $1 AND seen > $2::float8 - $4::float8 + {DB_NOW} "
            f"AND since < $3::float8 - $4::float8 + {DB_NOW}",
            self.instance_id,
            at,
            until,
            now,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def forget(self, older_than: float) -> int:
        """Delete coverage that ended more than ``older_than`` seconds ago (database time)."""
        status = await self.pool.execute(
            f"DELETE FROM standby_coverage WHERE seen < {DB_NOW} - $1::float8",  # noqa: S608 - constants only
            older_than,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def spans(self, recent: float = 3600.0) -> tuple[float, list[CoverSpan]]:
        """(database now, the spans seen within ``recent`` seconds, oldest first): for the status page."""
        rows = await self.pool.fetch(
            f"SELECT instance, since, seen, topics, updated_at, {DB_NOW} AS now FROM standby_coverage "  # noqa: S608 - constants only
            f"WHERE seen > {DB_NOW} - $1::float8 ORDER BY since, instance",
            recent,
        )
        now = float(rows[0]["now"]) if rows else float(await self.pool.fetchval(f"SELECT {DB_NOW}"))
        return now, [
            CoverSpan(r["instance"], r["since"], r["seen"], frozenset(r["topics"]), r["updated_at"])
            for r in rows
        ]
