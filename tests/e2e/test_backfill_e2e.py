"""Issue #14: after back-fill, ServiceNow holds what it would have held had no event been lost.

One seeded simulated org, two runs of the service as real processes (``gcbridge run`` against ``gcbridge sim
genesys --org`` and ``gcbridge sim servicenow``), side by side on one org clock (see ``org_runs``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .org_runs import OrgRun, org_runs
from .sn_compare import TABLES, differences, keyed

pytestmark = pytest.mark.slow

SEED = 14


async def settled(run: OrgRun) -> None:
    await run.bridge.wait_settled()


async def snapshot(run: OrgRun) -> dict[str, dict[str, dict[str, str]]]:
    return {table: keyed(table, await run.records(table)) for table in TABLES}


async def test_two_clean_runs_of_one_org_leave_the_same_records(tmp_path: Path) -> None:
    async with org_runs(tmp_path, ["first", "second"], SEED) as (runs, clock):
        clock.follow_wall_clock()
        await asyncio.sleep(20)
        await clock.freeze()
        await asyncio.gather(*(settled(run) for run in runs))
        first, second = [await snapshot(run) for run in runs]
    assert len(first["interaction"]) > 20
    assert all(r["u_presence"] and r["u_routing_status"] for r in first["u_genesys_presence"].values())
    assert len(first["u_genesys_presence"]) == 8
    assert len(first["u_genesys_queue_stats"]) == 2
    lines = [line for table in TABLES for line in differences(table, first[table], second[table])]
    assert not lines, "\n".join(lines)
