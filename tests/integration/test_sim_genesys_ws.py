"""The notification WebSocket (spec 2.4): handshake, heartbeats, ping, WS subscribe, events, fragments."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest

from gcbridge import _json
from gcbridge.sim.genesys import GenesysSim
from tests.integration.conftest import SimClient, SimFactory, next_json, wait_for

HEARTBEAT = {"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}}


async def test_unknown_channel_upgrade_fails_with_404(sim_client: SimClient) -> None:
    url = sim_client.sim.base_url.replace("http", "ws") + "/channels/streaming-0-" + "a" * 26
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await sim_client.session.ws_connect(url)
    assert info.value.status == 404


async def test_unknown_channel_in_message_mode(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await genesys_sim_factory(missing_channel_ws="message")
    client = client_factory(sim)
    ws = await client.session.ws_connect(sim.base_url.replace("http", "ws") + "/channels/streaming-0-gone")
    message = await next_json(ws)
    assert message["result"] == "404"
    assert message["message"]
    closing = await ws.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE


async def test_plain_get_on_socket_path_is_400(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    async with sim_client.session.get(channel["connectUri"].replace("ws://", "http://")) as resp:
        assert resp.status == 400


async def test_heartbeats_arrive_at_the_configured_interval(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await genesys_sim_factory(heartbeat_interval=30.0, time_scale=300.0)  # every 0.1 s
    client = client_factory(sim)
    await client.get_token()
    ws = await client.connect(await client.create_channel())
    received = [await next_json(ws, skip_heartbeats=False) for _ in range(3)]
    assert received == [HEARTBEAT] * 3


async def test_ping_message_gets_pong_and_junk_gets_an_error(sim_client: SimClient) -> None:
    ws = await sim_client.connect(await sim_client.create_channel())
    await ws.send_json({"message": "ping"})
    assert await next_json(ws) == {"topicName": "channel.metadata", "eventBody": {"message": "pong"}}
    await ws.send_str("2026-11-29 12:00:00")
    error = await next_json(ws)
    assert (error["result"], error["status"]) == ("400", "error")
    await ws.send_json({"message": "dance"})
    assert (await next_json(ws))["result"] == "400"
    await ws.send_json({"message": "ping"})
    assert (await next_json(ws))["eventBody"] == {"message": "pong"}


async def test_protocol_ping_gets_protocol_pong(sim_client: SimClient) -> None:
    ws = await sim_client.session.ws_connect(
        (await sim_client.create_channel())["connectUri"], autoping=False
    )
    await ws.ping(b"hello")
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.PONG
    assert msg.data == b"hello"


async def test_ws_subscribe_ack_then_events_and_unsubscribe(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    ws = await sim_client.connect(channel)
    await ws.send_json(
        {"message": "subscribe", "topics": ["v2.users.u1?presence&routingStatus"], "correlationId": "abc"}
    )
    ack = await next_json(ws)
    assert ack == {
        "correlationId": "abc",
        "topics": ["v2.users.u1?presence&routingStatus"],
        "result": "200",
        "status": "subscribed",
    }
    sim = sim_client.sim
    seq_presence = sim.publish("v2.users.u1.presence")
    seq_status = sim.publish("v2.users.u1.routingStatus")
    first, second = await next_json(ws), await next_json(ws)
    assert first["topicName"] == "v2.users.u1.presence"  # a combined topic is delivered per topic
    assert second["topicName"] == "v2.users.u1.routingStatus"
    assert first["version"] == "2"
    assert first["metadata"]["simSequence"] == seq_presence
    assert second["metadata"]["simSequence"] == seq_status
    assert first["metadata"]["CorrelationId"] == sim.ledger[-2].correlation_id
    assert first["eventBody"] == sim.ledger[-2].body
    await ws.send_json({"message": "unsubscribe", "topics": ["v2.users.u1?presence&routingStatus"]})
    assert (await next_json(ws))["status"] == "unsubscribed"
    sim.publish("v2.users.u1.presence")
    assert sim.ledger[-1].deliveries == []


async def test_ws_subscribe_errors(sim_client: SimClient) -> None:
    sim_client.sim.forbid_topic("v2.analytics.*")
    ws = await sim_client.connect(await sim_client.create_channel())
    await ws.send_json({"message": "subscribe", "correlationId": "k1"})
    missing = await next_json(ws)
    assert missing == {
        "correlationId": "k1",
        "topics": [],
        "result": "400",
        "status": "error",
        "message": "Required data missing from subscribe request.",
    }
    await ws.send_json({"message": "subscribe", "topics": ["v2.analytics.queues.q1.observations"]})
    forbidden = await next_json(ws)
    assert (forbidden["result"], forbidden["status"]) == ("403", "error")
    await ws.send_json({"message": "subscribe", "topics": ["not a topic"]})
    assert (await next_json(ws))["result"] == "400"


async def test_ws_subscribe_extends_channel_life(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await genesys_sim_factory()
    client = client_factory(sim)
    await client.get_token()
    channel = await client.create_channel()
    ws = await client.connect(channel)
    before = sim.channel(channel["id"])
    assert before is not None
    expires_before = before.expires
    await asyncio.sleep(0.05)
    await ws.send_json({"message": "subscribe", "topics": ["v2.users.u1.presence"]})
    assert (await next_json(ws))["status"] == "subscribed"
    after = sim.channel(channel["id"])
    assert after is not None
    assert after.expires > expires_before


async def test_second_socket_kicks_the_first(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    await sim_client.subscribe(channel["id"], ["v2.users.u1.presence"])
    first = await sim_client.connect(channel)
    assert sim_client.sim.sockets_kicked == 0
    second = await sim_client.session.ws_connect(channel["connectUri"])
    notice = await next_json(first)
    assert notice["topicName"] == "v2.system.no_longer_subscribed"
    assert notice["eventBody"]["channelId"] == channel["id"]
    closing = await first.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert sim_client.sim.sockets_kicked == 1
    await wait_for(lambda: sim_client.sim.connected_channel_ids == [channel["id"]])
    seq = sim_client.sim.publish("v2.users.u1.presence")
    assert (await next_json(second))["metadata"]["simSequence"] == seq


async def test_large_event_is_received_whole_by_a_client(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await genesys_sim_factory(max_frame_size=1024)
    client = client_factory(sim)
    await client.get_token()
    channel = await client.create_channel()
    await client.subscribe(channel["id"], ["v2.routing.queues.q1.conversations"])
    ws = await client.connect(channel)
    body: dict[str, Any] = {"id": "conv-1", "participants": [], "blob": "é" * 40_000}
    sim.publish("v2.routing.queues.q1.conversations", body)
    received = await next_json(ws)
    assert received["eventBody"] == body


async def _raw_frames(url: str, until_text_messages: int) -> tuple[list[tuple[bool, int, int]], bytes]:
    """Connect with a hand-made handshake; return (fin, opcode, length) of the data frames read and the
    reassembled payload of the last message."""
    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    frames: list[tuple[bool, int, int]] = []
    message = b""
    finished = 0
    while finished < until_text_messages:
        first, second = await reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(length)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if opcode == 1:
            message = b""
        if opcode in (0, 1):
            message += payload
            frames.append((fin, opcode, len(payload)))
            if fin and b"WebSocket Heartbeat" not in message:
                finished += 1
    writer.close()
    return frames, message


async def test_large_messages_are_sent_as_continuation_frames(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await genesys_sim_factory(max_frame_size=1000)
    client = client_factory(sim)
    await client.get_token()
    channel = await client.create_channel()
    await client.subscribe(channel["id"], ["v2.users.u1.conversations"])
    reading = asyncio.ensure_future(_raw_frames(channel["connectUri"], until_text_messages=1))
    await wait_for(lambda: channel["id"] in sim.connected_channel_ids)
    sim.publish("v2.users.u1.conversations", {"id": "c1", "participants": [], "pad": "x" * 4500})
    frames, message = await asyncio.wait_for(reading, 10)
    assert _json.loads(message)["eventBody"] == sim.ledger[-1].body
    assert frames[0] == (False, 1, 1000)
    assert all(op == 0 for _, op, _ in frames[1:])
    assert [fin for fin, _, _ in frames] == [False] * (len(frames) - 1) + [True]
    assert len(frames) == -(-len(message) // 1000)
