"""The back-fill job store contract, and the outbox's guarded put, against both stores (SQLite, PostgreSQL).

Jobs live in the outbox's own database; the guarded put (``put_unless_newer``) is how a back-filled state
enters the outbox without ever overwriting a newer live state of its record.
"""

from __future__ import annotations

import pytest

from gcbridge.outbox import OutboxItem, OutboxStore, SqliteOutbox
from gcbridge.outbox.backfill_jobs import BackfillJobStore, GuardedPut, JobGap, JobOutcome, Unfilled
from gcbridge.outbox.backfill_postgres import PostgresBackfillJobs
from gcbridge.outbox.backfill_sqlite import SqliteBackfillJobs
from gcbridge.outbox.postgres import PostgresOutbox

from .test_outbox_contract import Backend, backend, pg_database

__all__ = ["backend", "pg_database"]  # fixtures: imported so that pytest finds them

GAP = JobGap(1000.0, 1060.0, ("v2.users.u1.presence", "v2.routing.queues.q1.conversations"), "socket_dropped")


async def jobs_of(store: OutboxStore) -> BackfillJobStore:
    if isinstance(store, SqliteOutbox):
        return await SqliteBackfillJobs.open(store)
    assert isinstance(store, PostgresOutbox)
    return await PostgresBackfillJobs.open(store)


@pytest.fixture
async def pair(backend: Backend) -> tuple[OutboxStore, BackfillJobStore]:
    store = await backend.open()
    return store, await jobs_of(store)


def live(n: int, key: str, at: float) -> OutboxItem:
    return OutboxItem(f"live-{n}", key, "v2.routing.queues.q1.conversations", b'{"s":"live"}', at)


def filled(n: int, key: str, read_at: float) -> OutboxItem:
    return OutboxItem(f"fill-{n}", key, "v2.routing.queues.q1.conversations", b'{"s":"filled"}', read_at)


