"""The service's back-fill jobs with the library's real Backfiller against the simulated org: a job under a
429 storm finishes later without exceeding the request limit, counted where it matters, at the simulator.

Time is compressed for the pacing only: the back-filler's monotonic clock and its sleeps run ``SCALE`` times
faster than real time, so its "minute" lasts ``60 / SCALE`` real seconds, and the simulator-side count uses
windows of the same real length. Everything else (HTTP, the job store, the outbox) is real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.backfill_runner import BackfillRunner, BackfillSettings
from gcbridge.bridge.gaps import GapJournal
from gcbridge.bridge.mapping import compile_mapping
from gcbridge.core.backfill_rules import RetryPolicy
from gcbridge.genesys import Backfiller, BackfillOptions, Gap, TokenManager
from gcbridge.genesys.regions import hosts_for_base_url
from gcbridge.genesys.rest import new_session
from gcbridge.outbox import SqliteOutbox
from gcbridge.outbox.backfill_sqlite import SqliteBackfillJobs
from gcbridge.sim.genesys import GenesysSim, SimConfig
from gcbridge.sim.genesys.org import OrgSettings

from .backfill_fakes import RecordingLog

SCALE = 10.0  # the back-filler's minute lasts 6 real seconds
FINAL = ("done", "partial", "failed")
CAP = 12  # [backfill] max_requests_per_minute
START = 1_800_000_000.0


class CountingSim(GenesysSim):
    """The simulator, recording the arrival (loop time) of every /api/ request, answered or refused."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.arrivals: list[tuple[float, str]] = []

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def count(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path.startswith("/api/"):
                self.arrivals.append((asyncio.get_running_loop().time(), request.path))
            return await handler(request)

        app.middlewares.insert(0, count)
        return app


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[CountingSim]:
    s = CountingSim(
        SimConfig(
            api_rate_limit_per_min=None,
            org=OrgSettings(seed=11, users=6, queues=2, time_scale=0, start=START),
        )
    )
    await s.start("127.0.0.1", 0)
    try:
        yield s
    finally:
        await s.stop()


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


async def test_a_job_under_a_429_storm_finishes_later_within_the_limit(
    sim: CountingSim, tmp_path: Path
) -> None:
    org = sim.org
    assert org is not None
    org.advance_by(3600)
    gap_start = org.world.now
    org.advance_by(600)
    world = org.world
    topics = [f"v2.routing.queues.{q}.conversations" for q in world.queues]
    topics += [f"v2.users.{u}.presence" for u in world.users]
    gap = Gap(gap_start, world.now, tuple(topics), "socket_dropped")
    org.advance_by(60)

    loop = asyncio.get_running_loop()
    origin = time.monotonic()
    session = new_session()
    hosts = hosts_for_base_url(sim.base_url)
    tokens = TokenManager(session, hosts.token_url, sim.config.client_id, sim.config.client_secret)
    filler = Backfiller(
        tokens,
        session,
        hosts.api_base,
        # at most 4 429s in a row per request: a longer storm fails the attempt, and the job is retried
        options=BackfillOptions(margin=60.0, page_size=100, max_requests_per_minute=CAP, max_rate_limited=4),
        clock=lambda: world.now,
        monotonic=lambda: origin + (time.monotonic() - origin) * SCALE,
        sleep=lambda seconds: asyncio.sleep(seconds / SCALE),
    )
    outbox = await SqliteOutbox.open(tmp_path / "outbox.db")
    log = RecordingLog()
    runner = BackfillRunner(
        await SqliteBackfillJobs.open(outbox),
        outbox,
        filler,
        compile_mapping(),
        GapJournal(tmp_path / "gaps.jsonl"),
        BackfillMetrics(CollectorRegistry()),
        log,
        settings=BackfillSettings(delay=0.0, retry=RetryPolicy(initial=0.5, cap=1.0, max_attempts=4)),
        clock=lambda: (
            world.now + (time.monotonic() - origin)
        ),  # the org's time (its clock is stopped), running
    )
    storm = 10
    sim.fail_next_rest(storm, 429, retry_after=10)  # 10 s each, as the back-filler sees it (1 s real)
    began = loop.time()
    await runner.start()
    try:
        job = await runner.enqueue_gap(gap)
        assert job is not None
        deadline = loop.time() + 60
        while (current := await runner.jobs.get(job.id)) is not None and current.state not in FINAL:
            assert loop.time() < deadline, (current, len(sim.arrivals), log.lines)
            await asyncio.sleep(0.1)
    finally:
        await runner.close()
        await session.close()
    assert current is not None
    assert current.state == "done", current.outcome
    assert current.attempts >= 2  # the storm failed the first attempt; the job finished on a retry
    assert log.find("back-fill attempt failed; retrying later")
    assert current.outcome.events_written > 0
    assert (await outbox.stats(time.time())).pending == current.outcome.events_written
    await outbox.close()
    # the simulator's side: every /api/ request, the refused ones included, at most CAP in any minute
    times = [t for t, _ in sim.arrivals if t >= began]
    assert len(times) > 2 * CAP  # enough requests that pacing had to hold some back
    assert most_in_any_window(times, 60.0 / SCALE) <= CAP
    assert sim.faults.api == type(sim.faults.api)()  # the whole storm was answered
    assert loop.time() - began >= storm * 10 / SCALE  # each 429's Retry-After was waited out
