"""The library back-fill (``gcbridge.genesys.Backfiller``) against the simulator's org on 127.0.0.1.

The org's clock is stopped (``time_scale=0``) and moved with ``advance_by``; the back-filler's clock is the
org's, so every expected body is exact. "What the simulator would publish" is taken from the simulator's own
renderers (``org_bodies.topic_*``) and from its ledger of what it did publish during the gap.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from gcbridge.core.dedup import dedup_key
from gcbridge.genesys import (
    Backfiller,
    BackfillError,
    BackfillOptions,
    Event,
    Gap,
    GenesysUsageError,
    TokenManager,
    Unfillable,
)
from gcbridge.genesys.analytics_api import AnalyticsApi
from gcbridge.genesys.regions import hosts_for_base_url
from gcbridge.genesys.rest import RestPolicy, new_session
from gcbridge.sim.genesys import GenesysSim, org_bodies
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.org import OrgSettings
from tests.library_logs import capture_logs

from .conftest import SimFactory
from .test_sim_genesys_sdk import _BODY_MODELS, _unknown_fields

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


async def org_gap(factory: SimFactory, seconds: float, *extra_topics: str) -> tuple[GenesysSim, Gap]:
    """An org run for ``seconds`` from START, all of it a gap on every topic (and ``extra_topics``)."""
    sim = await org_sim(factory)
    assert sim.org is not None
    sim.org.advance_by(seconds)
    return sim, Gap(START, sim.org.world.now, (*all_topics(sim), *extra_topics), "socket_dropped")


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
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, gap = await org_gap(genesys_sim_factory, 4 * 3600)
    assert sim.org is not None
    sim.org.query_drift = 7
    rows: list[str] = []
    page = AnalyticsApi.details_page

    async def counting_page(api: AnalyticsApi, query: dict[str, Any]) -> list[dict[str, Any]] | None:
        answer = await page(api, query)
        rows.extend(c["conversationId"] for c in answer or [])
        return answer

    monkeypatch.setattr(AnalyticsApi, "details_page", counting_page)
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
    assert len(rows) >= len(set(rows)) + 7  # the drift was real: rows came back on later pages


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
    sim, gap = await org_gap(genesys_sim_factory, 600)
    assert sim.org is not None
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


class VirtualTime:
    """The back-filler's pacing clock: sleeping moves it, and nothing else does (no real waiting)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class CountingSim(GenesysSim):
    """A simulator that notes the (virtual) time of every ``/api/`` request it receives."""

    def __init__(self, config: SimConfig, time: VirtualTime) -> None:
        super().__init__(config)
        self.api_times: list[float] = []
        self._time = time

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/api/"):
                self.api_times.append(self._time.now)
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.insert(0, count)
        return app


def most_in_a_minute(times: list[float]) -> int:
    """The largest number of requests in any rolling minute ``(t - 60, t]`` (two requests exactly 60 s apart,
    to within float rounding, are in different minutes)."""
    ordered = sorted(times)
    return max((sum(1 for s in ordered if t - 60 + 1e-6 < s <= t) for t in ordered), default=0)


async def test_a_429_storm_finishes_later_and_never_exceeds_the_cap(session: aiohttp.ClientSession) -> None:
    results: dict[bool, tuple[set[tuple[str, str]], float, list[float]]] = {}
    for storm in (False, True):
        vt = VirtualTime()
        config = SimConfig(
            org=OrgSettings(seed=7, users=8, time_scale=0, start=START), api_rate_limit_per_min=None
        )
        sim = CountingSim(config, vt)
        await sim.start("127.0.0.1", 0)
        try:
            assert sim.org is not None
            sim.org.advance_by(2 * 3600)
            gap = Gap(START + 3600, sim.org.world.now, tuple(all_topics(sim)), "socket_dropped")
            if storm:
                sim.fail_next_rest(25, status=429, retry_after=7)
            options = BackfillOptions(margin=0.0, max_requests_per_minute=12)
            async with backfiller(sim, session, options, sleep=vt.sleep, monotonic=vt.monotonic) as bf:
                events, unfillable, report = await collect(bf, gap)
            assert unfillable == []
            assert report.requests == len(sim.api_times)
            results[storm] = ({(e.topic, e.dedup_key) for e in events}, vt.now, sim.api_times)
        finally:
            await sim.stop()
    calm, stormy = results[False], results[True]
    assert stormy[0] == calm[0]  # the same events in the end
    assert len(calm[2]) > 40  # enough requests that the cap matters
    assert len(stormy[2]) == len(calm[2]) + 25
    assert stormy[1] >= calm[1] + 25 * 7 * 0.9  # finished later: every 429 waited out its Retry-After
    assert most_in_a_minute(calm[2]) <= 12
    assert most_in_a_minute(stormy[2]) <= 12
    assert most_in_a_minute(calm[2]) == 12  # the pacing used the budget it had