async def test_enqueue_makes_one_pending_job_per_gap(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    _, jobs = pair
    job, new = await jobs.enqueue(GAP, run_at=1180.0, now=1061.0)
    assert new
    assert job.state == "pending"
    assert job.attempts == 0
    assert job.next_at == 1180.0
    assert job.gap == GAP
    again, new_again = await jobs.enqueue(GAP, run_at=1500.0, now=1062.0)
    assert not new_again
    assert again.id == job.id
    assert again.next_at == 1180.0
    other, new_other = await jobs.enqueue(JobGap(2000.0, 2001.0, GAP.topics, "service_down"), 2121.0, 2002.0)
    assert new_other
    assert other.id != job.id
    assert (await jobs.counts())["pending"] == 2


async def test_due_and_next_due_follow_run_at(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    _, jobs = pair
    assert await jobs.next_due() is None
    late, _ = await jobs.enqueue(GAP, run_at=1300.0, now=1061.0)
    early, _ = await jobs.enqueue(JobGap(900.0, 950.0, GAP.topics, "stall"), run_at=1200.0, now=1061.0)
    assert await jobs.next_due() == 1200.0
    assert await jobs.due(now=1199.0) == []
    assert [j.id for j in await jobs.due(now=1250.0, limit=5)] == [early.id]
    assert [j.id for j in await jobs.due(now=1300.0, limit=5)] == [early.id, late.id]


async def test_start_counts_an_attempt_once_and_finish_records_the_outcome(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    _, jobs = pair
    job, _ = await jobs.enqueue(GAP, run_at=1100.0, now=1061.0)
    running = await jobs.start(job.id, now=1100.0)
    assert running is not None
    assert running.state == "running"
    assert running.attempts == 1
    assert await jobs.start(job.id, now=1100.0) is None  # not pending: nobody runs it twice
    assert await jobs.due(now=5000.0) == []
    outcome = JobOutcome(
        events_found=7,
        events_written=5,
        events_skipped=1,
        requests=4,
        conversations=3,
        unfillable=(Unfilled(("v2.users.u1.presence",), "missing permission x:y:view"),),
        errors=("GET /api/v2/conversations/c9: HTTP 404",),
    )
    assert await jobs.finish(job.id, "partial", outcome, now=1110.0)
    assert not await jobs.finish(job.id, "done", JobOutcome(), now=1111.0)  # no longer running
    done = await jobs.get(job.id)
    assert done is not None
    assert done.state == "partial"
    assert done.outcome == outcome
    assert done.finished_at == 1110.0
    assert done.started_at == 1100.0
    assert (await jobs.counts()) == {"pending": 0, "running": 0, "done": 0, "partial": 1, "failed": 0}


async def test_a_failed_attempt_goes_back_to_pending_at_its_next_time(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    _, jobs = pair
    job, _ = await jobs.enqueue(GAP, run_at=1100.0, now=1061.0)
    await jobs.start(job.id, now=1100.0)
    assert await jobs.finish(job.id, "pending", JobOutcome(last_error="HTTP 503"), now=1101.0, next_at=1161.0)
    again = await jobs.get(job.id)
    assert again is not None
    assert again.state == "pending"
    assert again.next_at == 1161.0
    assert again.outcome.last_error == "HTTP 503"
    assert again.finished_at is None
    assert again.attempts == 1
    with pytest.raises(ValueError, match="next_at"):
        await jobs.finish(job.id, "pending", JobOutcome(), now=1102.0)


async def test_a_job_running_when_the_process_died_is_pending_after_reopen(backend: Backend) -> None:
    store = await backend.open("restart")
    jobs = await jobs_of(store)
    job, _ = await jobs.enqueue(GAP, run_at=1100.0, now=1061.0)
    await jobs.start(job.id, now=1100.0)
    await store.close()  # (a kill leaves the same rows behind: the state is on disk)
    reopened = await jobs_of(await backend.open("restart"))
    assert (await reopened.counts())["running"] == 1
    assert await reopened.recover(now=1200.0) == 1
    (due,) = await reopened.due(now=1200.0)
    assert due.id == job.id
    assert due.attempts == 1
    assert due.state == "pending"


async def test_recent_lists_newest_first(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    _, jobs = pair
    ids = [(await jobs.enqueue(JobGap(float(i), i + 1.0, ("t",), "r"), 0.0, 0.0))[0].id for i in range(5)]
    assert [j.id for j in await jobs.recent(limit=3)] == ids[::-1][:3]


async def test_finished_jobs_are_forgotten_after_a_while(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    _, jobs = pair
    old, _ = await jobs.enqueue(JobGap(1.0, 2.0, ("t",), "a"), 0.0, 0.0)
    new, _ = await jobs.enqueue(JobGap(3.0, 4.0, ("t",), "b"), 0.0, 0.0)
    waiting, _ = await jobs.enqueue(JobGap(5.0, 6.0, ("t",), "c"), 0.0, 0.0)
    for job, at in ((old, 100.0), (new, 200.0)):
        await jobs.start(job.id, at)
        await jobs.finish(job.id, "done", JobOutcome(), at)
    assert await jobs.forget_finished(before=150.0) == 1
    assert [j.id for j in await jobs.recent(10)] == [waiting.id, new.id]


async def test_claim_starts_the_earliest_due_job_once(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    _, jobs = pair
    late, _ = await jobs.enqueue(GAP, run_at=1300.0, now=1061.0)
    early, _ = await jobs.enqueue(JobGap(900.0, 950.0, GAP.topics, "stall"), run_at=1200.0, now=1061.0)
    assert await jobs.claim(now=1199.0) is None  # nothing due yet
    first = await jobs.claim(now=1300.0)
    assert first is not None
    assert (first.id, first.state, first.attempts, first.started_at) == (early.id, "running", 1, 1300.0)
    second = await jobs.claim(now=1300.0)
    assert second is not None
    assert second.id == late.id
    assert await jobs.claim(now=1300.0) is None  # both running: nothing is handed out twice
    assert await jobs.start(early.id, now=1301.0) is None


async def test_a_running_job_is_renewed_until_it_finishes(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    _, jobs = pair
    job, _ = await jobs.enqueue(GAP, run_at=1100.0, now=1061.0)
    assert not await jobs.renew(job.id)  # pending: nobody holds it
    assert await jobs.claim(now=1100.0) is not None
    assert await jobs.renew(job.id)
    assert await jobs.finish(job.id, "done", JobOutcome(), now=1110.0)
    assert not await jobs.renew(job.id)


# -- the guarded put ---------------------------------------------------------------------------------------


async def test_a_backfilled_state_is_not_stored_after_a_newer_live_row_of_its_key(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    store, _ = pair
    guarded: GuardedPut = store  # type: ignore[assignment]  # both stores have it; the protocol lacks it
    await store.put_many([live(1, "conv-a", at=2000.0), live(2, "conv-b", at=1500.0)])
    # read at 1900: conv-a has a live row received at 2000 (newer), conv-b only an older one
    stored = await guarded.put_unless_newer([filled(1, "conv-a", 1900.0), filled(2, "conv-b", 1900.0)])
    assert stored == 1
    rows = await store.claim(10, now=3000.0)
    assert sorted((r.order_key, r.dedup_key) for r in rows) == [("conv-a", "live-1"), ("conv-b", "live-2")]
    await store.ack([r.id for r in rows], now=3000.0)
    (after,) = await store.claim(10, now=3000.0)
    assert (after.order_key, after.dedup_key) == ("conv-b", "fill-2")


async def test_a_delivered_newer_live_row_still_blocks_an_older_backfilled_state(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    store, _ = pair
    guarded: GuardedPut = store  # type: ignore[assignment]
    await store.put_many([live(1, "conv-a", at=2000.0)])
    (row,) = await store.claim(10, now=2001.0)
    await store.ack([row.id], now=2001.0)
    assert await guarded.put_unless_newer([filled(1, "conv-a", 1999.0)]) == 0
    assert await guarded.put_unless_newer([filled(2, "conv-a", 2000.0)]) == 1  # same moment: not newer
    assert await guarded.put_unless_newer([filled(2, "conv-a", 2000.0)]) == 0  # a repeat: de-duplicated


async def test_a_guarded_put_deduplicates(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    store, _ = pair
    guarded: GuardedPut = store  # type: ignore[assignment]
    await store.put_many([live(1, "conv-a", at=1000.0)])
    same_state = OutboxItem("live-1", "conv-a", "v2.routing.queues.q1.conversations", b"{}", 1500.0)
    assert await guarded.put_unless_newer([same_state]) == 0
    assert (await store.stats(2000.0)).pending == 1


async def test_the_check_covers_the_rows_stored_after_after_id(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    store, _ = pair
    guarded: GuardedPut = store  # type: ignore[assignment]
    assert await guarded.last_id() == 0
    await store.put_many([live(1, "conv-a", at=2000.0)])
    floor = await guarded.last_id()
    assert floor > 0
    # rows up to after_id were stored before back-fill read anything: they cannot be newer than its reads
    assert await guarded.put_unless_newer([filled(1, "conv-a", 1900.0)], after_id=floor) == 1
    await store.put_many([live(2, "conv-b", at=2100.0)])
    assert await guarded.put_unless_newer([filled(2, "conv-b", 2050.0)], after_id=floor) == 0


async def test_only_rows_of_the_same_state_block_a_backfilled_one(
    pair: tuple[OutboxStore, BackfillJobStore],
) -> None:
    # one record per user: a live routing status newer than the back-filled presence does not block it
    # (different fields), a newer live presence does
    store, _ = pair
    guarded: GuardedPut = store  # type: ignore[assignment]

    def user_item(key: str, topic: str, at: float) -> OutboxItem:
        return OutboxItem(key, "user-1", f"v2.users.user-1.{topic}", b"{}", at)

    def state_of(topic: str) -> str:
        return topic.rsplit(".", 1)[-1]

    floor = await guarded.last_id()
    await store.put_many([user_item("live-routing", "routingStatus", 2000.0)])
    presence = [user_item("fill-presence", "presence", 1900.0)]
    assert await guarded.put_unless_newer(presence, after_id=floor) == 0  # default: one state per key
    assert await guarded.put_unless_newer(presence, after_id=floor, state_of=state_of) == 1
    routing = [user_item("fill-routing", "routingStatus", 1900.0)]
    assert await guarded.put_unless_newer(routing, after_id=floor, state_of=state_of) == 0


async def test_within_one_put_a_later_item_of_a_key_wins(pair: tuple[OutboxStore, BackfillJobStore]) -> None:
    store, _ = pair
    guarded: GuardedPut = store  # type: ignore[assignment]
    items = [filled(1, "conv-a", 2000.0), filled(2, "conv-a", 1999.0), filled(3, "conv-a", 2001.0)]
    assert await guarded.put_unless_newer(items) == 2
    rows = await store.claim(10, now=3000.0)
    assert [r.dedup_key for r in rows] == ["fill-1"]
