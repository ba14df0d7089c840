"""The demo's books: an event identical (topic and body) to one in the outbox is stored once, not lost.

Found under a profiler: `gcbridge demo --rate 300` fell behind, its traffic generator caught up in bursts,
and events published on one topic within one millisecond with the same state (the simulator stamps bodies
with the millisecond) were one notification to the bridge (same dedup key), one outbox row; the demo then
counted the others "lost outside any gap" with nothing left in the outbox.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson

from gcbridge.bridge.demo import DemoSummary, _account
from gcbridge.bridge.demo_books import balance
from gcbridge.core.dedup import dedup_key
from gcbridge.outbox.base import OutboxItem
from gcbridge.outbox.sqlite import SqliteOutbox
from gcbridge.sim.genesys.ledger import Delivery, PublishedRecord
from gcbridge.sim.genesys.sim import GenesysSim

TOPIC = "v2.users.a9e70003-0000-4000-8000-000000000003.routingStatus"
BODY = {"routingStatus": {"status": "INTERACTING", "startTime": "2026-12-04T20:46:40.391Z"}}
OTHER = {"routingStatus": {"status": "IDLE", "startTime": "2026-12-04T20:46:40.391Z"}}


def record(seq: int, body: dict[str, Any], at: float = 1000.0, *, sent: bool = True) -> PublishedRecord:
    return PublishedRecord(
        seq,
        TOPIC,
        at,
        f"corr-{seq}",
        body,
        [Delivery("streaming-0-x", sent, "sent" if sent else "stalled", 1)],
    )


def item(rec: PublishedRecord) -> OutboxItem:
    """The row the bridge writes for ``rec`` (key from topic and body; payload keeps the sequence)."""
    payload = {"topicName": rec.topic, "eventBody": rec.body, "metadata": {"simSequence": rec.seq}}
    return OutboxItem(
        dedup_key(rec.topic, rec.body), f"user:{rec.topic}", rec.topic, orjson.dumps(payload), 1.0
    )


async def account(
    tmp_path: Path, ledger: list[PublishedRecord], stored: list[PublishedRecord]
) -> DemoSummary:
    outbox = await SqliteOutbox.open(tmp_path / "outbox.db", synchronous="NORMAL")
    try:
        await outbox.put_many([item(r) for r in stored])
    finally:
        await outbox.close()
    summary = DemoSummary()
    _account(summary, cast(GenesysSim, SimpleNamespace(ledger=ledger)), tmp_path / "outbox.db", [])
    return summary


async def test_an_event_identical_to_a_stored_one_is_not_counted_lost(tmp_path: Path) -> None:
    first, twin = record(17, BODY), record(18, dict(BODY))
    # what the bridge does: the second put of one dedup key is ignored, one row for both
    summary = await account(tmp_path, [first, twin], [first, twin])
    assert summary.lost == 0
    assert (summary.identical, summary.missed_in_gaps) == (1, 0)


async def test_an_event_missing_from_the_outbox_is_still_lost(tmp_path: Path) -> None:
    # never hide a loss: same topic, another body, not stored, in no gap; an event for no channel of the
    # bridge (no deliveries) is not the bridge's to lose
    stored, gone = record(17, BODY), record(18, OTHER)
    unsubscribed = PublishedRecord(19, TOPIC, 1000.0, "corr-19", dict(OTHER), [])
    summary = await account(tmp_path, [stored, gone, unsubscribed], [stored])
    assert summary.lost == 1
    assert summary.identical == 0


def test_the_books_sort_stored_identical_gap_and_lost() -> None:
    a, a_twin = record(1, BODY, 10.0), record(2, dict(BODY), 10.0)
    in_gap = record(3, OTHER, 20.0, sent=False)
    gone = record(4, OTHER, 30.0)
    books = balance([a, a_twin, in_gap, gone], {1}, {dedup_key(TOPIC, BODY)}, [(19.0, 21.0)])
    assert (books.stored, books.identical, books.missed_in_gaps, books.lost) == (1, 1, 1, 1)
