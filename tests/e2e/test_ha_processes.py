"""Several ``gcbridge run`` processes on one PostgreSQL outbox (``[ha]``), against both simulators: fencing
of a paused owner, make-before-break rebalancing, and the takeover after a SIGKILL.

The books are kept from the database: ``outbox`` rows (``ingested_by`` names the instance that wrote each),
``shard_leases`` and ``gaps``."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from gcbridge.outbox.postgres import PostgresOutbox
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.ha_cluster import books
from tests.integration.pg_fixtures import create_schema, drop_schema, pg_database

from .bridge_process import GENESYS_CLIENT, Bridge, write_service_config
from .test_service_e2e import sims

__all__ = ["pg_database", "sims"]  # fixtures: imported so that pytest finds them

pytestmark = pytest.mark.slow

QUEUES = [f"5e1f{i:04d}-0000-4000-8000-00000000{i:04d}" for i in range(1, 9)]
TOPICS = [f"v2.routing.queues.{q}.conversations" for q in QUEUES]
TTL = 2.0


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


def write_config(
    tmp_path: Path, name: str, sims: tuple[GenesysSim, ServiceNowSim], url: str, *, shards: int
) -> Path:
    gsim, snsim = sims
    folder = tmp_path / name
    folder.mkdir()
    assert snsim.base_url is not None
    ha = f"""