#: The topic's SDK model, as the simulator's fidelity test names it; observations added.
SDK_MODELS = {
    **_BODY_MODELS,
    "v2.analytics.queues.{id}.observations": "StatEventQueueTopicStatsNotification",
}


class _Answer:
    """What ``ApiClient.deserialize`` reads: a JSON body and its content type."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)

    def getheader(self, name: str, default: str | None = None) -> str:
        return "application/json"


def sdk_model(topic: str) -> str:
    for template, model in SDK_MODELS.items():
        if re.fullmatch(re.escape(template).replace(re.escape("{id}"), "[^.]+"), topic):
            return model
    raise AssertionError(f"no SDK model for {topic}")


async def test_the_official_sdk_deserialises_every_back_filled_body(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    import PureCloudPlatformClientV2 as sdk

    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    sim.org.advance_by(3 * 3600)
    families = ("customer.start", "customer.end", "acd.start", "acd.end", "user.start", "user.end", "acw")
    details = [
        f"v2.detail.events.conversation.{c.id}.{f}"
        for c in sim.org.world.conversations()[-20:]
        for f in families
    ]
    gap = Gap(START, sim.org.world.now, (*all_topics(sim), *details), "socket_dropped")
    async with backfiller(sim, session, BackfillOptions(max_requests_per_minute=100_000)) as bf:
        events, unfillable, _ = await collect(bf, gap)
    assert unfillable == []
    client = sdk.api_client.ApiClient()
    checked: set[str] = set()
    for event in events:
        name = sdk_model(event.topic)
        model = client.deserialize(_Answer(event.body), name)
        assert isinstance(model, getattr(sdk, name)), event.topic
        assert _unknown_fields(sdk, event.body, name, event.topic) == []
        checked.add(name)
    assert checked == set(SDK_MODELS.values())


async def test_a_403_on_the_details_query_or_on_conversations_leaves_the_rest_filling(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim = await org_sim(genesys_sim_factory)
    assert sim.org is not None
    sim.org.advance_by(3600)
    world = sim.org.world
    last = world.conversations()[-1].id
    details = (f"v2.detail.events.conversation.{last}.customer.start",)
    gap = Gap(START, world.now, (*all_topics(sim), *details), "socket_dropped")
    conversation_topics = [t for t in all_topics(sim) if t.endswith(".conversations")]

    sim.org.denied_permissions.update(
        {"analytics:conversationDetail:view", "analytics:agentConversationDetail:view"}
    )
    async with backfiller(sim, session) as bf:
        events, unfillable, _ = await collect(bf, gap)
    assert len(unfillable) == 1
    assert set(unfillable[0].topics) == {*conversation_topics, *details}
    assert unfillable[0].reason.startswith("missing permission analytics:conversationDetail:view")
    assert {e.topic.rsplit(".", 1)[-1] for e in events} == {"presence", "routingStatus", "observations"}

    sim.org.denied_permissions.clear()
    sim.org.denied_permissions.add("conversation:communication:view")
    async with backfiller(sim, session) as bf:
        events, unfillable, _ = await collect(bf, gap)
    assert len(unfillable) == 1
    assert set(unfillable[0].topics) == set(conversation_topics)
    assert unfillable[0].reason.startswith("missing permission conversation:communication:view")
    assert {e.topic for e in events if e.topic.startswith("v2.detail.")} == set(details)  # analytics only


async def test_no_secret_or_token_in_errors_logs_or_repr(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, gap = await org_gap(genesys_sim_factory, 1800, "v2.users.x.geolocation")
    assert sim.org is not None
    sim.org.denied_permissions.add("analytics:queueObservation:view")
    hosts = hosts_for_base_url(sim.base_url)
    secret = sim.config.client_secret
    with capture_logs() as logs:
        async with TokenManager(session, hosts.token_url, sim.config.client_id, secret) as tokens:
            bf = Backfiller(
                tokens, session, hosts.api_base, options=BackfillOptions(rest_policy=RestPolicy(1))
            )
            run = bf.fill(gap)
            items = [item async for item in run]
            sim.fail_next_rest(1, status=502)
            with pytest.raises(BackfillError) as caught:
                await collect(bf, gap)
            token = tokens.current
            assert token is not None
            value = token.value.reveal()
    assert any(isinstance(i, Unfillable) for i in items)
    assert any(entry.get("what_to_do") for entry in logs if entry["log_level"] == "warning")
    text = " ".join(
        [str(caught.value), repr(caught.value), repr(bf), repr(run.report), repr(items), repr(logs)]
    )
    assert secret not in text
    assert value not in text


async def test_from_credentials_creates_and_closes_its_own_session_and_tokens(
    genesys_sim_factory: SimFactory,
) -> None:
    sim, gap = await org_gap(genesys_sim_factory, 600)
    assert sim.org is not None
    org = sim.org
    presence = tuple(t for t in gap.topics if t.endswith(".presence"))
    bf = Backfiller.from_credentials(
        client_id=sim.config.client_id,
        client_secret=sim.config.client_secret,
        base_url=sim.base_url,
        clock=lambda: org.world.now,
    )
    async with bf:
        events, unfillable, report = await collect(bf, Gap(gap.start, gap.end, presence, "service_down"))
    assert unfillable == []
    assert {e.topic for e in events} == set(presence)
    assert report.requests == 1  # 8 users: one bulk request
    with pytest.raises(GenesysUsageError, match="exactly one of region"):
        Backfiller.from_credentials(client_id="a", client_secret="b")


class SlowOrgSim(GenesysSim):
    """A simulator whose every ``/api/`` request takes ``seconds`` of org time: noted as it arrives, then the
    org moves on before the answer is made (the server reads the state *after* the request was sent)."""

    def __init__(self, config: SimConfig, seconds: float) -> None:
        super().__init__(config)
        self.arrivals: list[float] = []
        self.seconds = seconds

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def slow(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/api/") and self.org is not None:
                self.arrivals.append(self.org.world.now)
                self.org.advance_by(self.seconds)
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.insert(0, slow)
        return app


async def test_read_at_is_when_the_request_was_sent_not_when_the_answer_came() -> None:
    """A live event received while a request is in flight may be newer than the answer; the service's guard
    can only see that if ``read_at`` is no later than the moment the request left."""
    config = SimConfig(
        org=OrgSettings(seed=7, users=8, time_scale=0, start=START), api_rate_limit_per_min=None
    )
    sim = SlowOrgSim(config, seconds=10.0)
    await sim.start("127.0.0.1", 0)
    try:
        assert sim.org is not None
        sim.org.advance_by(3600)
        gap = Gap(START + 1800, sim.org.world.now, tuple(all_topics(sim)), "socket_dropped")
        vt = VirtualTime()  # pacing in virtual time: the rate cap costs no real waiting
        async with (
            new_session() as session,
            backfiller(
                sim, session, BackfillOptions(margin=0.0), sleep=vt.sleep, monotonic=vt.monotonic
            ) as bf,
        ):
            events, unfillable, report = await collect(bf, gap)
    finally:
        await sim.stop()
    assert unfillable == []
    assert len(events) > 20
    sent = set(sim.arrivals)
    for event in events:
        assert event.metadata["backfill"]["read_at"] == event.received_at
        assert event.received_at in sent, (event.topic, event.received_at)
    routing = sorted(e.received_at for e in events if e.topic.endswith(".routingStatus"))
    assert len(routing) == 8  # one request a user, each stamped when it was sent
    assert len(set(routing)) == 8
    assert report.read_at == min(sim.arrivals)
