"""The simulated org world (pure, seeded, simulated time): legal lifecycles, determinism, and notifications
that agree with the REST answers at any moment."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.sim.genesys import org_bodies
from gcbridge.sim.genesys.org import (
    CONVERSATION_TRANSITIONS,
    LEG_TRANSITIONS,
    WRAPUP_CODES,
    Change,
    ConversationChanged,
    IllegalTransition,
    Leg,
    OrgSettings,
    OrgWorld,
    Phase,
    step,
    step_leg,
)

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86_400.0
EVENTS = sorted({event for _, event in CONVERSATION_TRANSITIONS} | {event for _, event in LEG_TRANSITIONS})


def run(seed: int = 7, seconds: float = DAY, **options: Any) -> tuple[OrgWorld, list[Change]]:
    world = OrgWorld(OrgSettings(seed=seed, **options), START)
    return world, world.advance(START + seconds)


@pytest.fixture(scope="module")
def day() -> tuple[OrgWorld, list[Change]]:
    return run()


# == transition tables ======================================================================================
@pytest.mark.parametrize(("phase", "event"), list(itertools.product(Phase, EVENTS)))
def test_a_conversation_moves_only_along_its_table(phase: Phase, event: str) -> None:
    if (phase, event) in CONVERSATION_TRANSITIONS:
        assert step(phase, event) is CONVERSATION_TRANSITIONS[(phase, event)]
    else:
        with pytest.raises(IllegalTransition, match=f"cannot '{event}' while {phase.value}"):
            step(phase, event)


@pytest.mark.parametrize(("leg", "event"), list(itertools.product(Leg, EVENTS)))
def test_an_agent_leg_moves_only_along_its_table(leg: Leg, event: str) -> None:
    if (leg, event) in LEG_TRANSITIONS:
        assert step_leg(leg, event) is LEG_TRANSITIONS[(leg, event)]
    else:
        with pytest.raises(IllegalTransition):
            step_leg(leg, event)


def test_every_phase_can_reach_the_end_and_the_end_is_final() -> None:
    successors: dict[Phase, set[Phase]] = {p: set() for p in Phase}
    for (before, _), after in CONVERSATION_TRANSITIONS.items():
        successors[before].add(after)
    assert successors[Phase.ENDED] == set()
    for phase in Phase:
        seen, todo = {phase}, [phase]
        while todo:
            for nxt in successors[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert Phase.ENDED in seen, phase


# == a simulated day =========================================================================================
def test_a_day_takes_every_row_of_the_table(day: tuple[OrgWorld, list[Change]]) -> None:
    world, _ = day
    assert set(world.transition_counts) == set(CONVERSATION_TRANSITIONS)


def test_a_day_has_abandoned_transferred_held_and_wrapped_up_conversations(
    day: tuple[OrgWorld, list[Change]],
) -> None:
    world, _ = day
    ended = [c for c in world.conversations() if c.phase is Phase.ENDED]
    assert len(ended) > 500
    abandoned = [c for c in ended if c.abandoned]
    transferred = [c for c in ended if c.transfers]
    assert abandoned
    assert transferred
    assert any(s.kind == "hold" for c in ended for p in c.participants for s in p.segments)
    codes = {code for code, _ in WRAPUP_CODES}
    for conv in ended:
        assert conv.end is not None
        assert conv.end >= conv.start
        assert all(p.call_state == "terminated" and p.end is not None for p in conv.participants)
        agents = [p for p in conv.participants if p.purpose == "agent"]
        for agent in agents:
            if agent.connected is not None:  # everyone who talked did after-call work with a code
                assert agent.wrapup is not None
                assert agent.wrapup.code in codes
                assert agent.segments[-1].kind == "wrapup"
                assert agent.segments[-1].wrapup_code == agent.wrapup.code
            else:
                assert agent.wrapup is None
                assert agent.disconnect_type in ("noAnswerTransfer", "peer")
        if conv.abandoned:
            assert conv.participants[-1].purpose in ("acd", "agent")
            assert conv.participants[0].disconnect_type == "endpoint"
        assert len([p for p in conv.participants if p.purpose == "acd"]) == conv.transfers + 1
        for p in conv.participants:  # segments are contiguous and closed
            assert all(s.end is not None and s.end >= s.start for s in p.segments)
            assert all(a.end == b.start for a, b in itertools.pairwise(p.segments))


def test_routing_status_follows_presence_and_work_at_every_change(day: tuple[OrgWorld, list[Change]]) -> None:
    world, changes = day
    assert any(c.__class__.__name__ == "PresenceChanged" for c in changes)
    for user in world.users.values():
        if user.presence != "ON_QUEUE":
            assert user.routing in ("OFF_QUEUE", "INTERACTING")  # INTERACTING: finishing a conversation
        else:
            assert user.routing in ("IDLE", "INTERACTING", "NOT_RESPONDING")
    ongoing_agents = {
        p.user_id
        for c in world.conversations()
        if c.end is None
        for p in c.participants
        if p.leg in (Leg.ALERTING, Leg.CONNECTED, Leg.HELD, Leg.WRAPUP)
    }
    for uid in ongoing_agents:
        assert world.users[str(uid)].routing == "INTERACTING"


def test_a_simulated_day_is_thousands_of_changes_and_ends_exactly_at_now() -> None:
    world, changes = run(seed=1, seconds=DAY)
    assert world.now == START + DAY
    assert len(changes) > 5000


def test_time_cannot_go_back() -> None:
    world, _ = run(seconds=60)
    with pytest.raises(ValueError, match="time cannot go back"):
        world.advance(START + 10)


def test_settings_reject_nonsense_with_the_name_of_the_field() -> None:
    with pytest.raises(ValueError, match="p_hold"):
        OrgSettings(p_hold=1.5)
    with pytest.raises(ValueError, match="users"):
        OrgSettings(users=0)
    with pytest.raises(ValueError, match="mean_talk"):
        OrgSettings(mean_talk=0)


# == determinism =============================================================================================
def test_the_same_seed_gives_the_same_world_and_another_seed_another() -> None:
    a_world, a = run(seed=11, seconds=4 * 3600)
    b_world, b = run(seed=11, seconds=4 * 3600)
    _, c = run(seed=12, seconds=4 * 3600)
    assert a == b
    assert a_world.conversations() == b_world.conversations()
    assert a != c


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.floats(0, 2 * 3600, allow_nan=False), max_size=8),
)
def test_slicing_time_into_advance_calls_changes_nothing(seed: int, cuts: list[float]) -> None:
    _, whole = run(seed=seed, seconds=2 * 3600)
    world = OrgWorld(OrgSettings(seed=seed), START)
    sliced: list[Change] = []
    for cut in [*sorted(cuts), 2 * 3600]:
        sliced += world.advance(START + cut)
    assert sliced == whole


# == notifications agree with REST answers ===================================================================
def _call_view(participants: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What a conversation's topic body and REST answer must agree on, per participant."""
    return {
        p["id"]: (
            p["purpose"],
            p.get("userId"),
            p.get("queueId"),
            p["calls"][0]["state"],
            p["calls"][0]["held"],
            p["calls"][0].get("disconnectType"),
            p.get("connectedTime"),
            p.get("endTime"),
            (p.get("wrapup") or {}).get("code"),
            (p.get("wrapup") or {}).get("notes"),
        )
        for p in participants
    }


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), seconds=st.floats(0, 3 * 3600, allow_nan=False))
def test_replaying_each_topic_gives_the_rest_answer_at_any_moment(seed: int, seconds: float) -> None:
    world, changes = run(seed=seed, seconds=seconds, calls_per_hour=120)
    last: dict[str, dict[str, Any]] = {}
    last_of_conversation: dict[tuple[str, str], dict[str, Any]] = {}  # a conversation topic carries many
    for change in changes:
        for topic, body in org_bodies.notifications(world, change):
            last[topic] = body
            if topic.endswith(".conversations"):
                last_of_conversation[(topic, body["id"])] = body

    for conv in world.conversations():
        rest = _call_view(org_bodies.rest_conversation(conv)["participants"])
        topics = [f"v2.routing.queues.{q}.conversations" for q in conv.queue_ids]
        topics += [f"v2.users.{u}.conversations" for u in conv.user_ids]
        for topic in topics:
            assert _call_view(last_of_conversation[(topic, conv.id)]["participants"]) == rest, topic
        analytics = org_bodies.analytics_conversation(conv)
        assert ("conversationEnd" in analytics) == (conv.end is not None)

    for user in world.users.values():
        presence = last.get(f"v2.users.{user.id}.presence")
        rest_presence = org_bodies.rest_presence(world, user)
        if presence is not None:
            assert (
                org_bodies.REST_PRESENCE[presence["presenceDefinition"]["systemPresence"]]
                == (rest_presence["presenceDefinition"]["systemPresence"])
            )
            assert presence["modifiedDate"] == rest_presence["modifiedDate"]
            assert presence["presenceDefinition"]["id"] == rest_presence["presenceDefinition"]["id"]
        routing = last.get(f"v2.users.{user.id}.routingStatus")
        rest_routing = org_bodies.rest_routing_status(user, user.id)
        if routing is not None:
            assert routing["id"] == rest_routing["userId"]
            assert routing["routingStatus"] == {k: rest_routing[k] for k in ("status", "startTime")}
        else:  # never changed: the REST answer is still the initial state
            assert user.routing_since == world.start

    metrics = ["oWaiting", "oAlerting", "oInteracting", "oOnQueueUsers", "oOffQueueUsers"]
    for qid in world.queues:
        observed = last.get(f"v2.analytics.queues.{qid}.observations")
        answer = org_bodies.rest_observation(qid, world.observation(qid), metrics)
        if observed is not None:
            assert observed["data"][0]["metrics"] == answer["data"]
            assert observed["group"] == answer["group"]


