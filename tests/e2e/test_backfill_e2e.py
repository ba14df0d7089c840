"""Issue #14: after back-fill, ServiceNow holds what it would have held had no event been lost.

One seeded simulated org, two runs of the service as real processes (``gcbridge run`` against ``gcbridge sim
genesys --org`` and ``gcbridge sim servicenow``), side by side on one org clock (see ``org_runs``): the clean
run hears every event; the faulty run loses a dropped socket, a stall and 60 s of being SIGKILLed, while
conversations start and end. Once the faulty run's back-fill jobs are done (gap journal and ``/status``),
both ServiceNow instances hold the same records: one interaction per conversation in its final state,
presence per agent, counts per queue, equal field by field except the fields ``sn_compare.PER_RUN_FIELDS``
lists with the reason each differs by nature (record ids, instance timestamps, write counts, the moment the
service received an event).
"""

from __future__ import annotations

import asyncio
import calendar
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import wait_for
from .org_runs import OrgRun, org_runs
from .sn_compare import TABLES, differences, keyed

pytestmark = pytest.mark.slow

SEED = 14
LIVE = 5.0  # seconds of undisturbed traffic between faults
KILLED_FOR = 60.0  # seconds the service stays SIGKILLed
REST_DELAY = 0.15  # seconds each REST answer takes after the restart


async def snapshot(run: OrgRun) -> dict[str, dict[str, dict[str, str]]]:
    return {table: keyed(table, await run.records(table)) for table in TABLES}


def epoch(servicenow_time: str) -> float:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) as epoch seconds."""
    return calendar.timegm(time.strptime(servicenow_time, "%Y-%m-%d %H:%M:%S"))


def only_backfilled(payloads: list[dict[str, Any]]) -> set[str]:
    """Conversations the outbox holds back-filled events of only: the service never heard of them live."""
    live, backfill = set(), set()
    for payload in payloads:
        if payload["topicName"].endswith(".conversations"):
            is_backfill = "backfill" in payload.get("metadata", {})
            (backfill if is_backfill else live).add(payload["eventBody"]["id"])
    return backfill - live


async def test_two_clean_runs_of_one_org_leave_the_same_records(tmp_path: Path) -> None:
    async with org_runs(tmp_path, ["first", "second"], SEED) as (runs, clock):
        clock.follow_wall_clock()
        await asyncio.sleep(20)
        await clock.freeze()
        await asyncio.gather(*(run.settled() for run in runs))
        first, second = [await snapshot(run) for run in runs]
    assert len(first["interaction"]) > 20
    assert all(r["u_presence"] and r["u_routing_status"] for r in first["u_genesys_presence"].values())
    assert len(first["u_genesys_presence"]) == 8
    assert len(first["u_genesys_queue_stats"]) == 2
    assert all(r["u_on_queue_idle"] and r["u_waiting"] for r in first["u_genesys_queue_stats"].values())
    lines = [line for table in TABLES for line in differences(table, first[table], second[table])]
    assert not lines, "\n".join(lines)


async def new_gap(run: OrgRun, count: int, what: str) -> dict[str, Any]:
    """Until the journal holds ``count`` gaps; the last of them."""
    await wait_for(lambda: len(gaps_of(run)) >= count, limit=60, what=f"{run.name}: the gap of {what}")
    return gaps_of(run)[-1]


def gaps_of(run: OrgRun) -> list[dict[str, Any]]:
    return [line for line in run.journal() if "backfill" not in line]


def backfills_of(run: OrgRun) -> list[dict[str, Any]]:
    """The journal's back-fill outcomes (each names its gap)."""
    return [line for line in run.journal() if "backfill" in line]


