"""The outbox store protocol and the sink protocol that the dispatcher delivers to.

Events become :class:`OutboxItem` rows, durable before they count as received. A dispatcher claims due rows
(at most one in flight per ``order_key``, so that per-conversation order holds), hands each to a
:class:`Sink`, and records the :class:`Outcome`: delivered, retry later, or dead-lettered with a reason.
Attempts and the next-attempt time live in the store, not in memory, so they survive a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gcbridge.core.outcome import Delivered, Outcome, Reject, Retry, SinkCondition

__all__ = [
    "ALL",
    "Delivered",
    "OutboxItem",
    "OutboxRow",
    "OutboxStats",
    "OutboxStore",
    "Outcome",
    "Reject",
    "Retry",
    "RowInfo",
    "RowState",
    "Selection",
    "Sink",
    "SinkCondition",
]

ALL: Literal["all"] = "all"
"""Pass to :meth:`OutboxStore.replay` / :meth:`OutboxStore.purge` to act on every dead-lettered row."""

Selection = Sequence[int] | Literal["all"]

RowState = Literal["pending", "in_flight", "delivered", "dead"]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    dedup_key: str  # unique per event; a second put of the same key is ignored
    order_key: str  # rows with one order key are delivered one at a time, in insertion order
    topic: str
    payload: bytes  # the event as JSON
    received_at: float  # wall-clock UNIX seconds


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    dedup_key: str
    order_key: str
    topic: str
    payload: bytes
    received_at: float
    attempts: int
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class RowInfo:
    """Everything the store knows about one row, for inspection and the dead-letter list.

    ``last_error`` is the latest retry error or, for a dead row, the dead-letter reason; ``detail`` says how a
    delivered row was delivered (``"superseded by #42"`` when coalescing replaced it). Times are UNIX seconds.
    """

    id: int
    dedup_key: str
    order_key: str
    topic: str
    payload: bytes
    received_at: float
    state: RowState
    attempts: int
    next_attempt_at: float
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    finished_at: float | None
    detail: str | None


class Sink(Protocol):
    """Where the dispatcher delivers rows (the ServiceNow writer). Must be idempotent per ``dedup_key`` /
    order key: a row can be delivered more than once (a crash between the write and the ack). An exception
    counts as ``Retry(<exception class name>)``; a call longer than the dispatcher's ``deliver_timeout`` is
    cancelled and counts as a retry too."""

    async def deliver(self, row: OutboxRow) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    in_flight: int
    dead: int
    delivered: int
    oldest_pending_age: float  # seconds, 0 when nothing is pending


class OutboxStore(Protocol):
    async def put_many(self, items: Sequence[OutboxItem]) -> int:
        """Durably store items; returns how many were new (duplicates by dedup_key are ignored)."""
        ...

    async def claim(self, limit: int, now: float, *, coalesce: bool = False) -> list[OutboxRow]:
        """Due rows, at most one per order key and none whose key already has a row in flight.

        Only the oldest pending row of a key is eligible. Claimed rows are in flight under a lease; when the
        lease runs out (or the process dies) they become pending again. With ``coalesce``, the newest of the
        leading same-topic pending rows of a key is claimed and the older ones are marked delivered as
        superseded (only for sinks that write whole-state records).
        """
        ...

    async def next_due(self) -> float | None:
        """When the earliest not-yet-due row becomes claimable (UNIX seconds), ``None`` if none waits."""
        ...

    async def ack(self, row_ids: Sequence[int], now: float) -> int:
        """Mark in-flight rows delivered; returns how many were in flight (others are ignored)."""
        ...

    async def retry(self, row_id: int, next_attempt_at: float, error: str) -> bool:
        """Put an in-flight row back to pending, counting one attempt; ``False`` if it was not in flight."""
        ...

    async def hold(self, row_id: int, error: str) -> bool:
        """Put an in-flight row back to pending *without* counting an attempt: the sink as a whole failed
        (see :class:`SinkCondition`), not this row. It is due at once and ahead of rows that never failed, so
        the next probe of the sink retries a row that showed the condition. ``False`` if not in flight."""
        ...

    async def release_held(self, now: float) -> int:
        """Make every pending row whose next attempt lies after ``now`` due at ``now`` (on recovery from a
        sink-wide condition and at start: a stored backoff must not delay delivery once the cause is fixed).
        Returns how many rows were moved forward."""
        ...

    async def dead_letter(self, row_id: int, reason: str, now: float) -> bool:
        """Move a pending or in-flight row to the dead-letter list; later rows of its key proceed."""
        ...

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[RowInfo]:
        """Dead-lettered rows, oldest id first."""
        ...

    async def inspect(self, row_id: int) -> RowInfo | None: ...

    async def replay(self, rows: Selection, now: float) -> int:
        """Dead rows back to pending with attempts reset; returns how many."""
        ...

    async def purge(self, rows: Selection) -> int:
        """Delete dead rows (their dedup keys are released); returns how many."""
        ...

    async def expire_delivered(self, now: float, *, batch: int = 500) -> int:
        """Delete up to ``batch`` delivered rows older than the retention period; returns how many."""
        ...

    async def stats(self, now: float) -> OutboxStats: ...

    async def close(self) -> None: ...
