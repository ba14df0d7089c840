"""Garbage in over REST and WebSocket gets a specific error answer and never takes the simulator down."""

from __future__ import annotations

import random

import aiohttp

from tests.integration.conftest import SimClient, next_json

ALLOWED = {200, 204, 400, 401, 403, 404, 405, 413, 415}
PATHS = [
    "/oauth/token",
    "/api/v2/notifications/channels",
    "/api/v2/notifications/channels/{id}",
    "/api/v2/notifications/channels/{id}/subscriptions",
    "/api/v2/notifications/channels/{id}/subscriptions?ignoreErrors=maybe",
    "/api/v2/notifications/availabletopics",
    "/api/v2/tokens/me",
    "/api/v2/notifications/channels/%00/subscriptions",
    "/api/v2/../../etc/passwd",
    "/_sim/publish",
    "/_sim/close_socket",
    "/_sim/fail_next_rest",
    "/channels/{id}",
    "/",
]
BODIES: list[bytes] = [
    b"",
    b"null",
    b"{",
    b"[]",
    b"[{}]",
    b'[{"id": null}]',
    b'[{"id": "v2.users.u1.presence"}]',
    b'{"id": "v2.users.u1.presence"}',
    b'{"topic": 5}',
    b'{"n": -1, "status": "x"}',
    b'"\xff\xfe"',
    b"grant_type=client_credentials",
    b"\x00" * 64,
    b'[{"id": "' + b"a" * 5000 + b'"}]',
]


async def test_random_rest_garbage_gets_error_bodies(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    rng = random.Random(20261129)
    base = sim_client.sim.base_url
    for _ in range(250):
        path = rng.choice(PATHS).format(id=rng.choice([channel["id"], "streaming-0-unknown"]))
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
        body = rng.choice(BODIES)
        headers = {
            "Content-Type": rng.choice(
                ["application/json", "text/plain", "application/x-www-form-urlencoded"]
            )
        }
        if path.startswith("/api") and rng.random() < 0.8:
            headers["Authorization"] = f"Bearer {sim_client.token}"
        if path == "/_sim/close_socket":
            continue  # a legitimate fault, not garbage
        async with sim_client.session.request(method, base + path, data=body, headers=headers) as resp:
            assert resp.status in ALLOWED, (method, path, body, resp.status, await resp.text())
            if resp.status >= 400 and method != "HEAD":
                assert (await resp.json(content_type=None)) is not None
    # still fully working
    await sim_client.get_token()
    fresh = await sim_client.create_channel()
    assert (await sim_client.subscribe(fresh["id"], ["v2.users.u1.presence"]))[0] == 200


async def test_websocket_garbage_gets_errors_and_the_socket_survives(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    ws = await sim_client.connect(channel)
    garbage: list[str] = [
        "",
        "null",
        "[]",
        "42",
        "{",
        '{"message": 5}',
        '{"message": "subscribe", "topics": "v2.users.u1.presence"}',
        '{"message": "subscribe", "topics": [null]}',
        '{"message": "subscribe", "topics": ["v2.users.u1?"]}',
        '{"message": "unsubscribe"}',
        '{"message": "subscribe", "topics": ["v2.users.u1.presence"], "correlationId": {"nested": 1}}',
    ]
    for text in garbage:
        await ws.send_str(text)
        answer = await next_json(ws)
        assert answer["result"] in ("200", "400"), (text, answer)
    await ws.send_bytes(b"\x00\x01")
    assert (await next_json(ws))["result"] == "400"
    await ws.send_json({"message": "ping"})
    assert (await next_json(ws))["eventBody"] == {"message": "pong"}
    seq = sim_client.sim.publish("v2.users.u1.presence")
    assert (await next_json(ws))["metadata"]["simSequence"] == seq


async def test_oversize_websocket_message_closes_only_that_socket(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    ws = await sim_client.connect(channel)
    await ws.send_str('{"message":"ping","pad":"' + "x" * 600_000 + '"}')
    msg = await ws.receive(timeout=10)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009  # message too big
    again = await sim_client.connect(channel)
    await again.send_json({"message": "ping"})
    assert (await next_json(again))["eventBody"] == {"message": "pong"}
