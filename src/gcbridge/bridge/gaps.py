"""The gap journal: every period in which events may have been missed, persisted for operators.

One JSON object per line (``gcbridge-gaps.jsonl`` beside the outbox by default), appended and fsynced when
a gap is reported, so that ``jq`` or a back-fill script can read it::

    {"start": 1767000000.1, "end": 1767000003.4, "seconds": 3.3, "reason": "socket_dropped",
     "topics": ["v2.routing.queues.<id>.conversations"], "detail": "...", "recorded_at": 1767000003.5}

When a gap's back-fill job ends (see :mod:`gcbridge.bridge.backfill_runner`), a record of its outcome follows
in the same file, naming the gap it repairs::

    {"backfill": {"job": 7, "state": "done", "events_found": 12, "events_written": 9, ...},
     "gap": {"start": 1767000000.1, "end": 1767000003.4, "reason": "socket_dropped"}, "recorded_at": ...}

The service's own downtime is a gap as well: a small state file (``<journal>.alive``) holds the last moment
the service was known to receive; at the next start the interval from then until the subscriptions are live
again is journalled with reason ``service_down`` (clean stop) or ``service_crashed`` (no clean stop).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from gcbridge import _json
from gcbridge.core.topics import expand_topic
from gcbridge.genesys.events import Gap

RECENT: Final = 50


@dataclass(frozen=True, slots=True)
class LastRun:
    """What the previous run left behind: when it last received and whether it stopped cleanly."""

    alive_at: float
    clean: bool


def gap_record(gap: Gap, recorded_at: float) -> dict[str, Any]:
    return {
        "start": gap.start,
        "end": gap.end,
        "seconds": round(gap.seconds, 3),
        "reason": gap.reason,
        "topics": list(gap.topics),
        "detail": gap.detail,
        "recorded_at": recorded_at,
    }


def gap_of_entry(entry: dict[str, Any]) -> Gap:
    """The gap a journal entry (:func:`gap_record`) stands for."""
    return Gap(
        start=float(entry["start"]),
        end=float(entry["end"]),
        topics=tuple(entry["topics"]),
        reason=str(entry["reason"]),
        detail=str(entry.get("detail") or ""),
    )


def downtime_gap(last: LastRun | None, live_at: float, topics: Sequence[str]) -> Gap | None:
    """The gap the service's own absence caused, if a previous run left a mark (pure). Its topics are the
    single topics ``topics`` names (a combined ``prefix?a&b`` is each of them), as in the client's gaps."""
    if last is None or live_at <= last.alive_at:
        return None
    return Gap(
        start=last.alive_at,
        end=live_at,
        topics=tuple(dict.fromkeys(t for raw in topics for t in expand_topic(raw))),
        reason="service_down" if last.clean else "service_crashed",
        detail="the bridge was not subscribed; back-fill this interval through the REST APIs",
    )


class GapLog(Protocol):
    """What the service needs of a gap journal: :class:`GapJournal` (a file, beside a SQLite outbox) or
    :class:`gcbridge.bridge.gaps_pg.PgGapJournal` (a table, beside a PostgreSQL outbox)."""

    count: int
    seconds: float
    recent: deque[dict[str, Any]]
    recent_backfills: deque[dict[str, Any]]

    @property
    def location(self) -> str:
        """Where operators find every gap (for log lines)."""

    def load(self) -> None: ...

    async def record(self, gap: Gap, now: float) -> dict[str, Any]: ...

    def remember(self, entry: dict[str, Any]) -> None:
        """Count an entry that is already stored (a takeover gap, written with its lease)."""

    async def record_backfill(
        self, gap: dict[str, Any], outcome: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Store the outcome of a back-fill job for the gap ``gap`` (``start``, ``end``, ``reason``)."""

    def last_run(self) -> LastRun | None: ...

    async def mark_alive(self, now: float, *, clean: bool = False) -> None: ...

    async def close(self) -> None:
        """Release what the journal holds (its writer thread, its database connection): the service calls
        it last, once nothing more is journalled."""


def backfill_record(gap: dict[str, Any], outcome: dict[str, Any], now: float) -> dict[str, Any]:
    """The journal entry of a back-fill job's outcome for the gap ``gap`` (``start``, ``end``, ``reason``)."""
    return {"backfill": outcome, "gap": gap, "recorded_at": now}


class JournalMemory:
    """What every gap journal keeps in memory: this run's totals and the most recent entries."""

    def __init__(
        self, recent: Iterable[dict[str, Any]] = (), recent_backfills: Iterable[dict[str, Any]] = ()
    ) -> None:
        self.count = 0
        self.seconds = 0.0
        self.recent: deque[dict[str, Any]] = deque(recent, maxlen=RECENT)
        self.recent_backfills: deque[dict[str, Any]] = deque(recent_backfills, maxlen=RECENT)

    def remember(self, entry: dict[str, Any]) -> None:
        """Count a gap entry that is stored (by this journal, or with a takeover's lease)."""
        self.count += 1
        self.seconds += float(entry["seconds"])
        self.recent.append(entry)


class GapJournal(JournalMemory):
    """Append-only gap log plus the ``alive`` mark. Keeps totals and the most recent gaps in memory.

    The file writes (each fsynced) run on one thread of the journal's own, named ``gcbridge-gap-journal``:
    they happen in the order they were asked for, the event loop never waits on the disk, and the process
    keeps one thread for them however they overlap (the loop's default executor would start a second worker
    whenever two writes met, and keep it)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.alive_path = path.with_name(path.name + ".alive")
        self._executor: ThreadPoolExecutor | None = None

    async def _on_thread(self, write: Callable[[bytes], None], data: bytes) -> None:
        # one worker: the writes are taken in the order they were submitted, no lock needed to order them
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcbridge-gap-journal")
        await asyncio.get_running_loop().run_in_executor(self._executor, write, data)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)  # every write was awaited: the thread is idle and ends at once

    def load(self) -> None:
        """Read the existing journal's recent entries (totals count this run only)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for line in deque(fh, maxlen=RECENT):
                try:
                    entry = _json.loads(line)
                except _json.JSONDecodeError:
                    continue  # a torn last line after a crash; the next append starts a fresh line
                is_backfill = isinstance(entry, dict) and "backfill" in entry
                (self.recent_backfills if is_backfill else self.recent).append(entry)

    @property
    def location(self) -> str:
        return str(self.path)

    async def record(self, gap: Gap, now: float) -> dict[str, Any]:
        entry = gap_record(gap, now)
        await self._on_thread(self._append, _json.dumps(entry) + b"\n")
        self.remember(entry)
        return entry

    async def record_backfill(
        self, gap: dict[str, Any], outcome: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Append the outcome of a back-fill job for the gap ``gap`` (``start``, ``end``, ``reason``)."""
        entry = backfill_record(gap, outcome, now)
        await self._on_thread(self._append, _json.dumps(entry) + b"\n")
        self.recent_backfills.append(entry)
        return entry

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def last_run(self) -> LastRun | None:
        try:
            data = _json.loads(self.alive_path.read_bytes())
            return LastRun(alive_at=float(data["alive_at"]), clean=bool(data.get("clean", False)))
        except (FileNotFoundError, KeyError, TypeError, ValueError, _json.JSONDecodeError):
            return None

    async def mark_alive(self, now: float, *, clean: bool = False) -> None:
        await self._on_thread(self._write_alive, _json.dumps({"alive_at": now, "clean": clean}))

    def _write_alive(self, data: bytes) -> None:
        self.alive_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.alive_path.with_name(self.alive_path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.alive_path)