def test_the_queue_topic_of_a_conversation_carries_its_final_state(
    day: tuple[OrgWorld, list[Change]],
) -> None:
    world, changes = day
    final: dict[str, dict[str, Any]] = {}
    for change in changes:
        if isinstance(change, ConversationChanged):
            final[change.conversation.id] = org_bodies.topic_conversation(change.conversation)
    for conv in world.conversations():
        states = Counter(p["calls"][0]["state"] for p in final[conv.id]["participants"])
        if conv.end is not None:
            assert states == Counter({"terminated": len(conv.participants)})


def test_detail_events_tell_the_lifecycle_in_order(day: tuple[OrgWorld, list[Change]]) -> None:
    world, changes = day
    families: dict[str, list[str]] = {}
    for change in changes:
        for topic, body in org_bodies.notifications(world, change):
            if topic.startswith("v2.detail.events.conversation."):
                conv_id, family = topic.removeprefix("v2.detail.events.conversation.").split(".", 1)
                assert body["conversationId"] == conv_id
                families.setdefault(conv_id, []).append(family)
    for conv in world.conversations():
        seen = families[conv.id]
        assert seen[0] == "customer.start"
        assert seen[1] == "acd.start"
        assert seen.count("acd.start") == seen.count("acd.end") + (
            conv.phase in (Phase.QUEUED, Phase.ALERTING)
        )
        if conv.end is not None:
            assert "customer.end" in seen
            connected = sum(p.connected is not None for p in conv.participants if p.purpose == "agent")
            assert seen.count("acw") == connected
