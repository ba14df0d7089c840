"""PostgreSQL restarts under a running ``gcbridge run`` while events flow.

The bridge waits and resumes by itself: it keeps running (no exit, no crash loop), its readiness names the
unreachable outbox database in one reason, its log says so once (not once per failed call, no tracebacks), and
afterwards the books balance: every event published to the bridge is in the outbox exactly once and delivered,
and ServiceNow holds exactly one record per conversation with the last state.

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

from .test_service_e2e import RATE, TOPICS, Bridge, balance_books, sims, write_config

__all__ = ["sims", "throwaway_cluster"]  # fixtures: imported so that pytest finds them

pytestmark = pytest.mark.slow

DOWN_FOR = 6.0  # seconds PostgreSQL stays down while events keep arriving


def use_postgres(config: Path, url: str) -> None:
    """The SQLite outbox of ``write_config`` moved to PostgreSQL (the gap journal stays beside ``path``)."""
    text = config.read_text()
    config.write_text(text.replace('path = "state/outbox.db"', f'path = "state/outbox.db"\nurl = "{url}"'))


async def outbox_rows(url: str) -> list[tuple[bytes, int]]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [
            (r["payload"], r["state"])
            for r in await conn.fetch("SELECT payload, state FROM outbox ORDER BY id")
        ]
    finally:
        await conn.close()


async def traffic_under_way(bridge: Bridge, gsim: GenesysSim, snsim: ServiceNowSim) -> None:
    """The bridge ready, traffic flowing, and the first deliveries in ServiceNow."""
    await bridge.wait_ready()
    gsim.start_traffic(RATE, TOPICS)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(snsim.records("interaction")) < 5:  # deliveries are under way
        assert loop.time() < deadline, bridge.tail()
        await asyncio.sleep(0.2)


async def readiness_while(bridge: Bridge, done: asyncio.Event) -> list[list[str]]:
    """Every readiness reason list seen until ``done``; the process must stay up throughout."""
    seen: list[list[str]] = []
    while not done.is_set():
        assert bridge.proc is not None
        assert bridge.proc.returncode is None, f"bridge exited:\n{bridge.tail()}"
        doc = await bridge.status()
        if doc is not None:
            seen.append(list(doc["readiness"]["reasons"]))
        await asyncio.sleep(0.25)
    return seen


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgresql_restart_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path,
    sims: tuple[GenesysSim, ServiceNowSim],
    throwaway_cluster: ThrowawayCluster,
    mode: str,
) -> None:
    gsim, snsim = sims
    cluster = throwaway_cluster
    config = write_config(tmp_path, sims)
    use_postgres(config, cluster.dsn)
    bridge = Bridge(config, tmp_path / "bridge.log")
    await bridge.start()
    try:
        await traffic_under_way(bridge, gsim, snsim)

        done = asyncio.Event()
        watcher = asyncio.create_task(readiness_while(bridge, done))
        await asyncio.to_thread(cluster.stop, mode)
        await asyncio.sleep(DOWN_FOR)  # events keep arriving meanwhile: they must wait, not be lost
        down_reasons = [r for reasons in await _stop(watcher, done) for r in reasons]
        await asyncio.to_thread(cluster.start)
        await bridge.wait_ready()

        await asyncio.sleep(2)
        await gsim.stop_traffic()
        final_seq = len(gsim.ledger)
        await bridge.wait_settled()
    finally:
        code = await bridge.terminate(signal.SIGTERM)
    assert code == 0, bridge.tail()

    outage = [r for r in down_reasons if "outbox" in r]
    assert outage, f"readiness never named the outbox while PostgreSQL was down: {set(down_reasons)}"
    assert all("\n" not in r for r in outage), outage
    gaps = balance_books(tmp_path, gsim, snsim, final_seq, rows=await outbox_rows(cluster.dsn))
    assert gaps == [], f"a database restart is not a gap in the notifications: {gaps}"

    log = bridge.log.read_text(errors="replace")
    assert "Traceback" not in log, log[:3000]
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    problems = [e for e in lines if e["level"] in ("warning", "error")]
    # one line when the database went away, at most one per kind of caller that noticed before it did
    assert len(problems) <= 3, [e["event"] for e in problems]
    assert all(e.get("what_to_do") for e in problems), problems
    assert any(e["event"].startswith("outbox database reachable again") for e in lines), problems


async def _stop(task: asyncio.Task[list[list[str]]], done: asyncio.Event) -> list[list[str]]:
    done.set()
    return await task
