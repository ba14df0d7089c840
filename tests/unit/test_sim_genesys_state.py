"""Pure parts of the Genesys simulator: topics, grants, channels, tokens, expiry, limits, frames, bodies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.secrets import Secret
from gcbridge.sim.genesys.bodies import BodyGenerator
from gcbridge.sim.genesys.channels import (
    ChannelEnded,
    ChannelRegistry,
    EndReason,
    TopicsTaken,
    new_channel_id,
)
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.core import SimCore
from gcbridge.sim.genesys.frames import OP_CONTINUATION, OP_TEXT, text_frames
from gcbridge.sim.genesys.ratelimit import FixedWindowLimiter
from gcbridge.sim.genesys.subscriptions import Grant, RequestError, grant, topic_ids
from gcbridge.sim.genesys.tokens import AuthFailure, TokenRegistry
from gcbridge.sim.genesys.topics import PermissionModel, TopicError, expand

DAY = 86400.0
TOKEN = Secret("t1")


def granted(*topics: str) -> Grant:
    return grant(list(topics), PermissionModel(), ignore_errors=False)


# -- topics --------------------------------------------------------------------------------------------------
def test_combined_topic_expands_to_individual_topics() -> None:
    assert expand("v2.users.u1?presence&routingStatus&station") == (
        "v2.users.u1.presence",
        "v2.users.u1.routingStatus",
        "v2.users.u1.station",
    )
    assert expand("v2.routing.queues.q1.conversations") == ("v2.routing.queues.q1.conversations",)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "v3.users.u1.presence",
        "v2",
        "v2.users..presence",
        "v2.users.u1?",
        "v2.users.u1?a&&b",
        "channel.metadata",
        "v2.system.socket_closing",
        "v2.users.u 1.presence",
    ],
)
def test_malformed_or_implicit_topics_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError):
        expand(topic)


def test_combined_topic_longer_than_200_characters_is_rejected() -> None:
    prefix = "v2.users.u1?"
    fits = prefix + "&".join(["presence"] * 20)
    fits = fits[: 200 - len("&x")] + "&x" if len(fits) > 200 else fits
    assert len(fits) <= 200
    expand(fits)
    too_long = prefix + "&".join(f"p{i:03d}" for i in range(60))
    assert len(too_long) > 200
    with pytest.raises(TopicError, match="200"):
        expand(too_long)


# -- grants --------------------------------------------------------------------------------------------------
def test_forbidden_topic_fails_whole_request_without_ignore_errors() -> None:
    perms = PermissionModel()
    perms.forbid("v2.detail.events.*")
    with pytest.raises(RequestError) as info:
        grant(["v2.users.u1.presence", "v2.detail.events.conversation.c1.acw"], perms, ignore_errors=False)
    assert (info.value.status, info.value.code) == (403, "missing.permissions")


def test_ignore_errors_reports_rejected_topics_and_keeps_the_rest() -> None:
    perms = PermissionModel()
    perms.forbid("v2.users.*.station", ("telephony:station:view",))
    result = grant(
        ["v2.users.u1?presence&station", "v2.users.u2.station", "not-a-topic"], perms, ignore_errors=True
    )
    assert result.accepted == {"v2.users.u1?presence&station": ("v2.users.u1.presence",)}
    rejected = {e.id: e for e in result.rejected}
    assert set(rejected) == {"v2.users.u1.station", "v2.users.u2.station", "not-a-topic"}
    assert rejected["v2.users.u2.station"].missing_permissions == ("telephony:station:view",)
    assert rejected["v2.users.u1.station"].to_json()["state"] == "Rejected"
    assert "Invalid topic" in (rejected["not-a-topic"].rejection_reason or "")


def test_malformed_topic_without_ignore_errors_is_400() -> None:
    with pytest.raises(RequestError) as info:
        grant(["v2.users.u1.presence", "bogus"], PermissionModel(), ignore_errors=False)
    assert info.value.status == 400


@pytest.mark.parametrize("body", [None, {"id": "x"}, [{"name": "x"}], [{"id": 3}], ["v2.users.u1.presence"]])
def test_subscription_body_must_be_a_list_of_id_objects(body: object) -> None:
    with pytest.raises(RequestError):
        topic_ids(body)


# -- channels ------------------------------------------------------------------------------------------------
def test_channel_ids_look_like_real_ones() -> None:
    channel_id = new_channel_id()
    assert channel_id.startswith("streaming-0-")
    suffix = channel_id.removeprefix("streaming-0-")
    assert len(suffix) == 26
    assert suffix.isalnum()
    assert suffix == suffix.lower()


def test_21st_channel_evicts_oldest_used_unconnected_channel_first() -> None:
    reg = ChannelRegistry(ttl=DAY, max_per_client=20)
    made = [reg.create("c", TOKEN, now=float(i))[0] for i in range(20)]
    for channel in made[:5]:
        reg.set_connected(channel.id, True, now=100.0)  # the oldest five are connected
    reg.touch(made[5].id, now=200.0)  # the 6th is recently used: the 7th is now the oldest unconnected
    _, actions = reg.create("c", TOKEN, now=300.0)
    assert actions == [ChannelEnded(made[6].id, EndReason.EVICTED, "c")]
    assert len(reg.of_client("c")) == 20


def test_when_all_channels_are_connected_the_oldest_used_is_evicted() -> None:
    reg = ChannelRegistry(ttl=DAY, max_per_client=3)
    made = [reg.create("c", TOKEN, now=float(i))[0] for i in range(3)]
    for i, channel in enumerate(made):
        reg.set_connected(channel.id, True, now=10.0 + (2 - i))  # made[2] was used least recently
    _, actions = reg.create("c", TOKEN, now=20.0)
    assert [a.channel_id for a in actions] == [made[2].id]


def test_channel_budget_is_per_oauth_client() -> None:
    reg = ChannelRegistry(ttl=DAY, max_per_client=2)
    reg.create("a", TOKEN, 0.0)
    reg.create("a", TOKEN, 1.0)
    _, actions = reg.create("b", TOKEN, 2.0)
    assert actions == []


def test_channel_expires_24h_after_creation_and_subscribe_extends_it() -> None:
    reg = ChannelRegistry(ttl=DAY)
    channel, _ = reg.create("c", TOKEN, now=0.0)
    assert reg.get(channel.id, DAY - 1) is not None
    reg.subscribe(channel.id, granted("v2.users.u1.presence"), now=DAY - 1, replace=False)
    assert reg.expire(DAY + 1) == []
    assert reg.get(channel.id, 2 * DAY - 2) is not None
    assert reg.expire(2 * DAY - 1) == [ChannelEnded(channel.id, EndReason.EXPIRED, "c")]
    assert reg.get(channel.id, 2 * DAY - 1) is None
    assert reg.recipients("v2.users.u1.presence") == []


def test_channels_of_a_dead_token_end_with_it() -> None:
    reg = ChannelRegistry(ttl=DAY)
    mine, _ = reg.create("c", Secret("old"), 0.0)
    other, _ = reg.create("c", Secret("new"), 0.0)
    assert reg.expire(5.0, dead_tokens=["old"]) == [ChannelEnded(mine.id, EndReason.TOKEN_EXPIRED, "c")]
    assert reg.get(other.id, 5.0) is not None


def test_post_adds_put_replaces_and_limit_is_enforced_atomically() -> None:
    reg = ChannelRegistry(ttl=DAY, max_topics=3)
    channel, _ = reg.create("c", TOKEN, 0.0)
    reg.subscribe(channel.id, granted("v2.users.a.presence", "v2.users.b.presence"), 1.0, replace=False)
    reg.subscribe(channel.id, granted("v2.users.c.presence"), 2.0, replace=False)
    assert channel.topics == ["v2.users.a.presence", "v2.users.b.presence", "v2.users.c.presence"]
    with pytest.raises(RequestError) as info:
        reg.subscribe(channel.id, granted("v2.users.d.presence"), 3.0, replace=False)
    assert info.value.status == 400
    assert len(channel.topics) == 3
    reg.subscribe(channel.id, granted("v2.users.z?presence&routingStatus"), 4.0, replace=True)
    assert channel.topics == ["v2.users.z?presence&routingStatus"]
    assert channel.individual_topics == {"v2.users.z.presence", "v2.users.z.routingStatus"}
    assert reg.recipients("v2.users.a.presence") == []
    assert reg.recipients("v2.users.z.routingStatus") == [channel]


def test_shared_topics_reach_every_subscribed_channel() -> None:
    reg = ChannelRegistry(ttl=DAY, exclusive=False)
    one, _ = reg.create("c", TOKEN, 0.0)
    two, _ = reg.create("c", TOKEN, 1.0)
    reg.subscribe(one.id, granted("v2.users.u.presence"), 2.0, replace=False)
    assert reg.subscribe(two.id, granted("v2.users.u.presence"), 3.0, replace=False) == []
    assert reg.recipients("v2.users.u.presence") == [one, two]


def test_exclusive_topics_move_to_the_newest_subscriber_of_the_same_client() -> None:
    reg = ChannelRegistry(ttl=DAY, exclusive=True)
    old, _ = reg.create("c", TOKEN, 0.0)
    new, _ = reg.create("c", TOKEN, 1.0)
    foreign, _ = reg.create("other-client", TOKEN, 1.0)
    reg.subscribe(old.id, granted("v2.users.u?presence&routingStatus"), 2.0, replace=False)
    reg.subscribe(foreign.id, granted("v2.users.u.presence"), 2.0, replace=False)
    actions = reg.subscribe(new.id, granted("v2.users.u.presence"), 3.0, replace=False)
    assert actions == [TopicsTaken(old.id, ("v2.users.u.presence",), new.id)]
    assert old.individual_topics == {"v2.users.u.routingStatus"}
    assert {c.id for c in reg.recipients("v2.users.u.presence")} == {new.id, foreign.id}


# -- tokens and core -----------------------------------------------------------------------------------------
def test_token_registry_authenticates_issues_and_expires() -> None:
    reg = TokenRegistry(ttl=100.0)
    reg.add_client("cid", "secret")
    assert reg.authenticate("nope", "secret") is AuthFailure.UNKNOWN_CLIENT
    assert reg.authenticate("cid", "wrong") is AuthFailure.BAD_SECRET
    assert reg.authenticate("cid", "secret") is None
    record = reg.issue("cid", now=0.0)
    token = record.value.reveal()
    assert token not in repr(record)
    assert reg.validate(token, 99.9) is record
    assert reg.validate(token, 100.0) is None
    assert reg.newly_dead(100.0) == [record]
    assert reg.newly_dead(200.0) == []


def test_a_day_of_channel_and_token_lifecycle_runs_on_an_injected_clock() -> None:
    core = SimCore(SimConfig(token_ttl=DAY - 1, channel_ttl=DAY))
    record = core.tokens.issue("sim-client", now=0.0)
    channel, _ = core.channels.create("sim-client", record.value, now=0.0)
    assert core.next_deadline(0.0) == DAY - 1
    assert core.tick(DAY - 2) == []
    assert core.tick(DAY - 1) == [ChannelEnded(channel.id, EndReason.TOKEN_EXPIRED, "sim-client")]


def test_channels_can_outlive_their_token_when_configured() -> None:
    core = SimCore(SimConfig(token_ttl=10.0, channel_ttl=DAY, channel_dies_with_token=False))
    record = core.tokens.issue("sim-client", now=0.0)
    channel, _ = core.channels.create("sim-client", record.value, now=0.0)
    assert core.tick(11.0) == []
    assert core.revoke(None, 12.0) == []
    assert core.channels.get(channel.id, 12.0) is not None


def test_revoke_ends_the_token_channels_once() -> None:
    core = SimCore(SimConfig())
    record = core.tokens.issue("sim-client", now=0.0)
    channel, _ = core.channels.create("sim-client", record.value, now=0.0)
    assert core.revoke(record.value.reveal(), 1.0) == [
        ChannelEnded(channel.id, EndReason.TOKEN_REVOKED, "sim-client")
    ]
    assert core.tokens.validate(record.value.reveal(), 1.0) is None
    assert core.tick(2.0) == []


def test_time_scale_divides_lifetimes() -> None:
    core = SimCore(SimConfig(token_ttl=86399.0, channel_ttl=DAY, time_scale=1000.0))
    assert core.tokens.ttl == pytest.approx(86.399)
    assert core.channels.ttl == pytest.approx(86.4)


def test_fixed_window_rate_limit() -> None:
    limiter = FixedWindowLimiter(limit=2, window=60.0)
    assert limiter.hit("t", 0.0).allowed
    assert limiter.hit("t", 1.0).allowed
    refused = limiter.hit("t", 10.0)
    assert not refused.allowed
    assert refused.retry_after == 50
    assert limiter.hit("other", 10.0).allowed
    assert limiter.hit("t", 60.0).allowed


def test_the_reset_of_a_new_window_is_the_window_even_where_the_loop_clock_rounds() -> None:
    # 65520.73... + 60 crosses 2**16 and rounds up: ``start + window - now`` was 60.000000000007 -> 61 s.
    now = 65520.73091159827
    decision = FixedWindowLimiter(limit=300, window=60.0).hit("t", now)
    assert decision.reset_after == 60.0
    assert decision.retry_after == 60


@given(
    start=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    later=st.floats(min_value=-5.0, max_value=200.0, allow_nan=False),
)
def test_the_reset_stays_within_the_window(start: float, later: float) -> None:
    limiter = FixedWindowLimiter(limit=1, window=60.0)
    limiter.hit("t", start)
    decision = limiter.hit("t", start + later)  # a clock that steps back included
    assert 0.0 <= decision.reset_after <= 60.0
    assert 1 <= decision.retry_after <= 60


# -- frames and bodies ---------------------------------------------------------------------------------------
def _parse(frames: list[bytes]) -> list[tuple[bool, int, bytes]]:
    parsed = []
    for raw in frames:
        first, second = raw[0], raw[1]
        assert second & 0x80 == 0  # server frames are unmasked
        length, offset = second & 0x7F, 2
        if length == 126:
            (length,), offset = struct.unpack("!H", raw[2:4]), 4
        elif length == 127:
            (length,), offset = struct.unpack("!Q", raw[2:10]), 10
        payload = raw[offset:]
        assert len(payload) == length
        parsed.append((bool(first & 0x80), first & 0x0F, payload))
    return parsed


@pytest.mark.parametrize(
    ("size", "max_frame"), [(10, 100), (100, 100), (101, 100), (70_000, 65_536), (5000, 7)]
)
def test_text_frames_fragment_and_reassemble(size: int, max_frame: int) -> None:
    payload = ("é" * size).encode()[:size]
    parsed = _parse(text_frames(payload, max_frame))
    assert b"".join(p for _, _, p in parsed) == payload
    assert [fin for fin, _, _ in parsed] == [False] * (len(parsed) - 1) + [True]
    assert [op for _, op, _ in parsed] == [OP_TEXT] + [OP_CONTINUATION] * (len(parsed) - 1)
    assert all(len(p) <= max_frame for _, _, p in parsed)
    assert len(parsed) == max(1, -(-size // max_frame))


def test_generated_bodies_carry_conversation_keys() -> None:
    gen = BodyGenerator(seed=7)
    conv = gen.body("v2.routing.queues.q1.conversations")
    assert conv["id"]
    assert {p["purpose"] for p in conv["participants"]} == {"customer", "agent"}
    assert conv["participants"][1]["queueId"] == "q1"
    detail = gen.body("v2.detail.events.conversation.c-42.acd.start")
    assert detail["conversationId"] == "c-42"
    assert gen.body("v2.users.u1.presence")["presenceDefinition"]["systemPresence"]
    assert gen.body("v2.users.u1.routingStatus")["routingStatus"]["status"]
    assert gen.body("v2.analytics.queues.q9.observations")["group"]["queueId"] == "q9"
    assert len(str(gen.body("v2.users.u1.conversations", size_hint=50_000))) > 50_000


def test_revoking_one_token_does_not_hide_another_tokens_expiry() -> None:
    core = SimCore(SimConfig(token_ttl=10.0))
    short = core.tokens.issue("sim-client", now=0.0)
    kept = core.tokens.issue("sim-client", now=5.0)
    channel, _ = core.channels.create("sim-client", short.value, now=0.0)
    core.revoke(kept.value.reveal(), now=11.0)  # short has expired at 10 but no tick has run yet
    assert core.tick(11.0) == [ChannelEnded(channel.id, EndReason.TOKEN_EXPIRED, "sim-client")]


def test_a_week_of_short_tokens_keeps_no_rate_limit_window_per_dead_token() -> None:
    core = SimCore(SimConfig(token_ttl=3600.0))
    for hour in range(7 * 24):
        now = hour * 3600.0
        core.tick(now)
        token = core.tokens.issue("sim-client", now).value.reveal()
        assert core.api_limiter.hit(token, now).allowed
    assert len(core.api_limiter) == 1  # only the live token's window
