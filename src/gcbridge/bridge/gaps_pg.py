"""The gap journal in PostgreSQL, the twin of :class:`gcbridge.bridge.gaps.GapJournal` for a PostgreSQL
outbox: the same entries in the ``gaps`` table, the ``alive`` mark in ``service_alive``, so that every
instance sharing the database reports into one journal (``SELECT * FROM gaps ORDER BY id``).

The database is asked once at :meth:`PgGapJournal.open` for the recent entries and the last ``alive`` mark;
afterwards :meth:`load` and :meth:`last_run` answer from memory, as the file journal's do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gcbridge.bridge.gaps import RECENT, JournalMemory, LastRun, backfill_record, gap_record
from gcbridge.genesys.events import Gap
from gcbridge.outbox.pg_gaps import PgGapStore

__all__ = ["SINGLE_INSTANCE", "PgGapJournal"]

SINGLE_INSTANCE = "single"
"""The ``service_alive`` row of a service without ``[ha]`` (one instance on the database)."""


class PgGapJournal(JournalMemory):
    """Gaps in PostgreSQL; satisfies :class:`gcbridge.bridge.gaps.GapLog`."""

    def __init__(
        self,
        store: PgGapStore,
        *,
        alive_name: str | None = SINGLE_INSTANCE,
        recent: Iterable[dict[str, Any]] = (),
        recent_backfills: Iterable[dict[str, Any]] = (),
        last_run: LastRun | None = None,
    ) -> None:
        super().__init__(recent, recent_backfills)
        self._store = store
        self._alive_name = alive_name
        self._last_run = last_run

    @classmethod
    async def open(
        cls, url: str, *, recorded_by: str | None = None, alive_name: str | None = SINGLE_INSTANCE
    ) -> PgGapJournal:
        """``alive_name``: the ``service_alive`` row of the downtime gap; ``None`` with ``[ha]``, where a
        takeover reports the time no instance covered a shard instead."""
        store = await PgGapStore.open(url, recorded_by=recorded_by)
        try:
            recent = await store.recent(RECENT)
            backfills = await store.recent_backfills(RECENT)
            last = await store.last_alive(alive_name) if alive_name is not None else None
        except BaseException:
            await store.close()
            raise
        last_run = None if last is None else LastRun(alive_at=last[0], clean=last[1])
        return cls(store, alive_name=alive_name, recent=recent, recent_backfills=backfills, last_run=last_run)

    @property
    def location(self) -> str:
        return "the PostgreSQL table gaps"

    def load(self) -> None:
        """Nothing to do: :meth:`open` read the recent entries."""

    async def record(self, gap: Gap, now: float) -> dict[str, Any]:
        entry = gap_record(gap, now)
        await self._store.append(entry)
        self.remember(entry)
        return entry

    async def record_backfill(
        self, gap: dict[str, Any], outcome: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Store the outcome of a back-fill job for the gap ``gap`` (``start``, ``end``, ``reason``)."""
        entry = backfill_record(gap, outcome, now)
        await self._store.append_backfill(entry)
        self.recent_backfills.append(entry)
        return entry

    def last_run(self) -> LastRun | None:
        return self._last_run

    async def mark_alive(self, now: float, *, clean: bool = False) -> None:
        if self._alive_name is not None:
            await self._store.mark_alive(self._alive_name, now, clean)

    async def close(self) -> None:
        await self._store.close()
