"""Coverage by evidence, end to end (issue #12): with two OAuth clients (two paths per shard), a path that is
connected but silent must not count as covering its sibling's outage. Every lost event lies in a reported gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable

import pytest

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.genesys import NotificationClient

from .client_harness import FAST, audit, client_for, collect, publish_until_received, wait_until
from .conftest import SimFactory

TOPICS = [f"v2.users.{i:04d}cccc-0000-4000-8000-00000000{i:04d}.presence" for i in range(2)]
SECOND = ("second-client", "second-secret")

# A stall is found by the regular ping only after ``ping_interval`` of silence; much later than the sibling's
# drop and return. Only the probe asked for by the sibling's failure finds it in time.
SLOW_PING = dataclasses.replace(FAST, heartbeat_timeout=30.0, ping_interval=15.0, pong_timeout=0.5)


def live_paths(client: NotificationClient) -> int:
    return sum(p.state == "live" for p in client.stats().paths)


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


# Issue #12's rough scenario, 20 times faster: socket_closing every 20 s, channels living 90 s, tokens 120 s,
# an abrupt drop every 15 s on a random socket, a 45 s stall every 40 s; 50 events/s over 100 topics; 300 s.
SCALE = 20.0
ROUGH = dataclasses.replace(
    FAST,
    heartbeat_timeout=65.0 / SCALE,
    ping_interval=20.0 / SCALE,
    pong_timeout=10.0 / SCALE,
    close_timeout=10.0 / SCALE,
    healthy_period=60.0 / SCALE,
    backoff=BackoffPolicy(initial=0.25 / SCALE, factor=2.0, cap=60.0 / SCALE),
    subscribe_timeout=30.0,
)
MANY = [f"v2.users.{i:04d}eeee-0000-4000-8000-00000000{i:04d}.presence" for i in range(100)]


async def test_rough_scenario_with_two_oauth_clients_loses_nothing_silently(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(
        time_scale=SCALE, heartbeat_interval=30.0, channel_ttl=90.0, token_ttl=120.0
    )
    sim.add_oauth_client(*SECOND)
    rng = random.Random(20261204)

    async def every(period: float, act: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(period / SCALE)
            await act()

    async def closing() -> None:
        await sim.socket_closing(rng.choice(sim.connected_channel_ids or [""]))

    async def drop() -> None:
        await sim.drop_socket(rng.choice(sim.connected_channel_ids or [""]))

    async def stall() -> None:
        stalled = sim.stall_socket(rng.choice(sim.connected_channel_ids or [""]))
        await asyncio.sleep(45.0 / SCALE)
        for c in stalled:
            sim.resume_socket(c)

    async with client_for(sim, ROUGH, extra_credentials=[SECOND]) as client:
        await client.subscribe(MANY)
        got = collect(client)
        await wait_until(lambda: live_paths(client) == 2, what="two paths")
        await publish_until_received(sim, got, MANY[0])
        sim.start_traffic(50, MANY)
        loop = asyncio.get_running_loop()
        schedule = [
            loop.create_task(every(20.0, closing)),
            loop.create_task(every(15.0, drop)),
            loop.create_task(every(40.0, stall)),
        ]
        await asyncio.sleep(300.0 / SCALE)
        for task in schedule:
            task.cancel()
        await asyncio.gather(*schedule, return_exceptions=True)
        await wait_until(lambda: live_paths(client) == 2, within=30, what="recovery")
        await sim.stop_traffic()
        await publish_until_received(sim, got, MANY[1])
    stats = client.stats()  # after closing: a gap decided by the last evidence is reported on close
    received, in_gap = audit(sim, got, set(MANY))  # every event received, or inside a reported gap
    assert len(received) > 100
    assert stats.gaps == len(got.gaps)
    assert got.gaps, "stalls and drops overlap in this schedule: both paths are down at times"
    assert len(in_gap) < len(received)  # losses only where both paths were down at once: rarely
