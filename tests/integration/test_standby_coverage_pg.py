"""A hot standby's coverage against a real PostgreSQL: the instance that takes over a dead owner's shard
journals no gap for what the standby delivered, journals what it did not, and settles the tail that only a
live standby could still cover once the standby has published past it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gcbridge.outbox.pg_standby import StandbyCoverageStore

from .pg_fixtures import create_schema, drop_schema, pg_database
from .test_shard_leases_pg import TTL, close, instance, lease

__all__ = ["pg_database"]  # a fixture: imported so that pytest finds it

TOPIC = "v2.users.u.presence"


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


async def gaps(url: str) -> list[tuple[float, float, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT start_at, end_at, reason FROM gaps ORDER BY id")
    finally:
        await conn.close()
    return [(r["start_at"], r["end_at"], r["reason"]) for r in rows]


async def crash_owner(url: str, standby: StandbyCoverageStore | None, since: float) -> tuple[object, ...]:
    """Owner ``a`` takes shard 0 and stops renewing (dies); the standby (if any) keeps publishing until
    the lease has run out. Returns (a, b, stale lease row)."""
    a, b = await instance(url, "a"), await instance(url, "b")
    first = await a.leases.take(0, await lease(a, 0), TTL, topics=[TOPIC])
    assert first is not None
    assert await a.leases.renew({0: first.epoch}, TTL, channels_in_use=1) == {0}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TTL + 0.3
    while loop.time() < deadline:
        if standby is not None:
            await standby.publish(since, time.time(), [TOPIC], time.time())
        await asyncio.sleep(0.1)
    return a, b, await lease(b, 0)


async def test_a_takeover_journals_no_gap_for_what_a_live_standby_covered(url: str) -> None:
    since = time.time() - 5
    a, b = await instance(url, "warmup"), None
    await close(a)  # the schema exists before the standby writes
    pool = await asyncpg.create_pool(url, min_size=0, max_size=2)
    standby = StandbyCoverageStore(pool, "standby-1")
    a, b, seen = await crash_owner(url, standby, since)
    try:
        taken = await b.leases.take(0, seen, TTL, topics=[TOPIC])  # type: ignore[attr-defined]
        assert taken is not None
        assert taken.gap is None, taken.gap  # nothing definite: the standby was live throughout
        assert taken.provisional, "the standby's last publish lags the takeover: its tail is undecided"
        # the standby keeps receiving and publishes past the takeover (its last frame a second later)
        await asyncio.sleep(1.2)
        await standby.publish(since, time.time(), [TOPIC], time.time())
        assert await b.leases.settle(taken) == []  # type: ignore[attr-defined]
        assert await gaps(url) == []
    finally:
        await close(a, b)  # type: ignore[arg-type]
        await pool.close()


async def test_a_standby_that_went_silent_leaves_the_rest_of_the_gap(url: str) -> None:
    a, b = await instance(url, "warmup"), None
    await close(a)
    pool = await asyncpg.create_pool(url, min_size=0, max_size=2)
    standby = StandbyCoverageStore(pool, "standby-1")
    since = time.time() - 5
    await standby.publish(since, time.time(), [TOPIC], time.time())
    silent_from = time.time()
    a, b, seen = await crash_owner(url, None, since)  # the standby publishes nothing more
    try:
        await asyncio.sleep(0.2)
        taken = await b.leases.take(0, seen, TTL, topics=[TOPIC])  # type: ignore[attr-defined]
        assert taken is not None
        # it published a moment ago, so it may yet prove to have covered the interval: undecided
        assert taken.gap is None
        assert taken.provisional
        settled = await b.leases.settle(taken)  # it published nothing more: the hole is journalled now
        journal = await gaps(url)
        assert [(e["start"], e["end"]) for e in settled] == [(s, e) for s, e, _ in journal]
        assert len(journal) == 1, journal
        start, end, reason = journal[0]
        # the owner covered until it stopped renewing (after the standby's last publish): from there on
        assert start >= silent_from - 0.5, (journal, silent_from)
        assert end - start >= TTL
        assert reason == "service_crashed"
    finally:
        await close(a, b)  # type: ignore[arg-type]
        await pool.close()


async def test_no_standby_no_change_a_takeover_gap_is_journalled_at_once(url: str) -> None:
    a, b, seen = await crash_owner(url, None, 0.0)
    try:
        taken = await b.leases.take(0, seen, TTL, topics=[TOPIC])  # type: ignore[attr-defined]
        assert taken is not None
        assert taken.gap is not None
        assert taken.provisional == ()
        assert len(await gaps(url)) == 1
    finally:
        await close(a, b)  # type: ignore[arg-type]
