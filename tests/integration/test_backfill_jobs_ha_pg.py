"""Back-fill jobs shared by several instances on one PostgreSQL database: each runs jobs under its own id and
holds a running job by a lease (the database clock) that it renews; a job a live instance runs is never
taken back, a dead instance's job is taken over once its lease lapsed, and a run whose lease was taken over
stops. Two "instances" in one test, each with its own pool (to the database, separate processes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.backfill_runner import BackfillRunner, BackfillSettings
from gcbridge.bridge.gaps import GapJournal
from gcbridge.bridge.mapping import compile_mapping
from gcbridge.genesys.events import Gap
from gcbridge.outbox.backfill_jobs import JobGap, JobOutcome
from gcbridge.outbox.backfill_postgres import PostgresBackfillJobs
from gcbridge.outbox.postgres import PostgresOutbox

from .backfill_fakes import FakeFiller, RecordingLog, conversation_event
from .pg_fixtures import create_schema, drop_schema, pg_database

__all__ = ["pg_database"]

GAP = JobGap(1000.0, 1060.0, ("v2.routing.queues.q1.conversations",), "service_crashed")
LONG = 3600.0  # a lease that cannot lapse during a test


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


@pytest.fixture
async def outboxes(url: str) -> AsyncIterator[Callable[[str], Any]]:
    opened: list[PostgresOutbox] = []

    async def open_as(owner: str) -> PostgresOutbox:
        outbox = await PostgresOutbox.open(url, owner=owner)
        opened.append(outbox)
        return outbox

    yield open_as
    for outbox in opened:
        await outbox.close()


async def until(condition: Callable[[], Any], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def lease_until(url: str, job_id: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        return float(await conn.fetchval("SELECT lease_until FROM backfill_jobs WHERE id = $1", job_id))
    finally:
        await conn.close()


# -- the store ----------------------------------------------------------------------------------------------


async def test_recover_leaves_a_job_whose_owner_holds_its_lease(outboxes: Any) -> None:
    a = await PostgresBackfillJobs.open(await outboxes("a"), owner="a", lease=LONG)
    b = await PostgresBackfillJobs.open(await outboxes("b"), owner="b", lease=LONG)
    job, _ = await a.enqueue(GAP, run_at=1100.0, now=1061.0)
    claimed = await a.claim(now=1100.0)
    assert claimed is not None
    assert claimed.owner == "a"
    # b starts (or looks between its jobs): a runs the job, so it stays a's
    assert await b.recover(now=1200.0) == 0
    assert await b.claim(now=1200.0) is None
    assert not await b.renew(job.id)
    assert not await b.finish(job.id, "done", JobOutcome(), now=1201.0)
    assert await a.renew(job.id)
    # a restarted under the same id takes its own job back at once, lease or not
    assert await a.recover(now=1300.0) == 1
    again = await b.claim(now=1300.0)
    assert again is not None
    assert (again.owner, again.attempts) == ("b", 2)


async def test_a_lapsed_lease_is_taken_over_and_its_old_owner_can_neither_renew_nor_finish(
    outboxes: Any,
) -> None:
    a = await PostgresBackfillJobs.open(await outboxes("a"), owner="a", lease=0.2)
    b = await PostgresBackfillJobs.open(await outboxes("b"), owner="b", lease=LONG)
    job, _ = await a.enqueue(GAP, run_at=1100.0, now=1061.0)
    assert await a.claim(now=1100.0) is not None
    # a stops renewing (it died, or lost the database): once its lease lapsed by the database clock, b
    # takes the job
    await until(lambda: b.recover(now=1200.0))
    taken = await b.claim(now=1200.0)
    assert taken is not None
    assert (taken.id, taken.owner) == (job.id, "b")
    assert not await a.renew(job.id)
    assert not await a.finish(job.id, "done", JobOutcome(events_found=9), now=1201.0)
    assert await b.finish(job.id, "done", JobOutcome(events_found=1), now=1202.0)
    final = await b.get(job.id)
    assert final is not None
    assert (final.state, final.outcome.events_found, final.owner) == ("done", 1, "b")


async def test_concurrent_claims_hand_every_job_to_one_instance(outboxes: Any) -> None:
    stores = [await PostgresBackfillJobs.open(await outboxes(name), owner=name, lease=LONG) for name in "abc"]
    ids = {
        (await stores[0].enqueue(JobGap(float(i), i + 1.0, ("t",), "r"), 0.0, 0.0))[0].id for i in range(30)
    }

    async def drain(store: PostgresBackfillJobs) -> list[int]:
        got = []
        while (job := await store.claim(now=10.0)) is not None:
            got.append(job.id)
        return got

    claimed = await asyncio.gather(*(drain(s) for s in stores))
    every = [i for got in claimed for i in got]
    assert sorted(every) == sorted(ids)  # each job once, none twice


# -- two runners ---------------------------------------------------------------------------------------------


class Instance:
    def __init__(self, runner: BackfillRunner, filler: FakeFiller, log: RecordingLog) -> None:
        self.runner, self.filler, self.log = runner, filler, log


async def instance(
    outboxes: Any,
    tmp_path: Path,
    name: str,
    *,
    lease: float,
    hold: asyncio.Event | None = None,
    jobs_type: type[PostgresBackfillJobs] = PostgresBackfillJobs,
) -> Instance:
    outbox = await outboxes(name)
    jobs = jobs_type(outbox, owner=name, lease=lease)
    filler = FakeFiller(lambda gap, n: ([conversation_event("c1", "connected", 1150.0)], None), hold=hold)
    log = RecordingLog()
    runner = BackfillRunner(
        jobs,
        outbox,
        filler,
        compile_mapping(),
        GapJournal(tmp_path / f"gaps-{name}.jsonl"),
        BackfillMetrics(CollectorRegistry()),
        log,
        settings=BackfillSettings(delay=0.0),
        clock=lambda: 2000.0,
    )
    return Instance(runner, filler, log)


async def job_state(inst: Instance, job_id: int) -> tuple[str, int, str | None]:
    job = await inst.runner.jobs.get(job_id)
    assert job is not None
    return job.state, job.attempts, job.owner


async def _is_state(inst: Instance, job_id: int, state: str) -> bool:
    return (await job_state(inst, job_id))[0] == state


async def test_two_runners_run_a_job_once_and_take_over_a_dead_owners_job_after_its_lease(
    url: str, outboxes: Any, tmp_path: Path
) -> None:
    hold = asyncio.Event()  # never set: a's run hangs mid-job, as a process that dies there
    a = await instance(outboxes, tmp_path, "a", lease=1.5, hold=hold)
    b = await instance(outboxes, tmp_path, "b", lease=1.5)
    await a.runner.start()
    gap = Gap(start=1000.0, end=1060.0, topics=GAP.topics, reason="service_crashed")
    job = await a.runner.enqueue_gap(gap)
    assert job is not None
    await asyncio.wait_for(a.filler.started.wait(), 10)
    first_lease = await lease_until(url, job.id)
    await b.runner.start()  # b starts while a runs the job: b must not take it
    assert b.runner.recovered == 0

    async def renewed() -> bool:
        return await lease_until(url, job.id) > first_lease

    await until(renewed)
    assert await b.runner.jobs.recover(now=2000.0) == 0  # a renews: its job stays its own
    assert await job_state(a, job.id) == ("running", 1, "a")
    assert b.filler.gaps == []

    await a.runner.stop()  # a dies: the job stays running, its lease is no longer renewed
    await until(lambda: _is_state(b, job.id, "done"))
    assert await job_state(b, job.id) == ("done", 2, "b")
    assert len(a.filler.gaps) == 1
    assert len(b.filler.gaps) == 1  # taken over once, run once there
    assert b.log.find("back-fill jobs whose runner stopped renewing them are queued again")
    await b.runner.stop()


class AwayFromDatabase(PostgresBackfillJobs):
    """Renewals fail while ``away`` is set, as when this instance loses the database for a while."""

    away = True

    async def renew(self, job_id: int) -> bool:
        if self.away:
            raise ConnectionError("the database does not answer")
        return await super().renew(job_id)


async def test_a_run_whose_lease_was_taken_over_meanwhile_stops(outboxes: Any, tmp_path: Path) -> None:
    hold = asyncio.Event()  # a's run would hang for ever: only losing the lease ends it
    a = await instance(outboxes, tmp_path, "a", lease=0.3, hold=hold, jobs_type=AwayFromDatabase)
    b = await instance(outboxes, tmp_path, "b", lease=LONG)
    await a.runner.start()
    job = await a.runner.enqueue_gap(Gap(start=1000.0, end=1060.0, topics=GAP.topics, reason="stall"))
    assert job is not None
    await asyncio.wait_for(a.filler.started.wait(), 10)
    # a's renewals fail; once its lease lapsed, b takes the job and runs it
    await until(lambda: b.runner.jobs.recover(now=2000.0))
    taken = await b.runner.attempt((await b.runner.jobs.due(now=2000.0))[0])
    assert taken is not None
    assert (taken.state, taken.owner) == ("done", "b")
    assert isinstance(a.runner.jobs, AwayFromDatabase)
    a.runner.jobs.away = False  # a reaches the database again: its next renewal finds the job b's

    async def stopped() -> bool:
        return a.runner.running_job is None

    await until(stopped)
    assert a.log.find("back-fill run stopped: another instance runs this job now")
    assert await job_state(b, job.id) == ("done", 2, "b")  # a's stale run changed nothing
    await a.runner.stop()


class ClaimsFail(PostgresBackfillJobs):
    """Every claim fails while ``away`` is set, as while PostgreSQL restarts."""

    away = True
    failures = 0

    async def claim(self, now: float) -> Any:
        if self.away:
            self.failures += 1
            raise ConnectionRefusedError("connection refused (PostgreSQL is restarting)")
        return await super().claim(now)


async def test_a_database_outage_is_one_line_in_the_back_fill_log(outboxes: Any, tmp_path: Path) -> None:
    a = await instance(outboxes, tmp_path, "a", lease=0.3, jobs_type=ClaimsFail)
    jobs = a.runner.jobs
    assert isinstance(jobs, ClaimsFail)
    await a.runner.start()
    try:
        await until(lambda: _at_least(jobs, 5))  # many passes of the loop fail
        problems = [line for line in a.log.lines if line[0] in ("warning", "error")]
        assert [p[1] for p in problems] == ["back-fill could not read or update its jobs"]
        assert "what_to_do" in problems[0][2]
        jobs.away = False
        await until(lambda: _logged(a, "back-fill reads and updates its jobs again"))
    finally:
        await a.runner.stop()


async def _at_least(jobs: ClaimsFail, n: int) -> bool:
    return jobs.failures >= n


async def _logged(inst: Instance, message: str) -> bool:
    return bool(inst.log.find(message))
