"""NotificationClient acceptance checks: combined topics with a forbidden part, and no secret anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from gcbridge.genesys import ClientOptions, Gap, InvalidClientError, NotificationClient
from gcbridge.genesys.rest import NotificationsApi
from gcbridge.sim.genesys.rest import RestApi
from gcbridge.sim.genesys.tokens import AuthFailure, TokenRecord
from tests.library_logs import capture_logs

from .client_harness import (
    FAST,
    Collected,
    audit,
    client_for,
    collect,
    other_tasks,
    publish_until_received,
    wait_until,
)
from .conftest import SimFactory

Handler = Callable[[RestApi, web.Request], Awaitable[web.StreamResponse]]
USER = "v2.users.7a1c4b8e-1111-4222-8333-444455556666"


async def test_combined_topic_with_a_forbidden_part_keeps_the_permitted_parts(
    genesys_sim_factory: SimFactory,
) -> None:
    # Spec 2.2: with ignoreErrors the combined id comes back Permitted plus a Rejected expanded topic.
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    sim.forbid_topic("v2.users.*.station")
    wanted = [f"{USER}.presence", f"{USER}.station", f"{USER}.routingStatus"]
    async with client_for(sim) as client:
        result = await client.subscribe(wanted)
        assert set(result.permitted) == {f"{USER}.presence", f"{USER}.routingStatus"}
        assert set(result.rejected) == {f"{USER}.station"}
        assert client.topics == frozenset(result.permitted)
        (channel,) = sim.channels
        assert channel.individual_topics == set(result.permitted)  # combined on the wire, station dropped
        assert any("?" in t for t in channel.topics)
        got = collect(client)
        await publish_until_received(sim, got, f"{USER}.presence")
        await publish_until_received(sim, got, f"{USER}.routingStatus")
        # a rotation re-subscribes the permitted topics only: the rejected one is not retried
        before = channel.id
        await sim.socket_closing(grace=5.0)
        await wait_until(lambda: client.stats().paths[0].channel_id != before, what="rotation")
        live = sim.channel(client.stats().paths[0].channel_id)
        assert live is not None
        assert live.individual_topics == set(result.permitted)
        await publish_until_received(sim, got, f"{USER}.presence")
        assert client.stats().rejected_topics.keys() == {f"{USER}.station"}
    assert got.gaps == []
    assert {e.topic for e in got.events} == set(result.permitted)


async def test_no_secret_or_token_in_logs_reprs_errors_or_stream(
    genesys_sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    issued: list[str] = []
    issue = sim.core.tokens.issue

    def recording_issue(client_id: str, now: float) -> TokenRecord:
        record = issue(client_id, now)
        issued.append(record.value.reveal())
        return record

    sim.core.tokens.issue = recording_issue  # type: ignore[method-assign]
    secret = sim.config.client_secret
    topic = f"{USER}.presence"
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        async with client_for(sim) as client:
            await client.subscribe([topic])
            got = collect(client)
            await publish_until_received(sim, got, topic)
            sim.revoke_token()  # every call with the old token now gets a 401; sockets get token_revoked
            await wait_until(lambda: len(issued) >= 2, what="a new token")
            await publish_until_received(sim, got, topic)
            sim.fail_next_rest(2, status=503)
            await sim.drop_socket()
            await wait_until(lambda: bool(got.gaps), what="a gap")
            await publish_until_received(sim, got, topic)
            texts += [repr(client), str(client.stats()), repr(client.stats()), repr(got.lifecycle)]
            texts += [repr(got.gaps), repr(got.events[:5])]
        bad = client_for(sim)
        bad._creds[0] = (sim.config.client_id, type(bad._creds[0][1])("not-the-secret"))
        with pytest.raises(InvalidClientError) as info:
            await bad.start()
        texts += [str(info.value), repr(info.value), repr(bad)]
    assert len(issued) >= 2
    texts += [repr(logs), caplog.text]
    assert len(logs) > 5  # the lifecycle was logged, so the check below looked at something
    for text in texts:
        for value in [secret, "not-the-secret", *issued]:
            assert value not in text


async def test_concurrent_subscription_changes_never_overlap_on_a_channel(
    genesys_sim_factory: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    calls: list[str] = []

    def serialised_check(original: Handler) -> Handler:
        async def handler(self: RestApi, request: web.Request) -> web.StreamResponse:
            channel_id = request.match_info["channel_id"]
            calls.append(request.method)
            in_flight[channel_id] = in_flight.get(channel_id, 0) + 1
            most[channel_id] = max(most.get(channel_id, 0), in_flight[channel_id])
            try:
                await asyncio.sleep(0.02)  # widen the window in which an overlapping change would show
                return await original(self, request)
            finally:
                in_flight[channel_id] -= 1

        return handler

    for name in ("replace_subscriptions", "add_subscriptions", "delete_subscriptions"):
        monkeypatch.setattr(RestApi, name, serialised_check(getattr(RestApi, name)))
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    topics = [f"v2.routing.queues.q{i:02d}.conversations" for i in range(30)]
    async with client_for(sim) as client:
        await client.subscribe(topics[:1])
        results = await asyncio.gather(*(client.subscribe([t]) for t in topics[1:]))
        dropped = topics[25:]
        await asyncio.gather(*(client.unsubscribe([t]) for t in dropped))
        kept = set(topics) - set(dropped)
        assert all(set(r.permitted) <= set(topics) for r in results)
        assert client.topics == kept
        await wait_until(
            lambda: [c.individual_topics for c in sim.channels if c.connected] == [kept], what="final list"
        )
        got = collect(client)
        for topic in sorted(kept):
            await publish_until_received(sim, got, topic)
    assert len(calls) >= 3, calls  # first subscribe, the burst of additions, the burst of removals
    assert max(most.values()) == 1, most


@pytest.mark.parametrize("moment", ["stalled", "rotating", "backing_off"])
async def test_aclose_in_the_middle_of_recovery_leaves_nothing_running(
    genesys_sim_factory: SimFactory, moment: str
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    before = other_tasks(sim)
    client = client_for(sim)
    await client.start()
    await client.subscribe([f"{USER}.presence"])
    got = collect(client)
    await publish_until_received(sim, got, f"{USER}.presence")
    sim.set_rest_delay(0.3)  # keep REST calls (HEAD, create, PUT) in flight when aclose() comes
    if moment == "stalled":
        sim.stall_socket()
    elif moment == "rotating":
        await sim.socket_closing(grace=30.0)
        await wait_until(lambda: "rotating" in {e.kind for e in got.lifecycle}, what="a rotation")
    else:
        sim.refuse_handshakes(1000)
        await sim.drop_socket()
        await wait_until(lambda: "reconnecting" in {e.kind for e in got.lifecycle}, what="a reconnect")
    await asyncio.wait_for(client.aclose(), 30)
    assert got.task is not None
    await asyncio.wait_for(got.task, 5)  # the stream ends
    await wait_until(lambda: not other_tasks(sim) - before, within=10, what="no client task left")
    # the server saw every socket end (a stalled one too, which connected_channel_ids would not list)
    await wait_until(lambda: not any(c.connected for c in sim.channels), within=10, what="sockets closed")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        # only the ping/pong check can fire in time: the heartbeat watchdog is out of reach
        (
            dataclasses.replace(FAST, heartbeat_timeout=25.0, ping_interval=0.5, pong_timeout=0.5),
            "pong_timeout",
        ),
        # only the heartbeat watchdog can fire in time: no ping is sent before it
        (
            dataclasses.replace(FAST, heartbeat_timeout=2.0, ping_interval=25.0, pong_timeout=0.5),
            "heartbeat_timeout",
        ),
    ],
)
async def test_a_stall_is_detected_by_the_configured_bound_and_recovered(
    genesys_sim_factory: SimFactory, options: ClientOptions, reason: str
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.25)
    topic = f"{USER}.presence"
    async with client_for(sim, options) as client:
        await client.subscribe([topic])
        got = collect(client)
        await publish_until_received(sim, got, topic)
        sim.stall_socket()
        stalled = sim.publish(topic)  # lost: the socket is silent
        await wait_until(lambda: bool(got.gaps), within=20, what="the stall detected and recovered")
        after = await publish_until_received(sim, got, topic)
        stats = client.stats()
    (gap,) = got.gaps
    assert gap.reason == reason
    assert stats.reconnects_by_reason == {reason: 1}
    assert gap.seconds < 25.0  # recovered well before the other (unreachable) mechanism could fire
    record = next(r for r in sim.ledger if r.seq == stalled)
    assert gap.start <= record.published_at <= gap.end
    assert after in set(got.seqs())
    assert stalled not in set(got.seqs())


async def test_a_server_that_accepts_and_closes_at_once_causes_no_tight_loop(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    topic = f"{USER}.presence"
    async with client_for(sim) as client:
        await client.subscribe([topic])
        got = collect(client)
        await publish_until_received(sim, got, topic)
        accepted = 0

        async def hang_up_on_every_socket() -> None:
            nonlocal accepted
            while True:
                for channel_id in sim.connected_channel_ids:
                    accepted += 1
                    await sim.close_socket(1011, channel_id)
                await asyncio.sleep(0.005)

        killer = asyncio.get_running_loop().create_task(hang_up_on_every_socket())
        await asyncio.sleep(3.0)
        killer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killer
        # backoff 0.25 s doubling with full jitter, never reset by a connection that did not stay healthy
        # (healthy_period): a handful of connections in 3 s, where a tight loop would make hundreds
        assert 1 <= accepted <= 15
        assert len(sim.channels) <= 2  # and no new channel per attempt
        await publish_until_received(sim, got, topic, within=60)


async def test_thousands_of_topics_are_sharded_under_the_limit_and_stay_put(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    topics = [f"v2.users.{i:06d}ee-0000-4000-8000-000000000000.presence" for i in range(2500)]
    async with client_for(sim) as client:
        result = await client.subscribe(topics)
        assert set(result.permitted) == set(topics)
        live = [c for c in sim.channels if c.connected]
        assert len(live) == 3
        assert all(len(c.individual_topics) <= 1000 for c in live)
        assert set().union(*(c.individual_topics for c in live)) == set(topics)
        where = {t: c.id for c in live for t in c.individual_topics}
        extra = "v2.users.999999ee-0000-4000-8000-000000000000.presence"
        await client.subscribe([extra])
        now_live = [c for c in sim.channels if c.connected]
        moved = {t for c in now_live for t in c.individual_topics if t in where and where[t] != c.id}
        assert moved == set()  # adding a topic moved no other topic
        assert extra in set().union(*(c.individual_topics for c in now_live))
        got = collect(client)
        for channel in live:  # one event through every shard
            await publish_until_received(sim, got, min(channel.individual_topics))
        assert client.stats().channels_held == 3


@pytest.mark.parametrize("batches", [False, True], ids=["items", "batches"])
async def test_secret_revoked_while_running_is_fatal_and_ends_the_stream_with_a_clear_error(
    genesys_sim_factory: SimFactory, batches: bool
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    topic = f"{USER}.presence"
    before = other_tasks(sim)
    async with client_for(sim) as client:
        await client.subscribe([topic])
        got = collect(client, batches)
        await publish_until_received(sim, got, topic)
        sim.add_oauth_client(sim.config.client_id, "a-rotated-secret")  # an admin rotated the secret
        attempts: list[str] = []
        authenticate = sim.core.tokens.authenticate

        def counting(client_id: str, secret: str) -> AuthFailure | None:
            attempts.append(client_id)
            return authenticate(client_id, secret)

        sim.core.tokens.authenticate = counting  # type: ignore[method-assign]
        sim.revoke_token()  # the client needs a new token now, and cannot get one
        assert got.task is not None
        with pytest.raises(InvalidClientError, match="wrong client secret"):
            await asyncio.wait_for(got.task, 30)
        assert [e.kind for e in got.lifecycle].count("fatal") == 1
        assert len(attempts) == 1  # invalid_client is not retried
        await asyncio.sleep(0.5)
        assert len(attempts) == 1  # fatal: no more token requests
    await wait_until(lambda: not other_tasks(sim) - before, within=10, what="no client task left")


async def test_distinct_events_with_identical_bodies_all_arrive_over_two_paths(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    sim.add_oauth_client("second-client", "second-secret")
    topic = f"{USER}.routingStatus"
    async with client_for(sim, extra_credentials=[("second-client", "second-secret")]) as client:
        await client.subscribe([topic])
        got = collect(client)
        await wait_until(lambda: sum(p.state == "live" for p in client.stats().paths) == 2, what="two paths")
        await publish_until_received(sim, got, topic)
        body = {"routingStatus": {"status": "IDLE"}}  # e.g. IDLE -> (nothing else changed) -> IDLE again
        published = [sim.publish(topic, body) for _ in range(3)]
        marker = await publish_until_received(sim, got, topic)  # arrives after the three
        assert all(len(r.sent_to) == 2 for r in sim.ledger if r.seq in published)  # each sent on both paths
        received = [s for s in got.seqs() if s in published]
    assert marker in set(got.seqs())
    assert got.gaps == []
    assert received == published  # three events, each once (the second path's copies removed)


async def test_a_drop_on_one_shard_reports_a_gap_for_that_shard_only(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    topics = [f"v2.users.{i:04d}ffff-0000-4000-8000-000000000000.presence" for i in range(2)]
    options = dataclasses.replace(FAST, max_topics_per_channel=1, combine_topics=False)
    async with client_for(sim, options) as client:
        await client.subscribe(topics)
        got = collect(client)
        for topic in topics:
            await publish_until_received(sim, got, topic)
        (victim,) = [c for c in sim.channels if topics[0] in c.individual_topics]
        sim.start_traffic(200, topics)
        await asyncio.sleep(0.3)
        await sim.drop_socket(victim.id)
        await wait_until(lambda: bool(got.gaps), what="a gap")
        await publish_until_received(sim, got, topics[0])
        await sim.stop_traffic()
        await publish_until_received(sim, got, topics[1])
    (gap,) = got.gaps
    assert gap.topics == (topics[0],)
    received, in_gap = audit(sim, got, set(topics))
    other = {r.seq for r in sim.ledger if r.topic == topics[1]}
    assert other <= received  # the other shard lost nothing
    assert not in_gap & other


async def test_a_404_message_on_connect_replaces_the_channel(
    genesys_sim_factory: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The WebSocket of a dead channel is accepted, answers {"result":"404"} and closes (the switchable
    # simulator mode); the HEAD that preceded it raced the expiry and still said the channel existed.
    sim = await genesys_sim_factory(heartbeat_interval=0.5, missing_channel_ws="message")
    topic = f"{USER}.presence"

    async def stale_head(self: NotificationsApi, channel_id: str) -> bool:
        return True

    monkeypatch.setattr(NotificationsApi, "channel_exists", stale_head)
    async with client_for(sim) as client:
        await client.subscribe([topic])
        got = collect(client)
        await publish_until_received(sim, got, topic)
        first = client.stats().paths[0].channel_id
        assert sim.expire_channel(first)
        await wait_until(lambda: bool(got.gaps), what="a gap")
        await publish_until_received(sim, got, topic)
        stats = client.stats()
    assert stats.paths[0].channel_id != first
    assert "channel_gone" in stats.reconnects_by_reason
    audit(sim, got, {topic})


async def test_a_combined_topic_rejected_as_a_whole_rejects_each_of_its_topics(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    other = "v2.users.8b2d5c9f-1111-4222-8333-444455556666"
    sim.forbid_topic(f"{USER}.*")
    async with client_for(sim) as client:
        result = await client.subscribe([f"{USER}.presence", f"{USER}.station", f"{other}.presence"])
        assert result.permitted == (f"{other}.presence",)
        assert set(result.rejected) == {f"{USER}.presence", f"{USER}.station"}
        assert client.topics == {f"{other}.presence"}
        (channel,) = sim.channels
        assert channel.individual_topics == {f"{other}.presence"}


@dataclasses.dataclass
class SlowConsumer:
    """Collects the client's items, sleeping after each while ``slow`` is set (about 100 items/s), so that
    the client's buffer fills and its reader is held back."""

    got: Collected = dataclasses.field(default_factory=Collected)
    slow: bool = True


