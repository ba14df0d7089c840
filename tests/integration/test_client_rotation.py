"""Planned rotations are gap-free: socket_closing, channel expiry, token refresh, both topic semantics."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.rest import NotificationsApi, new_session

from .client_harness import FAST, audit, client_for, collect, publish_until_received, receiving, wait_until
from .conftest import SimFactory

TOPICS = [f"v2.users.{i:04d}bbbb-0000-4000-8000-00000000{i:04d}.presence" for i in range(6)]


@pytest.mark.parametrize("exclusive", [False, True])
async def test_socket_closing_rotates_without_a_gap(genesys_sim_factory: SimFactory, exclusive: bool) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5, exclusive_topics=exclusive)
    async with client_for(sim) as client:
        got = await receiving(sim, client, TOPICS)
        sim.start_traffic(300, TOPICS)
        for _ in range(5):
            before = client.stats().paths[0].channel_id
            await sim.socket_closing(grace=5.0)
            await wait_until(lambda b=before: client.stats().paths[0].channel_id != b, what="rotation")
            await asyncio.sleep(0.3)
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[1])
        stats = client.stats()
    assert got.gaps == []
    received, in_gap = audit(sim, got, set(TOPICS))
    assert not in_gap
    assert len(received) > 300
    assert stats.rotations_by_reason.get("socket_closing") == 5
    assert stats.reconnects_by_reason == {}
    assert sim.sockets_kicked == 0  # never a second socket on its own channel


@pytest.mark.parametrize("exclusive", [False, True])
async def test_socket_closing_sent_to_a_half_built_replacement_costs_no_gap(
    genesys_sim_factory: SimFactory, exclusive: bool
) -> None:
    # Maintenance is announced to every socket, the replacement of a rotation in progress included (the soak's
    # socket_closing goes to all sockets; a token or expiry rotation may be half-built then). The client used
    # to ignore the notice there, so the replacement went live and was closed at the grace's end: a gap.
    sim = await genesys_sim_factory(heartbeat_interval=0.5, exclusive_topics=exclusive)
    async with client_for(sim) as client:
        got = await receiving(sim, client, TOPICS)
        sim.start_traffic(200, TOPICS)
        first = client.stats().paths[0].channel_id
        sim.set_rest_delay(1.0)  # the replacement's create and PUT each take a second
        await sim.socket_closing(first, grace=30.0)
        await wait_until(lambda: len(sim.connected_channel_ids) == 2, what="the replacement's socket")
        second = next(c for c in sim.connected_channel_ids if c != first)
        await sim.socket_closing(second, grace=2.0)  # its PUT is still in flight
        sim.set_rest_delay(0.0)
        await wait_until(
            lambda: second not in sim.connected_channel_ids, what="the replacement's socket closed"
        )
        await wait_until(lambda: client.stats().paths[0].state == "live", what="live again")
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[1])
        stats = client.stats()
    assert got.gaps == []
    assert stats.paths[0].channel_id not in (first, second)
    assert stats.rotations_by_reason.get("socket_closing") == 2
    assert stats.reconnects_by_reason == {}
    audit(sim, got, set(TOPICS))


async def test_a_stalled_socket_misses_socket_closing_and_its_gap_is_reported_from_the_stall(
    genesys_sim_factory: SimFactory,
) -> None:
    # What the soak's closed_1001 gaps around socket_closing were: a socket the harness had stalled hears no
    # socket_closing (nothing is sent while stalled), so it is not rotated, and the close at the grace's end
    # comes before the watchdog finds the silence. Events were lost in the stall: a real gap, from the stall.
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    slow_watchdog = dataclasses.replace(FAST, heartbeat_timeout=20.0, ping_interval=10.0, pong_timeout=10.0)
    async with client_for(sim, slow_watchdog) as client:
        got = await receiving(sim, client, TOPICS)
        sim.start_traffic(200, TOPICS)
        await asyncio.sleep(0.2)
        channel = client.stats().paths[0].channel_id
        stalled_at = time.time()
        sim.stall_socket(channel)
        await sim.socket_closing(channel, grace=0.2)
        await wait_until(lambda: bool(got.gaps), what="the gap")
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[1])
        stats = client.stats()
    assert [g.reason for g in got.gaps] == ["closed_1001"]
    assert got.gaps[0].start <= stalled_at
    assert stats.rotations_by_reason == {}
    _, in_gap = audit(sim, got, set(TOPICS))  # every event lost in the stall lies inside the gap
    assert in_gap


async def test_forty_eight_simulated_hours_deliver_everything_exactly_once(
    genesys_sim_factory: SimFactory,
) -> None:
    # 1 simulated hour = 0.5 s: 24 h tokens and channels live 12 s; a socket_closing every simulated hour
    scale = 7200.0
    sim = await genesys_sim_factory(time_scale=scale, heartbeat_interval=30.0, exclusive_topics=True)
    async with client_for(sim) as client:
        got = await receiving(sim, client, TOPICS)
        sim.start_traffic(150, TOPICS)
        closings = 0
        for _ in range(48):
            await asyncio.sleep(3600 / scale)
            before = client.stats().paths[0].channel_id
            # The grace runs on the scaled wall clock: 60 s is 8 ms here, and even the rest of the hour
            # (0.4 s) was outlasted by a rotation on a loaded machine, so the socket closed first (a 1001
            # gap). Give six simulated hours (3 s), and let each rotation finish before the next closing.
            await sim.socket_closing(grace=6 * 3600.0)
            closings += 1
            await wait_until(lambda b=before: client.stats().paths[0].channel_id != b, what="rotation")
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[1])
        stats = client.stats()
    assert got.gaps == [], got.gaps
    received, in_gap = audit(sim, got, set(TOPICS))
    assert not in_gap
    assert len(received) > 1000
    assert stats.token_refreshes >= 4  # every channel since was created on a fresh token, no socket died
    assert closings == 48
    assert stats.rotations_by_reason.get("socket_closing", 0) >= closings - 2  # ~every one rotated
    assert sim.token_requests == stats.token_refreshes  # concurrent rotations never cost an extra token
    assert stats.channels_held <= client.options.channel_budget
    assert sim.sockets_kicked == 0  # never a second socket on its own channel


async def test_channel_expiry_rotation_without_token_binding(genesys_sim_factory: SimFactory) -> None:
    scale = 7200.0
    sim = await genesys_sim_factory(time_scale=scale, channel_ttl=4 * 3600.0, channel_dies_with_token=False)
    async with client_for(sim) as client:
        await client.subscribe(TOPICS[:2])
        got = collect(client)
        sim.start_traffic(100, TOPICS[:2])
        await wait_until(
            lambda: client.stats().rotations_by_reason.get("channel_expiry", 0) >= 3, what="expiry"
        )
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[0])
    assert got.gaps == []
    audit(sim, got, set(TOPICS[:2]))


async def test_token_refresh_moves_channels_onto_the_new_token(genesys_sim_factory: SimFactory) -> None:
    scale = 7200.0  # tokens live 12 s; the manager refreshes at half-life, channels die with their token
    sim = await genesys_sim_factory(time_scale=scale, heartbeat_interval=30.0)
    opts = dataclasses.replace(FAST, max_topics_per_channel=1, combine_topics=False)  # three shards
    async with client_for(sim, opts) as client:
        await client.subscribe(TOPICS[:3])
        assert len(client.stats().paths) == 3
        got = collect(client)
        sim.start_traffic(100, TOPICS[:3])
        await wait_until(
            lambda: client.stats().rotations_by_reason.get("token_refresh", 0) >= 2, what="rotations"
        )
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[0])
        stats = client.stats()
    assert got.gaps == []
    assert stats.reconnects_by_reason == {}
    assert sim.token_requests == stats.token_refreshes  # three paths rotating at once: one token each time
    audit(sim, got, set(TOPICS[:3]))


async def test_two_credentials_lose_nothing_when_one_socket_dies(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    sim.add_oauth_client("second-client", "second-secret")
    async with client_for(sim, extra_credentials=[("second-client", "second-secret")]) as client:
        await client.subscribe(TOPICS[:2])
        got = collect(client)
        await wait_until(lambda: sum(p.state == "live" for p in client.stats().paths) == 2, what="two paths")
        sim.start_traffic(200, TOPICS[:2])
        await asyncio.sleep(0.3)
        one = client.stats().paths[0].channel_id
        await sim.drop_socket(one)
        await wait_until(lambda: sum(p.state == "live" for p in client.stats().paths) == 2, what="recovery")
        await asyncio.sleep(0.3)
        await sim.stop_traffic()
        await publish_until_received(sim, got, TOPICS[0])
        # Both paths live again: each event now comes once per path and one copy is dropped. (Counted on
        # events published now, not on the whole run: how long the outage lasted depends on the machine.)
        dropped_before = client.stats().duplicates_dropped
        both = [sim.publish(TOPICS[1]) for _ in range(20)]
        await wait_until(lambda: set(both) <= set(got.seqs()), what="the events published on both paths")

        def second_copies_dropped() -> bool:
            return client.stats().duplicates_dropped >= dropped_before + len(both)

        await wait_until(second_copies_dropped, what="their second copies dropped")
    assert got.gaps == []
    audit(sim, got, set(TOPICS[:2]))  # ... and none was delivered twice
    assert all(len(r.sent_to) == 2 for r in sim.ledger if r.seq in both)  # each written to both paths


async def test_another_process_taking_the_topics_causes_no_ping_pong(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5, exclusive_topics=True)
    opts = dataclasses.replace(FAST)
    async with client_for(sim, opts) as client:
        got = await receiving(sim, client, TOPICS[:1])
        async with new_session() as session:
            tm = TokenManager(
                session, sim.base_url + "/oauth/token", sim.config.client_id, sim.config.client_secret
            )
            api = NotificationsApi(session, sim.base_url, tm)
            for _ in range(8):  # a rogue process of the same OAuth client grabs the topic again and again
                ch = await api.create_channel()
                await api.put_subscriptions(ch.id, TOPICS[:1])
                await asyncio.sleep(0.2)
            await tm.aclose()
        await asyncio.sleep(1.0)
        stats = client.stats()
    nls = stats.rotations_by_reason.get("no_longer_subscribed", 0)
    assert 1 <= nls <= 5  # it takes the topic back, but backs off instead of fighting every time
    assert got.gaps, "while another client held the topic, events did not reach us: that is a gap"
    assert all(g.reason == "no_longer_subscribed" for g in got.gaps)


async def test_revoked_token_recovers_on_a_new_token_and_channel(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    async with client_for(sim) as client:
        got = await receiving(sim, client, TOPICS[:1])
        first = client.stats().paths[0].channel_id
        assert sim.revoke_token() >= 1
        await wait_until(lambda: bool(got.gaps), what="a gap")
        await publish_until_received(sim, got, TOPICS[0])
        stats = client.stats()
    assert stats.paths[0].channel_id != first
    assert stats.token_refreshes >= 2
    audit(sim, got, set(TOPICS[:1]))
