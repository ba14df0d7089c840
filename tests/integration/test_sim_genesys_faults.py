"""Faults, lifecycles, system messages, the ledger, the traffic generator and the HTTP control API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from gcbridge.sim.genesys import GenesysSim
from tests.integration.conftest import SimClient, SimFactory, next_json, wait_for

CHANNELS = "/api/v2/notifications/channels"
ClientFactory = Callable[[GenesysSim], SimClient]


async def _ready(
    factory: SimFactory,
    clients: ClientFactory,
    topics: tuple[str, ...] = ("v2.users.u1.presence",),
    **config: object,
) -> tuple[GenesysSim, SimClient, dict[str, str], aiohttp.ClientWebSocketResponse]:
    sim = await factory(**config)
    client = clients(sim)
    await client.get_token()
    channel = await client.create_channel()
    if topics:
        await client.subscribe(channel["id"], list(topics))
    ws = await client.connect(channel)
    return sim, client, channel, ws


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The first non-text message (the end of the socket)."""
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return msg


async def test_socket_closing_then_close_after_grace(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, channel, ws = await _ready(genesys_sim_factory, client_factory, time_scale=600.0)
    assert await sim.socket_closing(grace=60.0) == [channel["id"]]  # 0.1 s real
    notice = await next_json(ws)
    assert notice["topicName"] == "v2.system.socket_closing"
    assert notice["eventBody"]["channelId"] == channel["id"]
    assert notice["eventBody"]["message"]
    end = await _closed(ws)
    assert (end.type, end.data) == (aiohttp.WSMsgType.CLOSE, 1001)
    # the channel survives its socket: a new socket on it gets the events
    assert (await client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 200
    again = await client.connect(channel)
    seq = sim.publish("v2.users.u1.presence")
    assert (await next_json(again))["metadata"]["simSequence"] == seq


async def test_drop_socket_is_abrupt_and_later_events_are_not_sent(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, _, channel, ws = await _ready(genesys_sim_factory, client_factory)
    assert await sim.drop_socket() == [channel["id"]]
    end = await _closed(ws)
    assert end.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert ws.close_code != 1000
    sim.publish("v2.users.u1.presence")
    (delivery,) = sim.ledger[-1].deliveries
    assert (delivery.channel_id, delivery.sent) == (channel["id"], False)


@pytest.mark.parametrize("code", [1000, 1001, 1011])
async def test_close_socket_with_a_chosen_code(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory, code: int
) -> None:
    sim, _, channel, ws = await _ready(genesys_sim_factory, client_factory)
    assert await sim.close_socket(code, channel_id=channel["id"]) == [channel["id"]]
    sim.publish("v2.users.u1.presence")
    assert sim.ledger[-1].deliveries[0].sent is False
    end = await _closed(ws)
    assert (end.type, end.data) == (aiohttp.WSMsgType.CLOSE, code)


async def test_stalled_socket_is_silent_and_loses_events(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, _, channel, ws = await _ready(
        genesys_sim_factory, client_factory, heartbeat_interval=30.0, time_scale=600.0
    )
    assert (await next_json(ws, skip_heartbeats=False))["eventBody"]["message"] == "WebSocket Heartbeat"
    assert sim.stall_socket() == [channel["id"]]
    sim.publish("v2.users.u1.presence")
    await ws.send_json({"message": "ping"})
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=0.5)  # ten heartbeat intervals: nothing at all
    delivery = sim.ledger[-1].deliveries[0]
    assert (delivery.sent, delivery.reason) == (False, "stalled")
    assert not ws.closed  # TCP stays open


async def test_expire_channel_closes_its_socket(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, channel, ws = await _ready(genesys_sim_factory, client_factory)
    assert sim.expire_channel(channel["id"])
    end = await _closed(ws)
    assert end.type is aiohttp.WSMsgType.CLOSE
    assert (await client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 404
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.session.ws_connect(channel["connectUri"])


async def test_channel_expires_after_its_scaled_lifetime(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    # 24 h in 1 s of real time
    sim, client, channel, ws = await _ready(
        genesys_sim_factory, client_factory, time_scale=86_400.0, token_ttl=1e9
    )
    end = await _closed(ws)
    assert end.type is aiohttp.WSMsgType.CLOSE
    assert (await client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 404
    assert sim.channels == []


async def test_channel_dies_with_its_token(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, channel, ws = await _ready(
        genesys_sim_factory,
        client_factory,
        token_ttl=3600.0,
        time_scale=1800.0,  # the token lives 2 s
    )
    end = await _closed(ws)
    assert end.type is aiohttp.WSMsgType.CLOSE
    await client.get_token()
    assert (await client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 404
    assert sim.channels == []


async def test_channel_outlives_its_token_when_configured(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, channel, ws = await _ready(
        genesys_sim_factory,
        client_factory,
        token_ttl=3600.0,
        time_scale=10_000.0,
        channel_dies_with_token=False,
    )
    first_token = client.token
    await wait_for(lambda: sim.core.tokens.validate(first_token, sim.now()) is None)
    await client.get_token()
    assert (await client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 200
    seq = sim.publish("v2.users.u1.presence")
    assert (await next_json(ws))["metadata"]["simSequence"] == seq


async def test_revoke_token_sends_token_revoked_and_ends_channel(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, _, ws = await _ready(genesys_sim_factory, client_factory)
    assert sim.revoke_token() == 1
    notice = await next_json(ws)
    assert notice["topicName"] == "v2.system.token_revoked"
    assert notice["eventBody"]["systemTopicType"] == "token_revoked"
    assert notice["eventBody"]["reason"] == "user_tokens_revoked"
    assert notice["eventBody"]["oauthClientId"] == "sim-client"
    end = await _closed(ws)
    assert end.type is aiohttp.WSMsgType.CLOSE
    status, body, _ = await client.api("GET", CHANNELS)
    assert (status, body["code"]) == (401, "bad.credentials")


async def test_evicted_connected_channel_gets_no_longer_subscribed(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, first, first_ws = await _ready(
        genesys_sim_factory, client_factory, max_channels_per_client=2
    )
    second = await client.create_channel()
    second_ws = await client.connect(second)
    await client.create_channel()  # both are connected: the least recently used one goes
    notice = await next_json(first_ws)
    assert notice["topicName"] == "v2.system.no_longer_subscribed"
    assert notice["eventBody"]["channelId"] == first["id"]
    assert (await _closed(first_ws)).type is aiohttp.WSMsgType.CLOSE
    assert first["id"] not in {c.id for c in sim.channels}
    assert not second_ws.closed


async def test_exclusive_topics_move_to_the_newest_channel(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, _, old_ws = await _ready(genesys_sim_factory, client_factory, exclusive_topics=True)
    new = await client.create_channel()
    new_ws = await client.connect(new)
    assert (await client.subscribe(new["id"], ["v2.users.u1.presence"]))[0] == 200
    notice = await next_json(old_ws)
    assert notice["topicName"] == "v2.system.no_longer_subscribed"
    assert notice["eventBody"]["reason"] == "another_channel_subscribed"
    assert notice["eventBody"]["data"]["topics"] == ["v2.users.u1.presence"]
    seq = sim.publish("v2.users.u1.presence")
    assert [d.channel_id for d in sim.ledger[-1].deliveries] == [new["id"]]
    assert (await next_json(new_ws))["metadata"]["simSequence"] == seq
    assert not old_ws.closed


async def test_shared_topics_reach_both_channels_with_the_same_event(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, one, one_ws = await _ready(genesys_sim_factory, client_factory)
    sim.add_oauth_client("second", "s2")
    other = client_factory(sim)
    await other.get_token("second", "s2")
    two = await other.create_channel()
    await other.subscribe(two["id"], ["v2.users.u1.presence"])
    two_ws = await other.connect(two)
    unconnected = await client.create_channel()
    await client.subscribe(unconnected["id"], ["v2.users.u1.presence"])
    sim.publish("v2.users.u1.presence")
    a, b = await next_json(one_ws), await next_json(two_ws)
    assert a == b
    record = sim.ledger[-1]
    outcome = {d.channel_id: (d.sent, d.reason) for d in record.deliveries}
    assert outcome == {
        one["id"]: (True, "sent"),
        two["id"]: (True, "sent"),
        unconnected["id"]: (False, "not_connected"),
    }


async def test_refused_handshakes_then_success(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    sim_client.sim.refuse_handshakes(2, status=503)
    for _ in range(2):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await sim_client.session.ws_connect(channel["connectUri"])
        assert info.value.status == 503
    ws = await sim_client.connect(channel)
    assert not ws.closed


async def test_traffic_generator_and_exact_loss_accounting(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, _, channel, ws = await _ready(
        genesys_sim_factory,
        client_factory,
        topics=("v2.users.u1?presence&routingStatus", "v2.routing.queues.q1.conversations"),
    )
    received: list[int] = []

    async def reader() -> None:
        async for msg in ws:
            data = msg.json()
            if "simSequence" in data.get("metadata", {}):
                received.append(data["metadata"]["simSequence"])

    task = asyncio.ensure_future(reader())
    sim.start_traffic(400.0)
    await wait_for(lambda: len(sim.ledger) >= 30)
    sim.stall_socket()
    await wait_for(lambda: any(not d.sent for r in sim.ledger for d in r.deliveries))
    await sim.stop_traffic()
    sent = [r.seq for r in sim.ledger if channel["id"] in r.sent_to]
    lost = [r.seq for r in sim.ledger if channel["id"] not in r.sent_to]
    await wait_for(lambda: len(received) >= len(sent))
    assert received == sent
    assert lost
    assert {r.topic for r in sim.ledger} <= {
        "v2.users.u1.presence",
        "v2.users.u1.routingStatus",
        "v2.routing.queues.q1.conversations",
    }
    task.cancel()


async def test_http_control_api(genesys_sim_factory: SimFactory, client_factory: ClientFactory) -> None:
    sim, client, channel, ws = await _ready(genesys_sim_factory, client_factory)
    base = sim.base_url + "/_sim/"
    session = client.session

    async def post(op: str, body: object) -> tuple[int, dict[str, object]]:
        async with session.post(base + op, json=body) as resp:
            return resp.status, await resp.json()

    status, body = await post("publish", {"topic": "v2.users.u1.presence", "body": {"x": 1}})
    assert status == 200
    seq = body["result"]
    event = await next_json(ws)
    assert (event["eventBody"], event["metadata"]["simSequence"]) == ({"x": 1}, seq)
    async with session.get(base + "ledger", params={"since": "0"}) as resp:
        records = (await resp.json())["records"]
    assert records[-1]["deliveries"] == [
        {"channelId": channel["id"], "sent": True, "reason": "sent", "copies": 1}
    ]
    async with session.get(base + "state") as resp:
        state = await resp.json()
    assert (state["published"], state["sent"], state["connected"]) == (1, 1, [channel["id"]])
    assert (await post("fail_next_rest", {"n": 1, "status": 500}))[0] == 200
    assert (await client.api("GET", CHANNELS))[0] == 500
    assert (await post("publish", {"topic": "not a topic"}))[0] == 400
    assert (await post("fail_next_rest", {"n": "many"}))[0] == 400
    assert (await post("no_such_thing", {}))[0] == 404
    assert (await post("close_socket", {"code": 1011}))[1] == {"result": [channel["id"]]}
    end = await _closed(ws)
    assert (end.type, end.data) == (aiohttp.WSMsgType.CLOSE, 1011)
    async with session.get(base) as resp:
        assert "socket_closing" in (await resp.json())["operations"]


async def test_duplicate_delivery_fault(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, _, _, ws = await _ready(genesys_sim_factory, client_factory)
    sim.duplicate_next(1)
    first = sim.publish("v2.users.u1.presence")
    second = sim.publish("v2.users.u1.presence")
    received = [await next_json(ws) for _ in range(3)]
    assert [m["metadata"]["simSequence"] for m in received] == [first, first, second]
    assert received[0] == received[1]
    assert [r.deliveries[0].copies for r in sim.ledger] == [2, 1]


async def test_slow_consumer_overflow_is_recorded_as_not_sent(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, _, channel, _ = await _ready(genesys_sim_factory, client_factory, send_buffer_limit=1 << 20)
    _, writer = await _never_reading_socket(channel["connectUri"])
    await wait_for(lambda: sim.connected_channel_ids == [channel["id"]])  # the raw socket replaced the first
    body = {"id": "c1", "participants": [], "pad": "x" * 256_000}
    for _ in range(200):
        sim.publish("v2.users.u1.presence", body)
        if sim.ledger[-1].deliveries[0].reason == "send_buffer_full":
            break
    reasons = [r.deliveries[0].reason for r in sim.ledger]
    assert reasons[0] == "sent"
    assert reasons[-1] == "send_buffer_full"
    writer.close()


async def _never_reading_socket(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    writer.write(
        (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_traffic_on_given_topics_and_paced_publish(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, _, _, ws = await _ready(genesys_sim_factory, client_factory)
    with pytest.raises(ValueError, match="malformed"):
        sim.start_traffic(10.0, topics=["not a topic"])
    sim.start_traffic(500.0, topics=["v2.users.u1.presence", "v2.users.nobody.presence"])
    await wait_for(
        lambda: {r.topic for r in sim.ledger} == {"v2.users.u1.presence", "v2.users.nobody.presence"}
    )
    await sim.stop_traffic()
    assert all(r.deliveries == [] for r in sim.ledger if r.topic == "v2.users.nobody.presence")
    seq = await sim.publish_paced("v2.users.u1.presence")
    while (message := await next_json(ws))["metadata"]["simSequence"] != seq:
        pass
    assert message["topicName"] == "v2.users.u1.presence"


@pytest.mark.parametrize(
    ("op", "body", "says"),
    [
        ("traffic", {"rate_per_s": -5}, "'rate_per_s' must be at least 0, got -5"),
        ("traffic", {"rate_per_s": 5, "topics": [7]}, "'topics' must be a list of topic names"),
        ("fail_next_rest", {"n": 0}, "'n' must be at least 1, got 0"),
        ("fail_next_rest", {"status": 200}, "'status' must be from 400 to 599, got 200"),
        ("fail_next_token", {"retry_after": -1}, "'retry_after' must be at least 0, got -1"),
        ("refuse_handshakes", {"n": -2}, "'n' must be at least 1, got -2"),
        ("duplicate_next", {"n": 0}, "'n' must be at least 1, got 0"),
        ("rest_delay", {"seconds": -0.5}, "'seconds' must be at least 0, got -0.5"),
        ("close_socket", {"code": 42}, "'code' must be from 1000 to 4999, got 42"),
        ("socket_closing", {"grace": -1}, "'grace' must be at least 0, got -1"),
        (
            "oauth_clients",
            {"client_id": "c", "secret": "s", "token_ttl": 0},
            "'token_ttl' must be at least 1",
        ),
    ],
)
async def test_http_control_refuses_invalid_arguments_and_changes_nothing(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory, op: str, body: object, says: str
) -> None:
    sim, client, channel, _ws = await _ready(genesys_sim_factory, client_factory)
    topic = "v2.users.u1.presence"
    sim.start_traffic(50.0, [topic])
    async with client.session.post(sim.base_url + "/_sim/" + op, json=body) as resp:
        status, answer = resp.status, await resp.json()
    assert status == 400
    assert says in answer["message"]
    # nothing armed, nothing closed, and the running traffic still runs
    assert (len(sim.faults.api), len(sim.faults.token), sim.faults.rest_delay) == (0, 0, 0.0)
    assert sim.connected_channel_ids == [channel["id"]]
    published = len(sim.ledger)
    await wait_for(lambda: len(sim.ledger) > published + 2)
    await sim.stop_traffic()


async def test_http_control_traffic_rate_zero_stops_it(
    genesys_sim_factory: SimFactory, client_factory: ClientFactory
) -> None:
    sim, client, _channel, _ws = await _ready(genesys_sim_factory, client_factory)
    sim.start_traffic(50.0, ["v2.users.u1.presence"])
    async with client.session.post(sim.base_url + "/_sim/traffic", json={"rate_per_s": 0}) as resp:
        assert (resp.status, await resp.json()) == (200, {"result": "stopped"})
    published = len(sim.ledger)
    # once stopped, a publish is the next record: the generator added none in between
    sim.publish("v2.users.u1.presence", {"x": 1})
    assert len(sim.ledger) == published + 1
