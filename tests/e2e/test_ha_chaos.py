"""The chaos must-show: three ``gcbridge run`` instances on one PostgreSQL outbox, one SIGKILLed at random
every 20-40 s and restarted, while events flow, for a few minutes (``GCBRIDGE_CHAOS_SECONDS``, default 150).

Checked throughout: no shard claimed by two instances at one epoch (each instance's own ``/status``), never
more than 20 channels per OAuth client (counted by the Genesys simulator at every channel creation).
Checked at the end: every event written to a bridge socket is stored exactly once or inside a reported gap
(with a hot standby on a second OAuth client: no gap at all), ServiceNow holds no duplicate record.

Run: ``.venv/bin/pytest -m chaos tests/e2e/test_ha_chaos.py`` (``GCBRIDGE_CHAOS_SECONDS=600`` for longer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gcbridge.outbox.postgres import PostgresOutbox
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.ha_cluster import OWNER_CLIENT, STANDBY_CLIENT, HaCluster, books, servicenow_duplicates
from tests.integration.pg_fixtures import create_schema, drop_schema, pg_database

from .bridge_process import started_sims

__all__ = ["pg_database"]  # a fixture: imported so that pytest finds it

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

QUEUES = [f"5e1f{i:04d}-0000-4000-8000-00000000{i:04d}" for i in range(1, 9)]
TOPICS = [f"v2.routing.queues.{q}.conversations" for q in QUEUES]
SHARDS = 6
TTL = 3.0
RATE = 60.0  # events per second
KILL_EVERY = (20.0, 40.0)
SECONDS = float(os.environ.get("GCBRIDGE_CHAOS_SECONDS", "150"))
CHANNEL_LIMIT = 20


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = await create_schema(pg_database, schema)
    await (await PostgresOutbox.open(url)).close()  # the schema, before the instances race to create it
    yield url
    await drop_schema(pg_database, schema)


@pytest.fixture
async def sims() -> AsyncIterator[tuple[GenesysSim, ServiceNowSim]]:
    async with started_sims(21, clients=(OWNER_CLIENT, STANDBY_CLIENT)) as both:
        yield both


async def run_chaos(cluster: HaCluster, gsim: GenesysSim, seconds: float, rng: random.Random) -> int:
    """Kill one of a, b, c every 20-40 s and restart it 1-5 s later; returns how many kills."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    kills = 0
    while loop.time() + KILL_EVERY[0] < end:
        await asyncio.sleep(rng.uniform(*KILL_EVERY))
        victim = rng.choice(["a", "b", "c"])
        await cluster.kill(victim)
        kills += 1
        await asyncio.sleep(rng.uniform(1.0, 5.0))
        await cluster.bridges[victim].start()
    await asyncio.sleep(max(0.0, end - loop.time()))
    return kills


@pytest.mark.timeout(SECONDS + 420)  # the chaos itself, plus start-up, settling and the books
@pytest.mark.parametrize("standby", [False, True], ids=["three-owners", "three-owners-and-a-hot-standby"])
async def test_three_instances_one_killed_every_20_to_40_s(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim], url: str, standby: bool
) -> None:
    gsim, snsim = sims
    cluster = HaCluster(tmp_path, gsim, snsim, url, topics=TOPICS, shards=SHARDS, ttl=TTL)
    await cluster.open()
    stop = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    try:
        for name in ("a", "b", "c"):
            await cluster.add(name).start()
        if standby:
            await cluster.add("standby", standby=True).start()
        await cluster.wait_owned()
        sampler = asyncio.create_task(cluster.sampler(stop))
        gsim.start_traffic(RATE, TOPICS)
        kills = await run_chaos(cluster, gsim, SECONDS, random.Random(7))
        await cluster.wait_owned()  # every shard has a live owner again
        await asyncio.sleep(2.0)
        await gsim.stop_traffic()
        await cluster.wait_settled()
        stop.set()
        await sampler
        for bridge in cluster.bridges.values():
            assert await bridge.terminate() == 0, bridge.tail()

        samples = cluster.samples
        assert kills >= 1
        assert samples.rounds > 10
        assert samples.double_claims == [], samples.double_claims[:5]
        assert max(samples.peak_channels.values()) <= CHANNEL_LIMIT, samples.peak_channels
        gaps = await cluster.gaps()
        stored = await cluster.sequences()
        missing, twice = books(gsim, stored, gaps)
        f = sorted(samples.failovers)
        print(  # shown with -s: what this run went through
            f"\nchaos {SECONDS:g} s, standby={standby}: {kills} kills, {len(f)} shard failovers "
            f"(median {f[len(f) // 2] if f else 0:.2f} s), {len(stored)} events stored, {len(gaps)} gaps "
            f"({sum(g['seconds'] for g in gaps):.1f} s), {samples.rounds} samples, peak channels per client "
            f"{samples.peak_channels}"
        )
        assert twice == [], f"{len(twice)} events stored twice"
        assert missing == [], f"{len(missing)} events neither stored nor inside a reported gap; gaps {gaps}"
        if standby:
            assert gaps == [], f"a hot standby covered every takeover, yet gaps were reported: {gaps}"
        assert (
            servicenow_duplicates(snsim.records("interaction"), lambda r: r.get("correlation_id", "")) == []
        )
    finally:
        stop.set()
        if sampler is not None:
            with contextlib.suppress(Exception):
                await sampler
        await cluster.close()
