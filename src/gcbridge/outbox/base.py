"""The outbox store protocol and the sink protocol that the dispatcher delivers to.

Events become :class:`OutboxItem` rows, durable before they count as received. A dispatcher claims due rows
(at most one in flight per ``order_key``, so that per-conversation order holds), hands each to a
:class:`Sink`, and records the :class:`Outcome`: delivered, retry later, or dead-lettered with a reason.
Attempts and the next-attempt time live in the store, not in memory, so they survive a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
class Delivered:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str
    after: float | None = None  # seconds the remote asked us to wait (Retry-After), else backoff decides


@dataclass(frozen=True, slots=True)
class Reject:
    """Not retryable (a 400/403/404, a transform error): goes to the dead-letter list with the reason."""

    reason: str


Outcome = Delivered | Retry | Reject


class Sink(Protocol):
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

    async def claim(self, limit: int, now: float) -> list[OutboxRow]:
        """Due rows, at most one per order key and none whose key already has a row in flight."""
        ...

    async def ack(self, row_ids: Sequence[int], now: float) -> None: ...

    async def retry(self, row_id: int, next_attempt_at: float, error: str) -> None: ...

    async def dead_letter(self, row_id: int, reason: str, now: float) -> None: ...

    async def stats(self, now: float) -> OutboxStats: ...

    async def close(self) -> None: ...