def backfilled(run: OrgRun, gaps: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The final outcome of each gap's back-fill job, once every gap has one (a job that will be retried
    is not final)."""
    final = {}
    for line in backfills_of(run):
        if line["backfill"]["state"] != "pending":
            final[(line["gap"]["start"], line["gap"]["end"])] = line["backfill"]
    outcomes = [final.get((g["start"], g["end"])) for g in gaps]
    return None if None in outcomes else outcomes  # type: ignore[return-value]


async def inflict_faults(run: OrgRun) -> list[dict[str, Any]]:
    """A socket drop, a stall, and the service SIGKILLed for KILLED_FOR seconds, with live periods between;
    returns the gaps the service journalled for them."""
    await asyncio.sleep(LIVE)
    await run.genesys_control("drop_socket")
    dropped = await new_gap(run, 1, "the dropped socket")
    await asyncio.sleep(LIVE)
    await run.genesys_control("stall_socket")
    stalled = await new_gap(run, 2, "the stall")
    await run.genesys_control("resume_socket")
    await asyncio.sleep(LIVE)
    bridge = run.bridge
    assert bridge.proc is not None
    bridge.proc.kill()
    await bridge.proc.wait()
    await asyncio.sleep(KILLED_FOR)
    await bridge.start()
    await bridge.wait_ready()
    # Slow REST answers: the kill's back-fill job then takes seconds, as a large org's does, while live
    # events for the same records keep arriving.
    await run.genesys_control("rest_delay", seconds=REST_DELAY)
    killed = await new_gap(run, 3, "the kill")
    await asyncio.sleep(LIVE)
    return [dropped, stalled, killed]


@pytest.mark.timeout(300)  # a minute of it is the kill
async def test_after_back_fill_a_faulty_run_leaves_what_a_clean_run_leaves(tmp_path: Path) -> None:
    async with org_runs(tmp_path, ["clean", "faulty"], SEED) as (runs, clock):
        clean, faulty = runs
        clock.follow_wall_clock()
        gaps = await inflict_faults(faulty)
        await clock.freeze()
        outcomes = await wait_for(lambda: backfilled(faulty, gaps), limit=120, what="every gap back-filled")
        await asyncio.gather(*(run.settled() for run in runs))
        expected, actual = await snapshot(clean), await snapshot(faulty)
        status = await faulty.bridge.status()
        worlds = [await run.sim("GET", f"{run.genesys.base_url}/_sim/org") for run in runs]
    # the same world: the same simulated span, the same events published
    assert worlds[0] == worlds[1], "the two orgs differ"
    assert gaps_of(clean) == [], "the clean run had a gap"
    assert status is not None
    jobs = {state: n for state, n in status["backfill"]["jobs"].items() if n}
    assert jobs == {"done": 3}, status["backfill"]
    reasons = [g["reason"] for g in gaps]
    assert reasons[0] == "closed_1006", gaps
    assert reasons[2] == "service_crashed", gaps
    assert reasons[1] in ("heartbeat_timeout", "pong_timeout"), gaps  # whichever notices the stall first
    assert [o["state"] for o in outcomes] == ["done"] * 3, outcomes
    assert outcomes[2]["events_written"] > 0, outcomes[2]  # the kill hid events that back-fill found
    lines = [line for table in TABLES for line in differences(table, expected[table], actual[table])]
    assert not lines, f"{len(lines)} differences:\n" + "\n".join(lines)

    # Among them, conversations that began and ended while the service was dead: nothing live, all back-fill.
    unseen = only_backfilled(faulty.outbox_payloads())
    killed = gaps[2]
    inside = [
        key
        for key, record in expected["interaction"].items()
        if key in unseen
        and record["state"] == "closed_complete"
        and killed["start"] <= epoch(record["start_time"])
        and epoch(record["end_time"]) < killed["end"]
    ]
    assert inside, f"no conversation started and ended inside the kill gap {killed}"
    written = [o["events_written"] for o in outcomes]
    found = [o["events_found"] for o in outcomes]
    print(  # what the run covered (pytest -s)
        f"{len(expected['interaction'])} conversations, {len(unseen)} known from back-fill only, "
        f"{len(inside)} within the kill gap; gaps {[(g['reason'], g['seconds']) for g in gaps]}; "
        f"back-fill events written {written} of found {found}"
    )
