"""PostgreSQL restarts under a running ``gcbridge run`` with ``[ha]``, for longer than its shard leases.

Nobody else could take the leases while the database was down, so the instance keeps its subscriptions,
holds the events in memory, renews its leases at the same epochs once the database is back and writes what
it held: nothing is lost or stored twice, no gap is journalled, and the log says so in one line per part
that noticed (the outbox, the shard leases), plus the lines saying they work again: not one line per
renewal round.

The server is a throwaway cluster of the test's own (``tests/pg_cluster.py``), never the machine's.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import orjson
import pytest

from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.integration.pg_fixtures import throwaway_cluster
from tests.pg_cluster import ThrowawayCluster

from .test_service_e2e import Bridge, balance_books, sims, write_config
from .test_service_pg_restart import outbox_rows, traffic_under_way, use_postgres

__all__ = ["sims", "throwaway_cluster"]  # fixtures: imported so that pytest finds them

pytestmark = pytest.mark.slow

LEASE_TTL = 2.0
DOWN_FOR = 3 * LEASE_TTL  # the leases lapse while the database is away


async def journalled_gaps(url: str) -> list[str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [r["reason"] for r in await conn.fetch("SELECT reason FROM gaps")]
    finally:
        await conn.close()


async def test_a_postgresql_restart_longer_than_the_leases_under_ha_loses_and_duplicates_nothing(
    tmp_path: Path,
    sims: tuple[GenesysSim, ServiceNowSim],
    throwaway_cluster: ThrowawayCluster,
) -> None:
    gsim, snsim = sims
    cluster = throwaway_cluster
    config = write_config(tmp_path, sims)
    use_postgres(config, cluster.dsn)
    with config.open("a") as f:
        f.write(f'\n[ha]\ninstance_id = "solo"\nshards = 4\nlease_ttl = {LEASE_TTL}\n')
    bridge = Bridge(config, tmp_path / "bridge.log")
    await bridge.start()
    try:
        await traffic_under_way(bridge, gsim, snsim)
        await asyncio.to_thread(cluster.stop, "fast")
        await asyncio.sleep(DOWN_FOR)  # events keep arriving meanwhile: they must wait, not be lost
        assert bridge.proc is not None
        assert bridge.proc.returncode is None, bridge.tail()
        await asyncio.to_thread(cluster.start)
        await bridge.wait_ready()
        await asyncio.sleep(2)
        await gsim.stop_traffic()
        final_seq = len(gsim.ledger)
        await bridge.wait_settled()
    finally:
        code = await bridge.terminate(signal.SIGTERM)
    assert code == 0, bridge.tail()

    balance_books(tmp_path, gsim, snsim, final_seq, rows=await outbox_rows(cluster.dsn))
    # the instance never stopped receiving: a lapsed lease nobody took is no gap
    assert await journalled_gaps(cluster.dsn) == []

    log = bridge.log.read_text(errors="replace")
    assert "Traceback" not in log, log[:3000]
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    problems = [e["event"] for e in lines if e["level"] in ("warning", "error")]
    lease_lines = [p for p in problems if p.startswith("shard lease")]
    assert len(lease_lines) <= 1, problems  # not one per renewal round
    # the outbox, the shard leases, back-fill, and at most one more caller that noticed first
    assert len(problems) <= 4, problems
    events = [e["event"] for e in lines]
    assert any(e.startswith("outbox database reachable again") for e in events), problems
    if lease_lines:
        assert "shard leases renewed and rebalanced again" in events, problems
    assert not [e for e in events if e == "shards dropped"], problems
