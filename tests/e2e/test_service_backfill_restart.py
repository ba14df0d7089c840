"""Back-fill with the service as a real process against the simulated org: a job interrupted by a restart
(SIGKILL while the job reads the org, which answers slowly meanwhile) finishes after it; ``gcbridge
backfill`` without a running service fills the outbox for the service's next run."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gcbridge.sim.genesys.org import OrgSettings
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .bridge_process import GENESYS_CLIENT, Bridge, started_sims, write_service_config
from .conftest import GENESYS_SECRET, run_gcbridge

pytestmark = pytest.mark.slow


@pytest.fixture
async def sims() -> AsyncIterator[tuple[GenesysSim, ServiceNowSim]]:
    org = OrgSettings(seed=5, users=4, queues=2, time_scale=0, start=time.time() - 3600)
    async with started_sims(5, org=org) as (gsim, snsim):
        assert gsim.org is not None
        gsim.org.advance_by(3600)  # an hour of calls, up to about now
        yield gsim, snsim


def write_config(tmp_path: Path, gsim: GenesysSim, snsim: ServiceNowSim, topics: list[str]) -> Path:
    assert snsim.base_url is not None
    return write_service_config(
        tmp_path,
        gsim.base_url,
        GENESYS_CLIENT,
        topics,
        snsim.base_url,
        log_level="info",
        extra="[backfill]\ndelay = 0.0\n",
    )


async def backfill_doc(bridge: Bridge) -> dict[str, Any]:
    doc = await bridge.status()
    return (doc or {}).get("backfill") or {}


async def test_a_job_killed_with_the_service_finishes_after_the_restart(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, snsim = sims
    assert gsim.org is not None
    world = gsim.org.world
    topics = [f"v2.routing.queues.{q}.conversations" for q in world.queues]
    topics += [f"v2.users.{u}.presence" for u in world.users]
    bridge = Bridge(write_config(tmp_path, gsim, snsim, topics), tmp_path / "bridge.log")
    loop = asyncio.get_running_loop()
    await bridge.start()
    await bridge.wait_ready()
    assert bridge.url is not None
    gsim.set_rest_delay(0.5)  # every REST answer takes half a second: the job runs for a while

    async def ask() -> None:
        now = time.time()
        with contextlib.suppress(aiohttp.ClientError):  # the service dies under the request
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{bridge.url}/backfill", json={"from": now - 1800, "to": now - 60}) as r,
            ):
                await r.read()

    request = asyncio.create_task(ask())
    deadline = loop.time() + 60
    while (running := (await backfill_doc(bridge)).get("running")) is None:
        assert loop.time() < deadline, f"the job never ran:\n{bridge.tail()}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # a few requests into the job
    assert (await backfill_doc(bridge))["jobs"]["running"] == 1
    assert await bridge.terminate(signal.SIGKILL) == -signal.SIGKILL
    await request

    gsim.clear_faults()
    await bridge.start()
    await bridge.wait_ready()
    deadline = loop.time() + 90
    while True:
        doc = await backfill_doc(bridge)
        jobs = {j["id"]: j for j in doc.get("recent", [])}
        if jobs.get(running, {}).get("state") in ("done", "partial", "failed"):
            break
        assert loop.time() < deadline, f"the job did not finish after the restart: {doc}\n{bridge.tail()}"
        await asyncio.sleep(0.2)
    job = jobs[running]
    assert job["state"] == "done", job
    # the restart itself was a gap (the service crashed): it has a job of its own, which repairs it too
    while not any(j["reason"] == "service_crashed" and j["state"] == "done" for j in jobs.values()):
        assert loop.time() < deadline, f"no service_crashed job done: {doc}\n{bridge.tail()}"
        await asyncio.sleep(0.2)
        doc = await backfill_doc(bridge)
        jobs.update({j["id"]: j for j in doc.get("recent", [])})
    assert job["attempts"] == 2  # the killed attempt, then the one after the restart
    assert job["events_written"] > 0
    assert "back-fill jobs left running by the previous run are queued again" in bridge.log.read_text()
    deadline = loop.time() + 60
    while not snsim.records("interaction"):
        assert loop.time() < deadline, "no back-filled conversation reached ServiceNow"
        await asyncio.sleep(0.2)
    assert await bridge.terminate() == 0


async def test_gcbridge_backfill_without_a_service_fills_the_outbox_for_its_next_run(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, snsim = sims
    assert gsim.org is not None
    world = gsim.org.world
    topics = [f"v2.routing.queues.{q}.conversations" for q in world.queues]
    config = write_config(tmp_path, gsim, snsim, topics)
    env = {"GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET}
    start, end = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (world.now - 1800, world.now))
    code, out, err = await run_gcbridge(
        "backfill", "--config", str(config), "--from", start, "--to", end, env=env, within=120
    )
    assert code == 0, out + err
    assert ": done" in out
    assert "events wait in the outbox; the service delivers them when it runs" in out
    assert GENESYS_SECRET not in out + err
    bridge = Bridge(config, tmp_path / "bridge.log")
    await bridge.start()
    await bridge.wait_ready()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not snsim.records("interaction"):
        assert loop.time() < deadline, f"the back-filled conversations were not delivered:\n{bridge.tail()}"
        await asyncio.sleep(0.2)
    assert await bridge.terminate() == 0
