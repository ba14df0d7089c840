"""A fixed random schedule of every fault the simulator has, under traffic: nothing is lost silently."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from .client_harness import audit, client_for, publish_until_received, receiving, wait_until
from .conftest import SimFactory

TOPICS = [f"v2.users.{i:04d}dddd-0000-4000-8000-00000000{i:04d}.presence" for i in range(6)]


@pytest.mark.parametrize("exclusive", [False, True])
async def test_fault_storm_loses_nothing_silently(genesys_sim_factory: SimFactory, exclusive: bool) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5, exclusive_topics=exclusive)
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261129")))  # try others with CHAOS_SEED
    async with client_for(sim) as client:
        got = await receiving(sim, client, TOPICS)
        sim.start_traffic(200, TOPICS)
        for _ in range(25):
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            live = sim.connected_channel_ids
            target = rng.choice(live) if live else None
            fault = rng.choice(["drop", "close", "stall", "closing", "expire", "rest", "handshake"])
            if fault == "drop":
                await sim.drop_socket(target)
            elif fault == "close":
                await sim.close_socket(rng.choice([1000, 1001, 1011]), target)
            elif fault == "stall" and target:
                sim.stall_socket(target)
            elif fault == "closing":
                await sim.socket_closing(target, grace=rng.choice([0.2, 5.0]))
            elif fault == "expire" and target:
                sim.expire_channel(target)
            elif fault == "rest":
                sim.fail_next_rest(rng.randint(1, 3), rng.choice([429, 500, 503]), retry_after=0.1)
            elif fault == "handshake":
                sim.refuse_handshakes(rng.randint(1, 2))
        sim.clear_faults()
        await sim.stop_traffic()
        await wait_until(
            lambda: all(p.state == "live" for p in client.stats().paths), within=60, what="recovery"
        )
        await publish_until_received(sim, got, TOPICS[1], within=60)
        stats = client.stats()
    received, _ = audit(sim, got, set(TOPICS))
    assert received  # how many depends on how long the outages lasted on this machine; none is lost
    assert got.gaps, "this schedule interrupts delivery; the interruptions must be reported"
    assert stats.channels_held <= client.options.channel_budget
    assert stats.gaps == len(got.gaps)
