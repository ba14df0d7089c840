"""From the notification client into the durable outbox, in batches of whatever arrived together.

A reader task drains the client's stream into a bounded queue; a writer task takes everything queued at that
moment (up to ``max_batch``) and stores it with one ``put_many`` (one commit). While a commit is on disk the
next batch accumulates, so the batch size follows the load by itself. An event counts as received only when
``put_many`` has returned. A full queue stops the reader (back-pressure) rather than dropping anything; a
failing outbox is retried, never skipped.

Gaps travel through the same queue, so that they are journalled in order with the events around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from gcbridge.bridge.gaps import GapJournal
from gcbridge.bridge.mapping import Mapping, event_to_outbox_item, wire_fields
from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.genesys.events import Event, Gap
from gcbridge.outbox.base import OutboxItem

DEFAULT_MAX_BATCH: Final = 500
DEFAULT_QUEUE_SIZE: Final = 20_000
_RETRY_DELAYS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_END: Final = object()


def raw_item(event: Event, problem: str) -> OutboxItem:
    """An outbox row for an event the mapping could not turn into one (plain ``json``, which takes any
    integer; the payload keeps the wire shape plus ``mappingError``)."""
    payload = {**wire_fields(event), "mappingError": problem}
    return OutboxItem(
        dedup_key=event.dedup_key,
        order_key=f"unmappable:{event.topic}",
        topic=event.topic,
        payload=json.dumps(payload, default=str).encode(),
        received_at=event.received_at,
    )


class BatchWriter(Protocol):
    """Where batches go: the outbox (``put_many`` is durable when it returns)."""

    async def put_many(self, items: Sequence[OutboxItem]) -> int: ...


class Ingest:
    """Moves items from ``stream`` into ``store``. ``await run()``; it returns once the stream has ended and
    everything taken from it is durable."""

    def __init__(
        self,
        stream: AsyncIterable[Event | Gap],
        store: BatchWriter,
        mapping: Mapping,
        metrics: BridgeMetrics,
        journal: GapJournal,
        log: Any,
        clock: Callable[[], float],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_gap: Callable[[Gap], Awaitable[object]] | None = None,
    ) -> None:
        self._stream = stream
        self._store = store
        self._mapping = mapping
        self._metrics = metrics
        self._journal = journal
        self._log = log
        self._clock = clock
        self._max_batch = max_batch
        self._on_gap = on_gap
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        self.received = 0
        self.unrouted = 0
        self.batches = 0
        self.last_event_at: float | None = None
        self._warned_unrouted: set[str] = set()
        self.failure: Exception | None = None
        """Why the stream ended with an error (for example ``InvalidClientError``), else ``None``."""

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read(), name="gcbridge-ingest-reader")
        try:
            await self._write()
        finally:
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self) -> None:
        try:
            async for item in self._stream:
                await self._queue.put(item)
        except Exception as exc:
            # Everything already taken from the stream is still written; the service sees `failure`.
            self.failure = exc
            # debug only: the service logs the one "failed" line for it, with this failure in it
            self._log.debug("notification stream failed", error=str(exc), error_type=type(exc).__name__)
        finally:
            await self._queue.put(_END)

    async def _write(self) -> None:
        ended = False
        while not ended:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if batch[-1] is _END:
                batch.pop()
                ended = True
            await self._store_batch(batch)

    async def _store_batch(self, batch: list[object]) -> None:
        items: list[OutboxItem] = []
        for entry in batch:
            if isinstance(entry, Gap):
                # Events before the gap first, so that the journal and the outbox agree on the order.
                await self._put(items)
                items = []
                await self.record_gap(entry)
            elif isinstance(entry, Event):
                item = self._to_item(entry)
                if item is not None:
                    items.append(item)
        await self._put(items)

    def _to_item(self, event: Event) -> OutboxItem | None:
        try:
            item = event_to_outbox_item(event, self._mapping)
        except Exception as exc:
            # Neither stop the stream nor lose the event: store it as it came, so that delivery rejects it
            # to the dead-letter list with the reason (or delivers it, once the cause is fixed and replayed).
            self._log.error(
                "event could not be mapped; stored for the dead-letter list",
                topic=event.topic,
                dedup_key=event.dedup_key,
                error=f"{type(exc).__name__}: {exc}",
                what_to_do="fix the mapping rule for this topic, then `gcbridge outbox replay` the row",
            )
            return raw_item(event, f"{type(exc).__name__}: {exc}")
        if item is None:
            self.unrouted += 1
            family = self._metrics.family_label(event.topic)
            self._metrics.unrouted.labels(family=family).inc()
            if family not in self._warned_unrouted:
                self._warned_unrouted.add(family)
                self._log.warning(
                    "no mapping rule for topic; events of this family are not delivered",
                    topic=event.topic,
                    family=family,
                    what_to_do="add a rule for this family under [servicenow.mapping], or drop the topic",
                )
        return item

    async def _put(self, items: list[OutboxItem]) -> None:
        if not items:
            return
        attempt = 0
        while True:
            try:
                await self._store.put_many(items)
                break
            except Exception as exc:
                delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                attempt += 1
                self._log.error(
                    "outbox write failed; retrying",
                    attempt=attempt,
                    rows=len(items),
                    error=str(exc),
                    retry_in=delay,
                    what_to_do="check the disk that holds the outbox (space, permissions); events wait "
                    "in memory meanwhile, and the stream stops when that queue is full",
                )
                await asyncio.sleep(delay)
        self.received += len(items)
        self.batches += 1
        self.last_event_at = self._clock()
        self._metrics.record_received([i.topic for i in items])

    async def record_gap(self, gap: Gap) -> None:
        """Count, log and journal ``gap``, then hand it to ``on_gap`` (back-fill queues a job for it)."""
        entry = await self._journal.record(gap, self._clock())
        self._metrics.gaps.labels(reason=gap.reason).inc()
        self._metrics.gap_seconds.inc(gap.seconds)
        # The one line for a gap (the service does not log the client's "gap" lifecycle event).
        self._log.warning(
            "gap: events may have been missed",
            reason=gap.reason,
            start=gap.start,
            end=gap.end,
            start_utc=_utc(gap.start),
            end_utc=_utc(gap.end),
            seconds=entry["seconds"],
            topics=len(gap.topics),
            detail=gap.detail,
            what_to_do=(
                "nothing: a back-fill job repairs it from the REST APIs (its outcome follows in the log, "
                f"{self._journal.path} and /status)"
                if self._on_gap is not None
                else f"back-fill this interval from the Genesys Cloud REST APIs; {self._journal.path} "
                "lists every gap with its topics"
            ),
        )
        await self._gap_recorded(gap)

    async def _gap_recorded(self, gap: Gap) -> None:
        if self._on_gap is None:
            return
        try:
            await self._on_gap(gap)
        except Exception as exc:
            self._log.error(
                "back-fill job could not be queued for a gap",
                start=gap.start,
                end=gap.end,
                error=f"{type(exc).__name__}: {exc}",
                what_to_do="check the outbox database; run `gcbridge backfill --from ... --to ...` for this "
                "interval (the gap journal has it)",
            )


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