[ha]
instance_id = "{name}"
shards = {shards}
lease_ttl = {TTL}
handoff_timeout = 10.0
handoff_overlap = 0.5
"""
    return write_service_config(
        folder, gsim.base_url, GENESYS_CLIENT, TOPICS, snsim.base_url, outbox_url=url, extra=ha
    )


async def wait_until(check: Callable[[], Any], what: str, limit: float = 60.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(0.1)


class Db:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def owners(self) -> dict[int, str | None]:
        rows = await self.pool.fetch(
            "SELECT shard, owner FROM shard_leases "
            "WHERE owner IS NOT NULL AND expires_at > extract(epoch from clock_timestamp())"
        )
        return {r["shard"]: r["owner"] for r in rows}

    async def owned_by(self, name: str) -> set[int]:
        return {s for s, o in (await self.owners()).items() if o == name}

    async def written_by(self, name: str) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM outbox WHERE ingested_by = $1", name))

    async def gaps(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("SELECT * FROM gaps ORDER BY id")
        return [dict(r) | {"topics": orjson.loads(r["topics"])} for r in rows]

    async def sequences(self) -> list[int]:
        rows = await self.pool.fetch("SELECT payload FROM outbox ORDER BY id")
        return [orjson.loads(r["payload"])["metadata"]["simSequence"] for r in rows]


@pytest.fixture
async def db(url: str) -> AsyncIterator[Db]:
    await (await PostgresOutbox.open(url)).close()  # the schema, before the instances race to create it
    async with asyncpg.create_pool(url, min_size=1, max_size=2) as pool:
        yield Db(pool)


async def start(
    tmp_path: Path, name: str, sims: tuple[GenesysSim, ServiceNowSim], url: str, shards: int
) -> Bridge:
    bridge = Bridge(write_config(tmp_path, name, sims, url, shards=shards), tmp_path / f"{name}.log")
    await bridge.start()
    return bridge


async def stop_all(*bridges: Bridge) -> None:
    for b in bridges:
        await b.kill()  # a SIGSTOPped one too


async def test_a_sigstopped_owner_writes_nothing_after_it_resumes(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim], url: str, db: Db
) -> None:
    # One shard: once b holds it, a has no share to get back, so every row a writes after it resumes would
    # be a write under a lease it lost.
    gsim, _ = sims
    a = await start(tmp_path, "a", sims, url, shards=1)
    b: Bridge | None = None
    try:
        await wait_until(lambda: _all_owned_by(db, {"a"}, 1), "a owns every shard")
        gsim.start_traffic(300.0, TOPICS)
        await wait_until(lambda: db.written_by("a"), "a writes events")
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # paused mid-stream: likely inside a write
        b = await start(tmp_path, "b", sims, url, shards=1)
        await wait_until(lambda: _all_owned_by(db, {"b"}, 1), "b owns every shard after a's leases ran out")
        before = await db.written_by("a")
        await asyncio.sleep(0.5)  # more events reach a's sockets while it is paused
        a.proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: _logged(a, '"shards dropped"'), "a drops its shards after it resumes")
        await asyncio.sleep(2.0)  # an observation window: nothing of a may appear in it
        assert await db.written_by("a") == before, "a paused past its lease wrote after it resumed"
        await gsim.stop_traffic()
        assert await a.terminate() == 0, a.tail()
        assert await b.terminate() == 0, b.tail()
        # what a held when it lost the shards is inside the gap b reported, nothing is stored twice
        missing, twice = books(gsim, await db.sequences(), await db.gaps())
        assert twice == []
        assert missing == [], f"{len(missing)} events neither stored nor in a gap"
    finally:
        await stop_all(a, *([b] if b else []))


async def test_a_joining_and_a_leaving_instance_move_shards_make_before_break_without_a_gap(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim], url: str, db: Db
) -> None:
    gsim, _ = sims
    a = await start(tmp_path, "a", sims, url, shards=4)
    b: Bridge | None = None
    try:
        await wait_until(lambda: _all_owned_by(db, {"a"}, 4), "a owns every shard")
        gsim.start_traffic(100.0, TOPICS)
        await wait_until(lambda: db.written_by("a"), "a writes events")
        b = await start(tmp_path, "b", sims, url, shards=4)
        await wait_until(lambda: _split(db, {"a": 2, "b": 2}), "the shards are shared 2 and 2")
        await wait_until(lambda: db.written_by("b"), "b writes events")
        assert await b.terminate() == 0, b.tail()  # SIGTERM: hands its shards back to a first
        assert await db.owned_by("a") == {0, 1, 2, 3}
        written = await db.written_by("a")
        await wait_until(lambda: _more(db, "a", written), "a writes the events of b's former shards")
        await gsim.stop_traffic()
        assert await a.terminate() == 0, a.tail()
        gaps = await db.gaps()
        assert gaps == [], gaps
        missing, twice = books(gsim, await db.sequences(), gaps)
        assert twice == []
        assert missing == [], f"{len(missing)} events lost in a planned move"
        assert '"shards released without a taker"' not in b.log.read_text()
    finally:
        await stop_all(a, *([b] if b else []))


async def test_a_sigkilled_owner_is_replaced_after_its_ttl_and_the_taker_reports_one_gap(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim], url: str, db: Db
) -> None:
    gsim, _ = sims
    a = await start(tmp_path, "a", sims, url, shards=2)
    b: Bridge | None = None
    try:
        await wait_until(lambda: _all_owned_by(db, {"a"}, 2), "a owns every shard")
        b = await start(tmp_path, "b", sims, url, shards=2)
        await wait_until(lambda: _split(db, {"a": 1, "b": 1}), "one shard each")
        gsim.start_traffic(100.0, TOPICS)
        await wait_until(lambda: db.written_by("a"), "a writes events")
        (a_shard,) = await db.owned_by("a")
        await a.kill()
        await wait_until(lambda: _all_owned_by(db, {"b"}, 2), "b takes a's shard after the TTL")
        written = await db.written_by("b")
        await wait_until(lambda: _more(db, "b", written), "b writes on")
        await gsim.stop_traffic()
        assert await b.terminate() == 0, b.tail()
        gaps = await db.gaps()
        assert [(g["recorded_by"], g["shard"], g["reason"]) for g in gaps] == [
            ("b", a_shard, "service_crashed")
        ]
        assert gaps[0]["end_at"] - gaps[0]["start_at"] >= TTL * 2 / 3
        missing, twice = books(gsim, await db.sequences(), gaps)
        assert twice == []
        assert missing == [], f"{len(missing)} events lost outside the reported gap"
    finally:
        await stop_all(a, *([b] if b else []))


async def _all_owned_by(db: Db, names: set[str], shards: int) -> bool:
    owners = await db.owners()
    return len(owners) == shards and set(owners.values()) <= names


async def _split(db: Db, counts: dict[str, int]) -> bool:
    owners = list((await db.owners()).values())
    return all(owners.count(n) == c for n, c in counts.items())


async def _more(db: Db, name: str, than: int) -> bool:
    return await db.written_by(name) > than


async def _logged(bridge: Bridge, text: str) -> bool:
    return bridge.log.exists() and text in bridge.log.read_text(errors="replace")