def consume_slowly(client: NotificationClient) -> SlowConsumer:
    consumer = SlowConsumer()

    async def consume() -> None:
        async for item in client:
            (consumer.got.gaps if isinstance(item, Gap) else consumer.got.events).append(item)  # type: ignore[arg-type]
            if consumer.slow:
                await asyncio.sleep(0.01)

    consumer.got.task = asyncio.get_running_loop().create_task(consume())
    return consumer


async def test_a_drop_while_a_slow_consumer_holds_the_reader_back_loses_nothing_silently(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    topic = f"{USER}.presence"
    async with client_for(sim, dataclasses.replace(FAST, queue_size=1)) as client:
        await client.subscribe([topic])
        consumer = consume_slowly(client)
        got = consumer.got
        await publish_until_received(sim, got, topic)
        for i in range(6000):  # ~24 MB: far more than the socket buffers hold
            sim.publish(topic, {"i": i, "pad": "x" * 4000})
        await asyncio.sleep(1.0)  # the consumer has taken ~100; the rest waits, much of it on the server
        await sim.drop_socket()  # what the server had not written yet is lost
        consumer.slow = False
        await wait_until(lambda: bool(got.gaps), what="a gap")
        await publish_until_received(sim, got, topic)
    assert len(got.events) < len(sim.ledger)  # events were lost ...
    audit(sim, got, {topic})  # ... and every one of them must be inside a reported gap


async def test_once_the_reader_caught_up_a_later_drop_starts_its_gap_at_the_last_frame(
    genesys_sim_factory: SimFactory,
) -> None:
    # the other side of the test above: the backlog that back-pressure opened closes when the reader has
    # caught up, so that a later gap does not reach back to the time the consumer was slow
    sim = await genesys_sim_factory(heartbeat_interval=0.2)
    topic = f"{USER}.presence"
    async with client_for(sim, dataclasses.replace(FAST, queue_size=1)) as client:
        await client.subscribe([topic])
        consumer = consume_slowly(client)
        got = consumer.got
        await publish_until_received(sim, got, topic)

        def backlogs() -> list[float | None]:
            return [s.health.backlog_since for s in client._sockets.values()]

        for i in range(300):
            sim.publish(topic, {"i": i})
        await wait_until(lambda: any(b is not None for b in backlogs()), what="back-pressure")
        consumer.slow, fast_since = False, time.time()  # the backlog opened before this moment
        await publish_until_received(sim, got, topic)
        await wait_until(lambda: backlogs() == [None], what="the reader caught up")
        await sim.drop_socket()
        await wait_until(lambda: bool(got.gaps), what="a gap")
        await publish_until_received(sim, got, topic)
    (gap,) = got.gaps
    assert gap.start > fast_since - FAST.gap_margin  # from the last frame read, not the backlog's start
    audit(sim, got, {topic})
