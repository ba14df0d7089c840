"""The service's back-fill jobs, run by :class:`BackfillRunner` over both outbox stores with a stand-in filler
(the library's Backfiller has tests of its own): when a job runs, what its outcome makes of it, retries,
restarts, and that a back-filled state never overwrites a newer live one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gcbridge import _json
from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.backfill_runner import BackfillRunner, BackfillSettings, Filler
from gcbridge.bridge.gaps import GapJournal
from gcbridge.bridge.mapping import compile_mapping, event_to_outbox_item
from gcbridge.core.backfill_rules import RetryPolicy
from gcbridge.genesys.events import Gap
from gcbridge.outbox import OutboxStore
from gcbridge.outbox.backfill_jobs import BackfillJob, GuardedPut

from .backfill_fakes import FakeFiller, FakeUnfillable, RecordingLog, conversation_event
from .test_backfill_jobs_contract import jobs_of
from .test_outbox_contract import Backend, backend, pg_database

__all__ = ["backend", "pg_database"]

TOPICS = ("v2.routing.queues.q1.conversations", "v2.users.u1.presence")
GAP = Gap(start=1000.0, end=1060.0, topics=TOPICS, reason="socket_dropped")
MAPPING = compile_mapping()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, backend: Backend, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.clock = Clock(1061.0)
        self.log = RecordingLog()
        self.journal = GapJournal(tmp_path / "gaps.jsonl")
        self.runners: list[BackfillRunner] = []

    async def runner(
        self, filler: Filler, *, name: str = "outbox", delay: float = 120.0, max_attempts: int = 3
    ) -> tuple[BackfillRunner, OutboxStore]:
        store = await self.backend.open(name)
        jobs = await jobs_of(store)
        guarded: GuardedPut = store  # type: ignore[assignment]
        runner = BackfillRunner(
            jobs,
            guarded,
            filler,
            MAPPING,
            self.journal,
            BackfillMetrics(CollectorRegistry()),
            self.log,
            settings=BackfillSettings(
                delay=delay, retry=RetryPolicy(initial=30.0, cap=120.0, max_attempts=max_attempts)
            ),
            clock=self.clock,
        )
        self.runners.append(runner)
        return runner, store

    async def close(self) -> None:
        for runner in self.runners:
            await runner.stop()


@pytest.fixture
async def rig(backend: Backend, tmp_path: Path) -> Any:
    r = Rig(backend, tmp_path)
    yield r
    await r.close()


async def until(condition: Callable[[], Any]) -> None:
    deadline = asyncio.get_running_loop().time() + 20.0
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def state_of(runner: BackfillRunner, job: BackfillJob) -> str:
    current = await runner.jobs.get(job.id)
    assert current is not None
    return current.state


def events_plan(*conversations: str, read_at: float = 1190.0) -> Callable[[Gap, int], Any]:
    return lambda _gap, _n: ([conversation_event(c, "disconnected", read_at) for c in conversations], None)


async def test_a_gap_job_runs_after_the_delay_and_records_its_outcome_everywhere(rig: Rig) -> None:
    filler = FakeFiller(events_plan("c1", "c2"))
    runner, store = await rig.runner(filler)
    await runner.start()
    job = await runner.enqueue_gap(GAP)
    assert job is not None
    assert job.next_at == GAP.end + 120.0
    await asyncio.sleep(0.1)
    assert filler.gaps == []  # not due yet: analytics lags the live stream
    rig.clock.now = 1181.0
    runner.wake()
    await until(lambda: _settled(rig, runner, job, "done"))
    assert filler.gaps == [GAP]
    done = await runner.jobs.get(job.id)
    assert done is not None
    assert (done.outcome.events_found, done.outcome.events_written, done.outcome.requests) == (2, 2, 2)
    assert (await store.stats(2000.0)).pending == 2
    # journal: a backfill line naming the gap
    lines = [_json.loads(line) for line in (rig.tmp_path / "gaps.jsonl").read_bytes().splitlines()]
    (record,) = [line for line in lines if "backfill" in line]
    assert record["gap"] == {"start": 1000.0, "end": 1060.0, "reason": "socket_dropped"}
    assert record["backfill"]["state"] == "done"
    assert record["backfill"]["events_written"] == 2
    # status, metrics, one log line
    await runner.refresh()
    doc = runner.status_doc()
    assert doc["jobs"]["done"] == 1
    assert doc["recent"][0]["id"] == job.id
    assert _sample(runner, "gcbridge_backfill_jobs", state="done") == 1
    assert _sample(runner, "gcbridge_backfill_events_total", result="written") == 2
    assert len(rig.log.find("back-fill job done")) == 1


async def test_unfillable_topics_make_the_job_partial_with_the_reason(rig: Rig) -> None:
    def plan(gap: Gap, _n: int) -> Any:
        return [
            conversation_event("c1", "connected", 1190.0),
            FakeUnfillable(("v2.users.u1.presence",), "missing permission x:y:view"),
        ], None

    runner, _ = await rig.runner(FakeFiller(plan), delay=0.0)
    await runner.start()
    job = await runner.enqueue_gap(GAP)
    assert job is not None
    await until(lambda: _settled(rig, runner, job, "partial"))
    final = await runner.jobs.get(job.id)
    assert final is not None
    assert final.outcome.unfillable[0].reason == "missing permission x:y:view"
    ((level, _, fields),) = rig.log.find("back-fill job partial")
    assert level == "warning"
    assert "what_to_do" in fields


async def test_a_failing_job_is_retried_with_backoff_then_failed(rig: Rig) -> None:
    filler = FakeFiller(lambda _g, _n: ([], RuntimeError("HTTP 503 from /api/v2/analytics")))
    runner, _ = await rig.runner(filler, delay=0.0, max_attempts=3)
    await runner.start()
    job = await runner.enqueue_gap(GAP)
    assert job is not None
    await until(lambda: _retried(rig, runner, job, 1))
    first = await runner.jobs.get(job.id)
    assert first is not None
    assert first.state == "pending"
    assert first.next_at == pytest.approx(rig.clock.now + 30.0)
    assert first.outcome.last_error == "RuntimeError: HTTP 503 from /api/v2/analytics"
    rig.clock.now += 29.0
    runner.wake()
    await asyncio.sleep(0.1)
    assert len(filler.gaps) == 1  # not before its backoff
    rig.clock.now += 1.0
    runner.wake()
    await until(lambda: _retried(rig, runner, job, 2))
    second = await runner.jobs.get(job.id)
    assert second is not None
    assert second.next_at == pytest.approx(rig.clock.now + 60.0)  # doubled
    rig.clock.now += 60.0
    runner.wake()
    await until(lambda: _settled(rig, runner, job, "failed"))
    assert len(filler.gaps) == 3
    assert len(rig.log.find("back-fill attempt failed; retrying later")) == 2
    ((level, _, fields),) = rig.log.find("back-fill job failed")
    assert level == "error"
    assert "what_to_do" in fields


async def test_a_job_interrupted_by_a_restart_finishes_after_it(rig: Rig) -> None:
    hold = (
        asyncio.Event()
    )  # never set: the first run hangs in the middle of its job, as a process killed there
    first = FakeFiller(events_plan("c1"), hold=hold)
    runner, store = await rig.runner(first, name="restart", delay=0.0)
    await runner.start()
    job = await runner.enqueue_gap(GAP)
    assert job is not None
    await asyncio.wait_for(first.started.wait(), 10)
    await until(lambda: _is(runner, job, "running"))
    await runner.stop()  # the process ends with the job running (a kill leaves the same rows on disk)
    await store.close()

    second = FakeFiller(events_plan("c1", "c2"))
    again, store2 = await rig.runner(second, name="restart", delay=0.0)
    await again.start()
    assert again.recovered == 1
    await until(lambda: _settled(rig, again, job, "done"))
    final = await again.jobs.get(job.id)
    assert final is not None
    assert final.attempts == 2
    # the interrupted run had not written its batch yet; the repeated run writes everything once
    assert (await store2.stats(2000.0)).pending == 2
    assert second.gaps == [GAP]


async def test_a_backfilled_state_does_not_overwrite_a_newer_live_one(rig: Rig) -> None:
    hold = asyncio.Event()
    filler = FakeFiller(events_plan("c-old", "c-new", read_at=1190.0), hold=hold)
    runner, store = await rig.runner(filler, delay=0.0)
    # c-old's live event is older than back-fill's read; c-new's arrives while the job runs, after the read
    live_old = event_to_outbox_item(conversation_event("c-old", "connected", 1100.0), MAPPING)
    live_new = event_to_outbox_item(conversation_event("c-new", "terminated", 1195.0), MAPPING)
    assert live_old is not None
    assert live_new is not None
    await store.put_many([live_old])
    await runner.start()
    job = await runner.enqueue_gap(GAP)
    assert job is not None
    await asyncio.wait_for(filler.started.wait(), 10)
    await store.put_many([live_new])
    hold.set()
    await until(lambda: _settled(rig, runner, job, "done"))
    final = await runner.jobs.get(job.id)
    assert final is not None
    assert (final.outcome.events_written, final.outcome.events_skipped) == (1, 1)
    rows = []
    while batch := await store.claim(10, now=3000.0):
        rows += batch
        await store.ack([r.id for r in batch], now=3000.0)
    last_per_key = {
        r.order_key: _json.loads(r.payload)["eventBody"]["participants"][0]["state"] for r in rows
    }
    assert last_per_key == {"c-new": "terminated", "c-old": "disconnected"}


async def test_a_by_hand_request_runs_at_once_and_returns_the_outcome(rig: Rig) -> None:
    runner, _ = await rig.runner(FakeFiller(events_plan("c1")), delay=600.0)
    await runner.start()
    job = await asyncio.wait_for(runner.run_by_hand(500.0, 800.0, TOPICS), 20)
    assert job.state == "done"
    assert job.gap.reason == "manual"
    assert job.outcome.events_written == 1
    again = await asyncio.wait_for(runner.run_by_hand(500.0, 800.0, TOPICS), 20)
    assert again.id != job.id  # each request is a job of its own
    assert again.outcome.events_skipped == 1  # the same state again: de-duplicated by the outbox


async def _is(runner: BackfillRunner, job: BackfillJob, state: str) -> bool:
    return await state_of(runner, job) == state


OUTCOME_LINES = (
    "back-fill job done",
    "back-fill job partial: some topics could not be repaired",
    "back-fill attempt failed; retrying later",
    "back-fill job failed",
)


def _reports(rig: Rig, job: BackfillJob, state: str) -> int:
    """Outcome lines logged for ``job`` ending in ``state``: the last step of an attempt, after its state was
    stored (a test that sees the state must wait for them too)."""
    return sum(
        1
        for _, msg, fields in rig.log.lines
        if msg in OUTCOME_LINES and fields.get("job") == job.id and fields.get("state") == state
    )


async def _settled(rig: Rig, runner: BackfillRunner, job: BackfillJob, state: str) -> bool:
    """``job`` reached ``state`` and its outcome was reported (journal, metrics, log)."""
    current = await runner.jobs.get(job.id)
    return current is not None and current.state == state and _reports(rig, job, state) >= 1


async def _retried(rig: Rig, runner: BackfillRunner, job: BackfillJob, n: int) -> bool:
    """``job`` failed its ``n``-th attempt and waits for a retry (reported)."""
    current = await runner.jobs.get(job.id)
    return current is not None and current.attempts == n and _reports(rig, job, "pending") >= n


def _sample(runner: BackfillRunner, name: str, **labels: str) -> float:
    for metric in runner.metrics.registry.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.parametrize(
    ("live_at", "written_skipped"),
    [(1185.0, (1, 0)), (1189.5, (0, 1))],
    ids=["received-before-the-request-loses", "within-the-clock-slack-wins"],
)
async def test_a_live_event_received_before_the_request_was_sent_is_older_than_the_answer(
    rig: Rig, live_at: float, written_skipped: tuple[int, int]
) -> None:
    # the library stamps read_at when it sent the request: the server read the state then or later, so a live
    # row received earlier is older (the back-filled state is written), unless within READ_SLACK of it
    hold = asyncio.Event()
    filler = FakeFiller(events_plan("c-1", read_at=1190.0), hold=hold)
    runner, store = await rig.runner(filler, delay=0.0)
    await runner.start()
    job = await runner.enqueue_gap(GAP)
    assert job is not None
    await asyncio.wait_for(filler.started.wait(), 10)
    live = event_to_outbox_item(conversation_event("c-1", "terminated", live_at), MAPPING)
    assert live is not None
    await store.put_many([live])
    hold.set()
    await until(lambda: _settled(rig, runner, job, "done"))
    final = await runner.jobs.get(job.id)
    assert final is not None
    assert (final.outcome.events_written, final.outcome.events_skipped) == written_skipped


async def test_the_journal_keeps_gaps_and_backfill_outcomes_apart_when_loaded(tmp_path: Path) -> None:
    journal = GapJournal(tmp_path / "gaps.jsonl")
    await journal.record(GAP, now=1061.0)
    await journal.record_backfill({"start": 1000.0, "end": 1060.0, "reason": "x"}, {"job": 1}, now=1200.0)
    again = GapJournal(tmp_path / "gaps.jsonl")
    again.load()
    assert [e["reason"] for e in again.recent] == ["socket_dropped"]  # the gap table shows gaps only
    assert [e["backfill"]["job"] for e in again.recent_backfills] == [1]


async def test_ingest_hands_every_gap_to_back_fill_and_survives_it_failing(tmp_path: Path) -> None:
    from gcbridge.bridge.ingest import Ingest
    from gcbridge.bridge.metrics import BridgeMetrics

    other = Gap(start=2000.0, end=2001.0, topics=TOPICS, reason="stall")

    async def stream() -> Any:
        yield GAP
        yield other

    class Store:
        async def put_many(self, items: Any) -> int:
            return len(items)

    handed: list[Gap] = []

    async def on_gap(gap: Gap) -> None:
        handed.append(gap)
        if gap is GAP:
            raise RuntimeError("database is locked")

    log = RecordingLog()
    journal = GapJournal(tmp_path / "gaps.jsonl")
    ingest = Ingest(stream(), Store(), MAPPING, BridgeMetrics(), journal, log, lambda: 3000.0, on_gap=on_gap)
    await ingest.run()
    assert handed == [GAP, other]  # the second gap still reached back-fill
    assert journal.count == 2  # both journalled, whatever back-fill did
    ((level, _, fields),) = log.find("back-fill job could not be queued for a gap")
    assert level == "error"
    assert "RuntimeError: database is locked" in fields["error"]
    assert "gcbridge backfill" in fields["what_to_do"]
    gap_lines = log.find("gap: events may have been missed")
    assert all("a back-fill job repairs it" in f["what_to_do"] for _, _, f in gap_lines)
