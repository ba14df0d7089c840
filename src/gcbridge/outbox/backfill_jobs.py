"""Durable back-fill jobs, stored in the outbox's own database (a table beside ``outbox``).

One job per gap: the gap (start, end, topics, reason), a state (see :mod:`gcbridge.core.backfill_rules`),
the attempts so far, when it is due next, and the outcome of its last attempt. The job survives restarts
with the outbox: a job ``running`` when the process died is ``pending`` again after
:meth:`BackfillJobStore.recover`.

A store belongs to one runner, its *owner*. Where several instances share the table (PostgreSQL), a running
job is held by its owner under a lease that the runner renews while the job runs (``renew``), and
``recover`` takes back only the jobs whose owner is this one or whose lease lapsed: a job another live
instance runs is never run twice. SQLite has one process per file, so its
store has no owners and leases to keep: every running job there is this process's.

Two implementations share this contract (``tests/integration/test_backfill_jobs_contract.py``):
:class:`~gcbridge.outbox.backfill_sqlite.SqliteBackfillJobs` (on the SQLite outbox's writer thread, in its
file) and :class:`~gcbridge.outbox.backfill_postgres.PostgresBackfillJobs` (migration ``0002``).

The outbox layer knows nothing of Genesys: a gap is plain values here (:class:`JobGap`), and what could not be
back-filled is :class:`Unfilled` (topics and a reason).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gcbridge import _json
from gcbridge.core.backfill_rules import JobState
from gcbridge.outbox.base import OutboxItem

__all__ = [
    "BackfillJob",
    "BackfillJobStore",
    "GuardedPut",
    "JobGap",
    "JobOutcome",
    "Unfilled",
    "gap_key",
    "outcome_from_json",
    "outcome_to_json",
]

MAX_TOPICS_SHOWN = 20  # in documents for people; the job itself keeps every topic


@dataclass(frozen=True, slots=True)
class JobGap:
    """The period and topics a job back-fills (a ``Gap`` of the client, as plain values)."""

    start: float
    end: float
    topics: tuple[str, ...]
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Unfilled:
    """Topics that could not be back-filled, and why (they stay open for a person)."""

    topics: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What the last attempt found and did. ``events_written``: new outbox rows; ``events_skipped``: events
    not written because the outbox already had them (a live copy of the same state) or a live row of their
    record was received after the state was read; ``events_unrouted``: no mapping rule takes their topic;
    ``last_error``: why the last attempt failed, if it did."""

    events_found: int = 0
    events_written: int = 0
    events_skipped: int = 0
    events_unrouted: int = 0
    requests: int = 0
    conversations: int = 0
    unfillable: tuple[Unfilled, ...] = ()
    errors: tuple[str, ...] = ()
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class BackfillJob:
    id: int
    gap: JobGap
    state: JobState
    attempts: int
    next_at: float
    outcome: JobOutcome = field(default_factory=JobOutcome)
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    """The instance running it (several instances on PostgreSQL), else ``None``."""

    def document(self) -> dict[str, Any]:
        """A JSON-safe view for ``/status``, the CLI and the journal (topics capped for people)."""
        o = self.outcome
        return {
            "id": self.id,
            "state": self.state,
            "reason": self.gap.reason,
            "start": self.gap.start,
            "end": self.gap.end,
            "topics": len(self.gap.topics),
            "topics_sample": list(self.gap.topics[:MAX_TOPICS_SHOWN]),
            "attempts": self.attempts,
            "next_at": self.next_at,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "owner": self.owner,
            "events_found": o.events_found,
            "events_written": o.events_written,
            "events_skipped": o.events_skipped,
            "events_unrouted": o.events_unrouted,
            "requests": o.requests,
            "conversations": o.conversations,
            "unfillable": [
                {"topics": list(u.topics[:MAX_TOPICS_SHOWN]), "count": len(u.topics), "reason": u.reason}
                for u in o.unfillable
            ],
            "errors": list(o.errors[:MAX_TOPICS_SHOWN]),
            "last_error": o.last_error,
        }


MANUAL = "manual"
"""The reason of a job an operator asked for (``gcbridge backfill``): each request is a job of its own."""


def gap_key(gap: JobGap) -> str:
    """Identifies a gap: the same gap reported twice (a retried start, two instances seeing one failover)
    makes one job. An operator's request (reason :data:`MANUAL`) is told apart by its detail."""
    parts: list[object] = [round(gap.start, 3), round(gap.end, 3), gap.reason, sorted(set(gap.topics))]
    if gap.reason == MANUAL:
        parts.append(gap.detail)
    canonical = _json.dumps(parts)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def outcome_to_json(outcome: JobOutcome) -> str:
    return _json.dumps_str(
        {
            "events_found": outcome.events_found,
            "events_written": outcome.events_written,
            "events_skipped": outcome.events_skipped,
            "events_unrouted": outcome.events_unrouted,
            "requests": outcome.requests,
            "conversations": outcome.conversations,
            "unfillable": [{"topics": list(u.topics), "reason": u.reason} for u in outcome.unfillable],
            "errors": list(outcome.errors),
            "last_error": outcome.last_error,
        }
    )


