"""Which outbox rows may be handed out now: the pure per-key scheduler behind :class:`SqliteOutbox`.

The rules below are the contract of every :class:`~gcbridge.outbox.base.OutboxStore`: SQLite decides them
here, in memory; :class:`~gcbridge.outbox.postgres.PostgresOutbox` decides the same in SQL (and enforces "one
in flight per key" with a unique index). ``tests/integration/test_outbox_contract.py`` checks both stores.

The database is the source of truth; this class is an in-memory index over the *undelivered* rows (pending
and in flight) that the SQLite store rebuilds on open and keeps in step with every committed change. It
answers "which rows are claimable at ``now``" in ``O(claimed * log keys)`` instead of a scan over the backlog,
and "when is the next row due" in ``O(1)`` amortised, so an idle dispatcher sleeps exactly until then.

Rules (one key = one ``order_key``):

* a key's *head* is its pending row with the smallest id; only the head may be claimed, and only when it is
  due (``due <= now``) and the key has nothing in flight. A head that is waiting for a retry therefore holds
  back the later rows of its key: that is what per-key order means.
* claiming moves the head into flight; :meth:`finish` (delivered or dead-lettered) frees the key so the next
  row becomes the head; :meth:`retry` puts the row back as the head with a later due time.
* with ``coalesce``, the run of pending rows at the front of a key that share the head's topic collapses to
  the newest row of that run; the older ones are reported as superseded (only valid when each row carries the
  whole state of its key).

No clock, no I/O, no asyncio: every method takes ``now`` where time matters.
"""

from __future__ import annotations

import bisect
import heapq
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Claim", "KeySchedule"]


@dataclass(frozen=True, slots=True)
class Claim:
    """A row handed out by :meth:`KeySchedule.claim`, and the older rows of its key it supersedes."""

    row_id: int
    order_key: str
    superseded: tuple[int, ...] = ()


@dataclass(slots=True)
class _Row:
    order_key: str
    topic: str
    due: float


@dataclass(slots=True)
class _Key:
    pending: list[int] = field(default_factory=list)  # row ids, ascending
    in_flight: int | None = None
    lease_expires: float = 0.0


