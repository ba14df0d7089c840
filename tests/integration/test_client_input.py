"""Bad input from the server is counted, logged and survived; an oversize message costs one reconnect."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from gcbridge.genesys.socket import Frame, classify

from .client_harness import FAST, audit, client_for, publish_until_received, receiving, wait_until
from .conftest import SimFactory

TOPIC = "v2.users.0000cccc-0000-4000-8000-000000000001.presence"


def test_classify_never_raises() -> None:
    assert classify([]) is Frame.MALFORMED
    assert classify({"topicName": 7}) is Frame.MALFORMED
    assert classify({"result": "404", "message": "gone"}) is Frame.CHANNEL_GONE
    assert classify({"topicName": "channel.metadata", "eventBody": {"message": "pong"}}) is Frame.PONG
    assert classify({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}}) is (
        Frame.HEARTBEAT
    )
    assert classify({"topicName": "v2.system.socket_closing"}) is Frame.SYSTEM
    assert classify({"topicName": TOPIC, "eventBody": {}}) is Frame.EVENT
    assert classify({"correlationId": "x", "result": "200"}) is Frame.REPLY


async def test_malformed_frames_and_unknown_topics_do_not_hurt(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    async with client_for(sim) as client:
        got = await receiving(sim, client, [TOPIC])
        conn = sim._connections[client.stats().paths[0].channel_id]
        for junk in (b"not json", b"[1,2]", b'{"topicName": 5}'):
            conn.send_payload(junk)
        cut = b'{"topicName":"' + TOPIC.encode() + b'","eventBody":{'  # starts like an event, then ends
        conn.send_payload(cut)
        unknown = b'{"topicName":"v2.users.someone-else.presence","eventBody":{"x":1},"metadata":{}}'
        conn.send_payload(unknown)
        await publish_until_received(sim, got, TOPIC)
        stats = client.stats()
    assert stats.malformed_frames == 4
    assert stats.unknown_topic_events == 1
    assert any(e.topic == "v2.users.someone-else.presence" for e in got.events)  # delivered, not lost
    assert got.gaps == []
    assert stats.reconnects_by_reason == {}
    dropped = [e.reason for e in got.lifecycle if e.kind == "dropped"]
    assert len(dropped) == 4
    assert sum(1 for reason in dropped if reason.startswith("not JSON")) == 2  # "not json" and the cut frame
    audit(sim, got, {TOPIC})


async def test_unsubscribed_topic_is_said_once_per_topic(
    genesys_sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    caplog.set_level(logging.DEBUG, logger="gcbridge.genesys")
    async with client_for(sim) as client:
        got = await receiving(sim, client, [TOPIC])
        conn = sim._connections[client.stats().paths[0].channel_id]
        for n, who in enumerate(["a", "a", "a", "b"]):
            frame = {"topicName": f"v2.users.{who}.presence", "eventBody": {"n": n}, "metadata": {}}
            conn.send_payload(json.dumps(frame).encode())
        await wait_until(lambda: client.stats().unknown_topic_events == 4, what="four unknown events")
        await publish_until_received(sim, got, TOPIC)
    said = [r for r in caplog.records if r.getMessage().startswith("event for a topic not subscribed")]
    assert [r.levelno for r in said].count(logging.INFO) == 2  # one per topic, not one per event
    assert [r.levelno for r in said].count(logging.DEBUG) == 2
    assert sum(1 for e in got.events if e.topic.startswith("v2.users.a.")) == 3  # all delivered


async def test_oversize_message_is_reported_and_survived(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=0.5)
    opts = dataclasses.replace(FAST, max_message_size=4096)
    async with client_for(sim, opts) as client:
        got = await receiving(sim, client, [TOPIC])
        sim.publish(TOPIC, {"big": "x" * 10_000})
        await wait_until(lambda: client.stats().malformed_frames >= 1, what="oversize counted")
        await publish_until_received(sim, got, TOPIC)
        stats = client.stats()
    assert "oversize_message" in stats.reconnects_by_reason
    assert len(got.gaps) == 1  # the big event itself is inside the reported gap
    audit(sim, got, {TOPIC})