def outcome_from_json(text: str | None) -> JobOutcome:
    if not text:
        return JobOutcome()
    data = _json.loads(text)
    return JobOutcome(
        events_found=int(data.get("events_found", 0)),
        events_written=int(data.get("events_written", 0)),
        events_skipped=int(data.get("events_skipped", 0)),
        events_unrouted=int(data.get("events_unrouted", 0)),
        requests=int(data.get("requests", 0)),
        conversations=int(data.get("conversations", 0)),
        unfillable=tuple(
            Unfilled(tuple(u.get("topics", ())), str(u.get("reason", ""))) for u in data.get("unfillable", ())
        ),
        errors=tuple(str(e) for e in data.get("errors", ())),
        last_error=data.get("last_error"),
    )


class GuardedPut(Protocol):
    """The outbox as back-fill writes to it (both stores implement it)."""

    async def put_unless_newer(
        self, items: Sequence[OutboxItem], *, after_id: int = 0, state_of: Callable[[str], str] = ...
    ) -> int:
        """Store items unless a row of their order key and state (``state_of(topic)``; by default one state
        per key), with an id above ``after_id``, was received after their ``received_at``; returns how many
        were stored."""
        ...

    async def last_id(self) -> int:
        """The highest row id stored so far."""
        ...


class BackfillJobStore(Protocol):
    """Durable back-fill jobs. Times are UNIX seconds passed in by the caller (a lease's end is the
    database's own clock where several instances share the table)."""

    owner: str
    """The runner this store acts for: it starts, renews, finishes and recovers jobs as this owner."""
    lease: float
    """Seconds a running job stays this owner's without a renewal."""

    async def enqueue(self, gap: JobGap, run_at: float, now: float) -> tuple[BackfillJob, bool]:
        """A pending job for ``gap``, due at ``run_at``; ``(job, True)`` when new, ``(existing, False)`` when
        the same gap (see :func:`gap_key`) already has a job."""
        ...

    async def due(self, now: float, limit: int = 1) -> list[BackfillJob]:
        """Pending jobs due by ``now``, earliest due first."""
        ...

    async def next_due(self) -> float | None:
        """When the earliest pending job is due, ``None`` when none is pending."""
        ...

    async def start(self, job_id: int, now: float) -> BackfillJob | None:
        """Pending -> running (this owner's, under a fresh lease), one more attempt counted; ``None`` if the
        job was not pending."""
        ...

    async def claim(self, now: float) -> BackfillJob | None:
        """The earliest due pending job, started as :meth:`start` does in the same transaction, so that two
        runners never take one job; ``None`` when no job is due (or the due ones are being taken)."""
        ...

    async def renew(self, job_id: int) -> bool:
        """Extend this owner's lease of a running job; ``False`` when the job is no longer running under this
        owner (its lease lapsed and another runner took it back): the caller stops running it."""
        ...

    async def finish(
        self, job_id: int, state: JobState, outcome: JobOutcome, now: float, next_at: float | None = None
    ) -> bool:
        """Running -> ``state`` with ``outcome`` (``pending`` again needs ``next_at``); ``False`` if the job
        was not running under this owner."""
        ...

    async def recover(self, now: float) -> int:
        """Running jobs nobody runs any more: pending again, due at ``now``; returns how many. Those are this
        owner's (call it when this owner runs no job: at start, or between jobs) and those whose owner's
        lease lapsed. With one process per database (SQLite): every running job."""
        ...

    async def get(self, job_id: int) -> BackfillJob | None: ...

    async def recent(self, limit: int = 20) -> list[BackfillJob]:
        """The newest jobs first."""
        ...

    async def counts(self) -> dict[str, int]:
        """Jobs by state (every state present, 0 when none)."""
        ...

    async def forget_finished(self, before: float) -> int:
        """Delete done, partial and failed jobs that finished before ``before``; returns how many."""
        ...


def job_params(gap: JobGap) -> tuple[str, float, float, str, str, str]:
    """``(gap_key, start, end, topics JSON, reason, detail)`` for an insert."""
    return (
        gap_key(gap),
        float(gap.start),
        float(gap.end),
        _json.dumps_str(list(gap.topics)),
        gap.reason,
        gap.detail,
    )


JOB_COLUMNS = (
    "id, gap_start, gap_end, topics, reason, detail, state, attempts, next_at, outcome, created_at, "
    "updated_at, started_at, finished_at"
)


def job_from_row(row: Sequence[Any]) -> BackfillJob:
    """A job from a row of :data:`JOB_COLUMNS` (and, where the table has one, its ``owner`` after them)."""
    (job_id, start, end, topics, reason, detail, state, attempts, next_at, outcome) = row[:10]
    created, updated, started, finished = row[10:14]
    return BackfillJob(
        id=int(job_id),
        gap=JobGap(float(start), float(end), tuple(_json.loads(topics)), str(reason), str(detail or "")),
        state=state,
        attempts=int(attempts),
        next_at=float(next_at),
        outcome=outcome_from_json(outcome),
        created_at=float(created),
        updated_at=float(updated),
        started_at=None if started is None else float(started),
        finished_at=None if finished is None else float(finished),
        owner=None if len(row) < 15 or row[14] is None else str(row[14]),
    )


def check_finish(state: JobState, next_at: float | None) -> None:
    if state == "running":
        raise ValueError("finish() moves a running job out of 'running'")
    if state == "pending" and next_at is None:
        raise ValueError("a job put back to 'pending' needs next_at")