class KeySchedule:
    """Per-key FIFO queues of undelivered rows with due times and one-in-flight-per-key claims."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._rows: dict[int, _Row] = {}  # pending and in-flight rows
        self._in_flight = 0
        # (due, head id, key) for keys whose head may become claimable; stale entries are skipped lazily
        self._heap: list[tuple[float, int, str]] = []
        # (lease end, row id) of claims; entries of rows finished or retried since are skipped when they come
        # up, and dropped in bulk by _compact_leases before they outnumber the keys (see there)
        self._leases: list[tuple[float, int]] = []

    # -- queries -------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._rows) - self._in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def key_of(self, row_id: int) -> str | None:
        """The order key of an undelivered row, ``None`` when the row is not pending or in flight."""
        row = self._rows.get(row_id)
        return None if row is None else row.order_key

    def is_in_flight(self, row_id: int) -> bool:
        row = self._rows.get(row_id)
        return row is not None and self._keys[row.order_key].in_flight == row_id

    def is_pending(self, row_id: int) -> bool:
        return row_id in self._rows and not self.is_in_flight(row_id)

    @property
    def lease_entries(self) -> int:
        """Entries in the lease heap, stale ones included (what it costs in memory)."""
        return len(self._leases)

    def next_due(self) -> float | None:
        """The earliest due time of a key's head, ``None`` when nothing waits to be claimed.

        Keys with a row in flight are not counted: they become claimable only after :meth:`finish` or
        :meth:`retry`, which the caller learns about anyway.
        """
        while self._heap:
            due, head, key = self._heap[0]
            if self._is_current(due, head, key):
                return due
            heapq.heappop(self._heap)
        return None

    def expired_leases(self, now: float) -> list[int]:
        """In-flight rows whose claim lease ended at or before ``now`` (their deliverer is presumed lost)."""
        expired: list[int] = []
        while self._leases and self._leases[0][0] <= now:
            lease, row_id = heapq.heappop(self._leases)
            row = self._rows.get(row_id)
            if row is None:
                continue
            key = self._keys[row.order_key]
            if key.in_flight == row_id and key.lease_expires == lease:
                expired.append(row_id)
        return expired

    # -- transitions ---------------------------------------------------------------------------------

    def add(self, row_id: int, order_key: str, topic: str, due: float) -> None:
        """A pending row: new, replayed or recovered. Row ids need not arrive in order."""
        if row_id in self._rows:
            raise ValueError(f"row {row_id} is already scheduled")
        # one shared string per key and topic, not one per row: a large backlog stays small in memory
        order_key = sys.intern(order_key)
        topic = sys.intern(topic)
        key = self._keys.get(order_key)
        if key is None:
            key = self._keys[order_key] = _Key()
        self._rows[row_id] = _Row(order_key, topic, due)
        if not key.pending or row_id > key.pending[-1]:
            key.pending.append(row_id)
        else:
            bisect.insort(key.pending, row_id)
        if key.pending[0] == row_id and key.in_flight is None:
            heapq.heappush(self._heap, (due, row_id, order_key))

    def claim(self, limit: int, now: float, lease_expires: float, *, coalesce: bool = False) -> list[Claim]:
        """Up to ``limit`` due heads, earliest due first; each moves into flight with the given lease."""
        claims: list[Claim] = []
        while self._heap and len(claims) < limit:
            due, head, key_name = self._heap[0]
            if not self._is_current(due, head, key_name):
                heapq.heappop(self._heap)
                continue
            if due > now:
                break
            heapq.heappop(self._heap)
            key = self._keys[key_name]
            take = self._same_topic_run(key) if coalesce else 1
            chosen = key.pending[take - 1]
            superseded = tuple(key.pending[: take - 1])
            del key.pending[:take]
            for row_id in superseded:
                del self._rows[row_id]
            key.in_flight = chosen
            key.lease_expires = lease_expires
            heapq.heappush(self._leases, (lease_expires, chosen))
            self._in_flight += 1
            claims.append(Claim(chosen, key_name, superseded))
        return claims

    def mark_in_flight(self, row_id: int, lease_expires: float) -> None:
        """Restore a claim that the database records (used when rebuilding the schedule from the store)."""
        row = self._rows[row_id]
        key = self._keys[row.order_key]
        if key.in_flight is not None:
            raise ValueError(f"key {row.order_key!r} already has row {key.in_flight} in flight")
        key.pending.remove(row_id)
        key.in_flight = row_id
        key.lease_expires = lease_expires
        heapq.heappush(self._leases, (lease_expires, row_id))
        self._in_flight += 1

    def finish(self, row_id: int) -> bool:
        """An in-flight row left the queue (delivered or dead-lettered); ``False`` if it was not in flight."""
        if not self.is_in_flight(row_id):
            return False
        key_name = self._rows.pop(row_id).order_key
        key = self._keys[key_name]
        key.in_flight = None
        self._in_flight -= 1
        self._release(key_name, key)
        self._compact_leases()
        return True

    def retry(self, row_id: int, due: float) -> bool:
        """An in-flight row goes back to pending, due at ``due``; ``False`` if it was not in flight."""
        if not self.is_in_flight(row_id):
            return False
        row = self._rows[row_id]
        row.due = due
        key = self._keys[row.order_key]
        key.in_flight = None
        self._in_flight -= 1
        bisect.insort(key.pending, row_id)
        self._release(row.order_key, key)
        self._compact_leases()
        return True

    def due_by(self, now: float) -> list[int]:
        """Pending rows due after ``now`` become due at ``now``; returns their ids (held by an outage)."""
        moved: list[int] = []
        for key_name, key in self._keys.items():
            changed = False
            for row_id in key.pending:
                row = self._rows[row_id]
                if row.due > now:
                    row.due = now
                    moved.append(row_id)
                    changed = True
            if changed and key.in_flight is None:
                heapq.heappush(self._heap, (now, key.pending[0], key_name))
        return moved

    def drop_pending(self, row_ids: Iterable[int]) -> None:
        """Forget pending rows that the store removed or finished without a claim."""
        for row_id in row_ids:
            if not self.is_pending(row_id):
                continue
            key_name = self._rows.pop(row_id).order_key
            key = self._keys[key_name]
            key.pending.remove(row_id)
            self._release(key_name, key)

    # -- internals -----------------------------------------------------------------------------------

    def _is_current(self, due: float, head: int, key_name: str) -> bool:
        key = self._keys.get(key_name)
        if key is None or key.in_flight is not None or not key.pending or key.pending[0] != head:
            return False
        return self._rows[head].due == due

    def _compact_leases(self) -> None:
        """Keep only the live claims' leases once stale entries outnumber the keys.

        A finished row's entry would otherwise stay until its lease time passes: one entry for every row
        claimed within ``lease_ttl`` (300 s), ~17 MB at 500 rows/s. A rebuild costs one pass over the keys
        and happens after at least as many finishes as there are keys, so it is O(1) amortised, and the heap
        never holds more than about twice the keys (each key has at most one claim).
        """
        if len(self._leases) <= 2 * len(self._keys) + 64:
            return
        self._leases = [
            (k.lease_expires, k.in_flight) for k in self._keys.values() if k.in_flight is not None
        ]
        heapq.heapify(self._leases)

    def _release(self, key_name: str, key: _Key) -> None:
        """Re-arm the key's head after a change, or forget the key when it holds nothing."""
        if key.in_flight is not None:
            return
        if not key.pending:
            del self._keys[key_name]
            return
        head = key.pending[0]
        heapq.heappush(self._heap, (self._rows[head].due, head, key_name))

    def _same_topic_run(self, key: _Key) -> int:
        """How many rows from the head share the head's topic."""
        topic = self._rows[key.pending[0]].topic
        run = 1
        for row_id in key.pending[1:]:
            if self._rows[row_id].topic != topic:
                break
            run += 1
        return run
