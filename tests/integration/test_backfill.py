"""The library back-fill (``gcbridge.genesys.Backfiller``) against the simulator's org on 127.0.0.1.

The org's clock is stopped (``time_scale=0``) and moved with ``advance_by``; the back-filler's clock is the
org's, so every expected body is exact. "What the simulator would publish" is taken from the simulator's own
renderers (``org_bodies.topic_*``) and from its ledger of what it did publish during the gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gcbridge.core.dedup import dedup_key
from gcbridge.genesys import (
    Backfiller,
    BackfillError,
    BackfillOptions,
    Event,
    Gap,
    TokenManager,
    Unfillable,
)
from gcbridge.genesys.regions import hosts_for_base_url
from gcbridge.genesys.rest import RestPolicy, new_session
from gcbridge.sim.genesys import GenesysSim, org_bodies
from gcbridge.sim.genesys.org import OrgSettings

from .conftest import SimFactory

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
MIDNIGHT = 1_800_057_600.0  # 2027-01-16T00:00:00Z


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as http:
        yield http


async def org_sim(factory: SimFactory, start: float = START, users: int = 8, **config: Any) -> GenesysSim:
    config.setdefault("api_rate_limit_per_min", None)
    sim = await factory(org=OrgSettings(seed=7, users=users, queues=3, time_scale=0, start=start), **config)
    assert sim.org is not None
    return sim


def backfiller(
    sim: GenesysSim, session: aiohttp.ClientSession, options: BackfillOptions | None = None, **kw: Any
) -> Backfiller:
    assert sim.org is not None
    org = sim.org
    hosts = hosts_for_base_url(sim.base_url)
    tokens = TokenManager(session, hosts.token_url, sim.config.client_id, sim.config.client_secret)
    kw.setdefault("clock", lambda: org.world.now)
    return Backfiller(tokens, session, hosts.api_base, options=options, **kw)


def all_topics(sim: GenesysSim) -> list[str]:
    assert sim.org is not None
    world = sim.org.world
    topics = [f"v2.routing.queues.{q}.conversations" for q in world.queues]
    topics += [f"v2.analytics.queues.{q}.observations" for q in world.queues]
    for uid in world.users:
        topics += [
            f"v2.users.{uid}.conversations",
            f"v2.users.{uid}.presence",
            f"v2.users.{uid}.routingStatus",
        ]
    return topics


async def collect(bf: Backfiller, gap: Gap) -> tuple[list[Event], list[Unfillable], Any]:
    run = bf.fill(gap)
    events: list[Event] = []
    unfillable: list[Unfillable] = []
    async for item in run:
        (events if isinstance(item, Event) else unfillable).append(item)
    return events, unfillable, run.report


def pairs(items: list[tuple[str, dict[str, Any]]]) -> set[tuple[str, str]]:
    return {(topic, dedup_key(topic, body)) for topic, body in items}


def expected_current(sim: GenesysSim, gap: Gap, margin: float) -> list[tuple[str, dict[str, Any]]]:
    """(topic, body) the simulator would publish for the current state of every gap topic."""
    assert sim.org is not None
    world = sim.org.world
    out: list[tuple[str, dict[str, Any]]] = []
    for conv in world.conversations():
        if conv.start <= gap.end + margin and (conv.end is None or conv.end >= gap.start - margin):
            body = org_bodies.topic_conversation(conv)
            out += [(f"v2.routing.queues.{q}.conversations", body) for q in conv.queue_ids]
            out += [(f"v2.users.{u}.conversations", body) for u in conv.user_ids]
    for user in world.users.values():
        out.append((f"v2.users.{user.id}.presence", org_bodies.topic_presence(world, user)))
        out.append((f"v2.users.{user.id}.routingStatus", org_bodies.topic_routing_status(user)))
    for q in world.queues:
        out.append(
            (
                f"v2.analytics.queues.{q}.observations",
                org_bodies.topic_observation(q, world.observation(q), world.now),
            )
        )
    return out


async def test_every_family_back_fills_the_current_state_with_live_dedup_keys(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    sim.org.advance_by(3600)
    gap_start = sim.org.world.now
    seen_before = len(sim.ledger)
    sim.org.advance_by(1800)
    gap = Gap(gap_start, sim.org.world.now, tuple(all_topics(sim)), "socket_dropped")
    live_in_gap = [(r.topic, r.body) for r in sim.ledger[seen_before:]]
    sim.org.advance_by(60)  # the back-fill runs a minute after the gap closed

    options = BackfillOptions(margin=30.0, page_size=20)
    async with backfiller(sim, session, options) as bf:
        events, unfillable, report = await collect(bf, gap)

    assert unfillable == []
    assert report.errors == []
    got = {(e.topic, e.dedup_key) for e in events}
    assert len(got) == len(events)  # nothing doubled
    assert got == pairs(expected_current(sim, gap, options.margin))
    # a conversation that ended in the gap: its back-filled state is the last one published live, same key
    last_live = {(topic, body.get("id")): dedup_key(topic, body) for topic, body in live_in_gap}
    conversations = [e for e in events if e.topic.endswith(".conversations")]
    ended = {c.id for c in sim.org.world.conversations() if c.end is not None and c.end <= gap.end}
    ended_events = [e for e in conversations if e.body["id"] in ended]
    assert len(ended_events) > 5
    for event in ended_events:
        assert event.dedup_key == last_live[(event.topic, event.body["id"])]
    for event in events:
        assert event.channel_id == "backfill"
        assert event.version == "2"
        marker = event.metadata["backfill"]
        assert marker["gap"] == [gap.start, gap.end]
        assert marker["read_at"] == event.received_at == sim.org.world.now
        assert marker["source"].split(" ", 1)[0] in ("GET", "POST")
    sources = {e.topic.rsplit(".", 1)[-1]: e.metadata["backfill"]["source"] for e in events}
    assert sources["conversations"] == "GET /api/v2/conversations/{id}"
    assert sources["presence"] == "GET /api/v2/users/presences/purecloud/bulk"
    assert sources["routingStatus"] == "GET /api/v2/users/{id}/routingstatus"
    assert sources["observations"] == "POST /api/v2/analytics/queues/observations/query"
    assert report.events == len(events)
    assert report.conversations == len({e.body["id"] for e in conversations})
    assert report.read_at == sim.org.world.now
    # presence: one bulk request for 8 users; routing: one a user
    assert report.requests >= 1 + 8 + 1


async def test_a_conversation_inside_the_gap_and_one_from_the_day_before_are_found(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory, start=MIDNIGHT - 3 * 3600)
    assert sim.org is not None
    world = sim.org.world
    sim.org.advance_by(3 * 3600 - 300)  # to 23:55
    ongoing_before = {c.id for c in world.conversations() if c.end is None}
    assert ongoing_before
    gap_start = world.now
    sim.org.advance_by(1200)  # to 00:15 the next day
    gap = Gap(gap_start, world.now, tuple(all_topics(sim)), "service_down")
    inside = [
        c for c in world.conversations() if c.start > gap.start and c.end is not None and c.end < gap.end
    ]
    yesterday = [c for c in world.conversations() if c.id in ongoing_before and c.end is not None]
    assert inside
    assert yesterday
    async with backfiller(sim, session, BackfillOptions(margin=0.0)) as bf:
        events, _, _ = await collect(bf, gap)
    by_conversation: dict[str, list[Event]] = {}
    for event in events:
        if event.topic.endswith(".conversations"):
            by_conversation.setdefault(event.body["id"], []).append(event)
    for conv in [*inside, *yesterday]:
        found = by_conversation[conv.id]
        assert all(e.body == org_bodies.topic_conversation(conv) for e in found)  # the final state
        assert {e.topic for e in found} == {
            *(f"v2.routing.queues.{q}.conversations" for q in conv.queue_ids),
            *(f"v2.users.{u}.conversations" for u in conv.user_ids),
        }


async def test_paging_with_drift_loses_and_doubles_nothing(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    sim.org.advance_by(4 * 3600)
    gap = Gap(START, sim.org.world.now, tuple(all_topics(sim)), "socket_dropped")
    sim.org.query_drift = 7
    async with backfiller(
        sim, session, BackfillOptions(margin=0.0, page_size=10, max_requests_per_minute=100_000)
    ) as bf:
        events, _, report = await collect(bf, gap)
    conversations = [e for e in events if e.topic.endswith(".conversations")]
    keys = [(e.topic, e.dedup_key) for e in conversations]
    assert len(keys) == len(set(keys))
    expected = {c.id for c in sim.org.world.conversations()}
    assert len(expected) > 30
    assert {e.body["id"] for e in conversations} == expected
    assert report.conversations == len(expected)


async def test_unknown_topics_and_a_forbidden_family_are_unfillable_the_others_fill(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    sim.org.advance_by(3600)
    sim.org.denied_permissions.add("analytics:queueObservation:view")
    odd = ("v2.users.x.geolocation", "v2.conversations.chats.y.messages")
    gap = Gap(START, sim.org.world.now, (*all_topics(sim), *odd), "socket_dropped")
    async with backfiller(sim, session) as bf:
        events, unfillable, report = await collect(bf, gap)
    reasons = {u.reason: u.topics for u in unfillable}
    observation_topics = tuple(f"v2.analytics.queues.{q}.observations" for q in sim.org.world.queues)
    forbidden = [r for r, topics in reasons.items() if topics == observation_topics]
    assert len(forbidden) == 1
    assert forbidden[0].startswith("missing permission analytics:queueObservation:view")
    unknown = [r for r, topics in reasons.items() if topics == odd]
    assert unknown
    assert "no REST source" in unknown[0]
    assert report.unfillable == unfillable
    families = {e.topic.rsplit(".", 1)[-1] for e in events}
    assert families == {"conversations", "presence", "routingStatus"}


async def test_other_failures_raise_backfill_error_without_secrets(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    sim.org.advance_by(600)
    gap = Gap(START, sim.org.world.now, tuple(all_topics(sim)), "socket_dropped")
    sim.fail_next_rest(50, status=500)
    options = BackfillOptions(rest_policy=RestPolicy(max_attempts=2))
    async with backfiller(sim, session, options) as bf:
        with pytest.raises(BackfillError) as caught:
            await collect(bf, gap)
        assert "HTTP 500" in str(caught.value)
        assert sim.config.client_secret not in str(caught.value) + repr(bf)


async def test_detail_events_are_rebuilt_as_published_live(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    world = sim.org.world
    sim.org.advance_by(3600)
    gap_start = world.now
    seen_before = len(sim.ledger)
    sim.org.advance_by(1200)
    gap_end = world.now
    live = [(r.topic, r.body) for r in sim.ledger[seen_before:] if r.topic.startswith("v2.detail.events.")]
    sim.org.advance_by(120)
    families = ("customer.start", "customer.end", "acd.start", "acd.end", "user.start", "user.end", "acw")
    touched = {topic.split(".")[4] for topic, _ in live}
    assert len(touched) > 5
    topics = tuple(f"v2.detail.events.conversation.{cid}.{f}" for cid in sorted(touched) for f in families)
    gap = Gap(gap_start, gap_end, topics, "socket_dropped")
    async with backfiller(sim, session, BackfillOptions(margin=0.0)) as bf:
        events, unfillable, _ = await collect(bf, gap)
    assert unfillable == []
    assert len(live) > 20
    assert sorted((e.topic, e.dedup_key) for e in events) == sorted(pairs(live))
    assert {e.metadata["backfill"]["source"] for e in events} == {
        "POST /api/v2/analytics/conversations/details/query"
    }
