"""Coverage by evidence, end to end (issue #12): with two OAuth clients (two paths per shard), a path that is
connected but silent must not count as covering its sibling's outage. Every lost event lies in a reported gap.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from .client_harness import FAST, audit, client_for, collect, publish_until_received, wait_until
from .conftest import SimFactory

TOPICS = [f"v2.users.{i:04d}cccc-0000-4000-8000-00000000{i:04d}.presence" for i in range(2)]
SECOND = ("second-client", "second-secret")

# A stall is found by the regular ping only after ``ping_interval`` of silence; much later than the sibling's
# drop and return. Only the probe asked for by the sibling's failure finds it in time.
SLOW_PING = dataclasses.replace(FAST, heartbeat_timeout=30.0, ping_interval=15.0, pong_timeout=0.5)


def live_paths(client: object) -> int:
    return sum(p.state == "live" for p in client.stats().paths)  # type: ignore[attr-defined]


@pytest.mark.parametrize("exclusive", [False, True])
async def test_a_drop_while_the_sibling_is_stalled_is_reported(
    genesys_sim_factory: SimFactory, exclusive: bool
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5, exclusive_topics=exclusive)
    sim.add_oauth_client(*SECOND)
    async with client_for(sim, SLOW_PING, extra_credentials=[SECOND]) as client:
        await client.subscribe(TOPICS)
        got = collect(client)
        await wait_until(lambda: live_paths(client) == 2, what="two paths")
        await publish_until_received(sim, got, TOPICS[0])
        first, second = (p.channel_id for p in client.stats().paths)
        sim.start_traffic(200, TOPICS)
        await asyncio.sleep(0.3)
        sim.stall_socket(first)  # connected, silent: neither heartbeats nor events nor pongs
        await asyncio.sleep(0.3)
        await sim.drop_socket(second)  # detected at once; it comes back on its own
        await asyncio.sleep(2.0)  # far less than ping_interval: only a probe can find the stall by now
        sim.resume_socket(first)  # unless the client closed it, it would deliver again, its stall unnoticed
        await wait_until(lambda: live_paths(client) == 2, within=30, what="recovery")
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[1])
        stats = client.stats()
    received, in_gap = audit(sim, got, set(TOPICS))  # every event received, or inside a reported gap
    assert in_gap, "events published while both paths were down are lost; they must be inside a gap"
    assert received
    # the stalled path was found by the probe (a ping at once), not by the watchdog's long silence
    assert stats.reconnects_by_reason.get("pong_timeout", 0) >= 1
    assert "heartbeat_timeout" not in stats.reconnects_by_reason
