"""The service's small parts: lifecycle table, gap journal, measured sink, status, ingest batching."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge.gaps import GapJournal, LastRun, downtime_gap
from gcbridge.bridge.ingest import Ingest
from gcbridge.bridge.lifecycle import TRANSITIONS, IllegalTransition, Lifecycle
from gcbridge.bridge.mapping import compile_mapping
from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.bridge.sink import MeasuredSink, answered, probe_answered
from gcbridge.bridge.status import build_status, channel_rows, topic_count
from gcbridge.genesys.events import Event, Gap
from gcbridge.outbox.base import Delivered, OutboxItem, OutboxRow, OutboxStats, Outcome, Reject, Retry
from gcbridge.servicenow import conditions
from tests.logging_state import restored_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """These tests configure the process-wide logging; leave it as other tests expect it."""
    with restored_logging():
        yield


# -- lifecycle ----------------------------------------------------------------------------------------------


def test_lifecycle_happy_path_and_fatal() -> None:
    life = Lifecycle()
    assert [life.fire("started"), life.fire("stop"), life.fire("drained")] == [
        "running",
        "draining",
        "stopped",
    ]
    failed = Lifecycle()
    failed.fire("started")
    assert failed.fire("fatal") == "failed"
    assert not failed.alive
    assert failed.fire("stop") == "failed"  # a drain after a failure keeps the verdict


def test_lifecycle_rejects_what_the_table_does_not_allow() -> None:
    life = Lifecycle()
    with pytest.raises(IllegalTransition, match="'drained' is not allowed in state 'starting'"):
        life.fire("drained")
    assert ("stopped", "started") not in TRANSITIONS


# -- gaps ---------------------------------------------------------------------------------------------------


def test_downtime_gap_from_the_previous_run() -> None:
    assert downtime_gap(None, 100.0, ["t"]) is None
    gap = downtime_gap(LastRun(alive_at=90.0, clean=True), 100.0, ["a", "b"])
    assert gap is not None
    assert (gap.start, gap.end, gap.topics, gap.reason) == (90.0, 100.0, ("a", "b"), "service_down")
    crashed = downtime_gap(LastRun(alive_at=90.0, clean=False), 100.0, ["a"])
    assert crashed is not None
    assert crashed.reason == "service_crashed"
    assert downtime_gap(LastRun(alive_at=100.0, clean=True), 100.0, ["a"]) is None


def test_a_combined_topic_counts_as_each_topic_it_combines() -> None:
    configured = ["v2.users.u1?presence&routingStatus&geolocation", "v2.users.u1.presence", "v2.a.b"]
    # the same count on the status page as on the client's channels and in a downtime gap
    assert topic_count(configured) == 4
    gap = downtime_gap(LastRun(alive_at=90.0, clean=True), 100.0, configured)
    assert gap is not None
    assert gap.topics == (
        "v2.users.u1.presence",
        "v2.users.u1.routingStatus",
        "v2.users.u1.geolocation",
        "v2.a.b",
    )


async def test_gap_journal_appends_lines_and_survives_a_torn_tail(tmp_path: Path) -> None:
    journal = GapJournal(tmp_path / "gaps.jsonl")
    await journal.record(Gap(1.0, 4.5, ("t1",), "socket_dropped", "x"), now=5.0)
    await journal.mark_alive(6.0, clean=True)
    with (tmp_path / "gaps.jsonl").open("ab") as fh:
        fh.write(b'{"start": 7')  # a crash in the middle of a write
    reopened = GapJournal(tmp_path / "gaps.jsonl")
    reopened.load()
    assert [g["reason"] for g in reopened.recent] == ["socket_dropped"]
    assert reopened.recent[0]["seconds"] == 3.5
    assert reopened.last_run() == LastRun(alive_at=6.0, clean=True)
    assert journal.count == 1
    assert journal.seconds == 3.5


# -- measured sink ------------------------------------------------------------------------------------------


def test_answered_tells_transport_trouble_from_answers() -> None:
    assert answered(Delivered())
    assert answered(Reject("HTTP 400: Invalid table x"))
    assert answered(Retry("HTTP 429: Rate limit exceeded", after=3))
    assert not answered(Retry("HTTP 503 with text/html (instance or load balancer unavailable)"))
    assert not answered(Retry("ClientConnectorError: Cannot connect to host"))
    assert not answered(Retry("timeout"))


def test_probe_counts_only_api_answers() -> None:
    json = "application/json;charset=UTF-8"
    assert probe_answered(401, json)  # no credentials on the probe: the API answered all the same
    assert probe_answered(200, json)
    assert not probe_answered(200, "text/html;charset=UTF-8")  # a hibernating instance
    assert not probe_answered(503, json)
    assert not probe_answered(502, "text/html")
    assert not probe_answered(404, "text/html")  # something in front of the instance


class ScriptedSink:
    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes

    async def deliver(self, row: OutboxRow) -> Outcome:
        return self.outcomes.pop(0)


async def test_measured_sink_counts_outcomes_and_reachability() -> None:
    metrics = BridgeMetrics()
    sink = MeasuredSink(
        ScriptedSink([Retry("HTTP 503 unavailable"), Delivered(), Reject("HTTP 403")]), metrics
    )
    row = OutboxRow(1, "k", "o", "t", b"{}", 0.0, 0)
    assert sink.reachable is None
    await sink.deliver(row)
    assert sink.reachable is False
    await sink.deliver(row)
    assert sink.reachable is True
    await sink.deliver(row)
    assert (sink.delivered, sink.retried, sink.rejected) == (1, 1, 1)
    assert sink.last_error == "HTTP 403"
    text = metrics.render().decode()
    assert 'gcbridge_deliveries_total{result="retry"} 1.0' in text
    assert "gcbridge_servicenow_delivery_seconds_count 3.0" in text


def test_servicenow_requests_are_timed_by_method() -> None:
    metrics = BridgeMetrics()
    metrics.record_servicenow_request("POST", 0.2)
    metrics.record_servicenow_request("POST", 0.4)
    metrics.record_servicenow_request("GET", 0.1)
    text = metrics.render().decode()
    assert 'gcbridge_servicenow_request_seconds_count{method="POST"} 2.0' in text
    assert 'gcbridge_servicenow_request_seconds_sum{method="POST"} 0.6' in text
    assert 'gcbridge_servicenow_request_seconds_count{method="GET"} 1.0' in text


async def test_measured_sink_keeps_an_exceptions_text_off_the_status() -> None:
    class Raising:
        async def deliver(self, row: OutboxRow) -> Outcome:
            raise ConnectionResetError("peer reset; request had Authorization: Bearer abc.def.ghi")

    sink = MeasuredSink(Raising(), BridgeMetrics())
    with pytest.raises(ConnectionResetError):  # the dispatcher turns it into a retry
        await sink.deliver(OutboxRow(1, "k", "o", "t", b"{}", 0.0, 0))
    assert sink.last_error == "ConnectionResetError"
    assert sink.reachable is False  # a reset connection is transport trouble, not an answer
    assert not answered(Retry("ServerDisconnectedError"))


# -- status document ----------------------------------------------------------------------------------------


def test_status_document_from_client_stats() -> None:
    stats = {
        "channels": [
            {"id": "c1", "shard": 0, "state": "connected", "topic_count": 3, "last_frame_at": 9.0},
            {"id": "c2", "shard": 1, "state": "reconnecting", "topic_count": 2},
        ],
        "shards": 2,
        "reconnects_by_reason": {"dropped": 2},
        "duplicates_dropped": 4,
        "loop_lag": 0.01234,
    }
    rows = channel_rows(stats)
    assert [r["state"] for r in rows] == ["live", "reconnecting"]
    doc = build_status(
        now=10.0,
        state="running",
        started_at=4.0,
        version="x",
        endpoint="eu_west_1",
        topics=5,
        client_stats=stats,
        outbox=OutboxStats(1, 0, 0, 5, 0.5),
        received=6,
        unrouted=0,
        gaps_count=1,
        gaps_seconds=2.0,
        recent_gaps=[{"reason": "a"}, {"reason": "b"}],
        deliveries={"delivered": 5},
        servicenow_reachable=True,
        servicenow_last_error=None,
        servicenow_instance="https://x",
        last_event_at=9.5,
        history=[{"start": 0.0, "events_in": 6}],
    )
    assert doc["uptime"] == 6.0
    assert doc["history"] == {"minute_seconds": 60.0, "minutes": [{"start": 0.0, "events_in": 6}]}
    assert doc["readiness"] == {"ready": False, "reasons": ["shards without a live socket: [1]"]}
    assert doc["genesys"]["reconnects"] == {"dropped": 2}
    assert doc["genesys"]["loop_lag"] == 0.012
    assert doc["outbox"]["pending"] == 1
    assert [g["reason"] for g in doc["gaps"]["recent"]] == ["b", "a"]  # newest first
    orjson.dumps(doc)  # JSON-safe


# -- ingest -------------------------------------------------------------------------------------------------


class RecordingStore:
    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[OutboxItem]] = []
        self.failures = failures
        self.gate = asyncio.Event()
        self.gate.set()

    async def put_many(self, items: Sequence[OutboxItem]) -> int:
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.batches.append(list(items))
        return len(items)


async def stream_of(items: list[Event | Gap]) -> AsyncIterator[Event | Gap]:
    for item in items:
        yield item


def event(i: int, topic: str = "v2.users.u1.presence") -> Event:
    return Event(topic, {"id": f"e{i}"}, "2", {}, f"k{i}", time.time())


def make_ingest(
    stream: AsyncIterator[Event | Gap], store: RecordingStore, tmp_path: Path, **kw: int
) -> tuple[Ingest, BridgeMetrics, io.StringIO]:
    logs = io.StringIO()
    bridge_logging.configure(stream=logs)
    metrics = BridgeMetrics()
    ingest = Ingest(
        stream,
        store,
        compile_mapping(None),
        metrics,
        GapJournal(tmp_path / "g.jsonl"),
        bridge_logging.get_logger("t"),
        time.time,
        **kw,
    )
    return ingest, metrics, logs


async def test_ingest_batches_what_arrived_together_and_keeps_gap_order(tmp_path: Path) -> None:
    items: list[Event | Gap] = [event(i) for i in range(5)]
    items.append(Gap(1.0, 2.0, ("v2.users.u1.presence",), "socket_dropped"))
    items += [event(i) for i in range(5, 8)]
    store = RecordingStore()
    ingest, metrics, _ = make_ingest(stream_of(items), store, tmp_path, max_batch=100)
    await asyncio.wait_for(ingest.run(), 30)
    keys = [[i.dedup_key for i in b] for b in store.batches]
    # Everything queued at that moment goes into one commit, split where the gap sits.
    assert keys == [["k0", "k1", "k2", "k3", "k4"], ["k5", "k6", "k7"]]
    assert ingest.received == 8
    assert 'gcbridge_gaps_total{reason="socket_dropped"} 1.0' in metrics.render().decode()


async def test_ingest_retries_a_failing_outbox_and_counts_unrouted(tmp_path: Path) -> None:
    items: list[Event | Gap] = [event(1), event(2, topic="v2.some.unknown.topic"), event(3)]
    store = RecordingStore(failures=2)
    ingest, metrics, logs = make_ingest(stream_of(items), store, tmp_path)
    await asyncio.wait_for(ingest.run(), 30)
    assert sum(len(b) for b in store.batches) == 2
    assert ingest.unrouted == 1
    assert "outbox database unreachable; waiting for it" in logs.getvalue()
    assert "outbox database reachable again; resuming" in logs.getvalue()
    assert "no mapping rule for topic" in logs.getvalue()
    assert 'gcbridge_events_unrouted_total{family="v2.some.unknown.topic"} 1.0' in metrics.render().decode()


async def test_ingest_records_a_stream_failure_after_storing_what_it_got(tmp_path: Path) -> None:
    async def failing() -> AsyncIterator[Event | Gap]:
        yield event(1)
        raise RuntimeError("invalid_client")

    store = RecordingStore()
    ingest, _, _ = make_ingest(failing(), store, tmp_path)
    await asyncio.wait_for(ingest.run(), 30)
    assert [i.dedup_key for b in store.batches for i in b] == ["k1"]
    assert isinstance(ingest.failure, RuntimeError)


async def test_ingest_batch_size_is_bounded(tmp_path: Path) -> None:
    store = RecordingStore()
    ingest, _, _ = make_ingest(stream_of([event(i) for i in range(10)]), store, tmp_path, max_batch=4)
    await asyncio.wait_for(ingest.run(), 30)
    assert [len(b) for b in store.batches] == [4, 4, 2]


async def test_an_event_the_mapping_cannot_encode_is_stored_not_dropped(tmp_path: Path) -> None:
    # A set is not JSON: no encoder takes it, so the mapping fails and the raw fallback must keep the event.
    huge = Event("v2.users.u1.presence", {"id": "e1", "n": {7}}, "2", {}, "k-huge", time.time())
    store = RecordingStore()
    ingest, _, logs = make_ingest(stream_of([huge, event(2)]), store, tmp_path)
    await asyncio.wait_for(ingest.run(), 30)
    items = [i for b in store.batches for i in b]
    assert [i.dedup_key for i in items] == ["k-huge", "k2"]
    assert items[0].order_key == "unmappable:v2.users.u1.presence"
    assert json.loads(items[0].payload)["eventBody"]["n"] == "{7}"
    assert "mappingError" in json.loads(items[0].payload)
    assert "stored for the dead-letter list" in logs.getvalue()


async def test_measured_sink_notices_when_every_recent_delivery_is_dead_lettered() -> None:
    row = OutboxRow(1, "k", "o", "t", b"{}", 0.0, 0)
    sink = MeasuredSink(
        ScriptedSink([Reject("HTTP 400: bad field u_x")] * 6 + [Delivered()]), BridgeMetrics()
    )
    for _ in range(4):
        await sink.deliver(row)
    assert sink.wholesale_rejection() is None  # four rejections are not yet "everything"
    await sink.deliver(row)
    reason = sink.wholesale_rejection()
    assert reason is not None
    assert reason.startswith("every one of the last 5 deliveries was dead-lettered")
    assert "bad field u_x" in reason
    await sink.deliver(row)
    await sink.deliver(row)  # one delivery among the recent outcomes: not wholesale any more
    assert sink.wholesale_rejection() is None


def test_a_refusing_instance_is_reachable_a_silent_one_is_not() -> None:
    refused = Retry("HTTP 401", condition=conditions.bad_credentials(401))
    assert answered(refused)
    assert answered(
        Retry(
            "HTTP 400: Invalid table u_x", condition=conditions.missing_table("HTTP 400: Invalid table u_x")
        )
    )
    assert not answered(Retry("HTTP 503", condition=conditions.unavailable(503)))
    assert not answered(Retry("HTTP 200 html", condition=conditions.hibernating()))
