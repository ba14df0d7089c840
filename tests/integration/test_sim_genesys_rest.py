"""The simulator's REST face against spec sections 1 and 2.1-2.3, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime

import aiohttp
import pytest

from gcbridge.sim.genesys import GenesysSim
from tests.integration.conftest import SimClient, SimFactory

CHANNELS = "/api/v2/notifications/channels"
ID_SHAPE = re.compile(r"^streaming-0-[a-z0-9]{26}$")


def subs(channel_id: str) -> str:
    return f"{CHANNELS}/{channel_id}/subscriptions"


# -- OAuth ---------------------------------------------------------------------------------------------------
async def test_token_with_basic_header(sim_client: SimClient) -> None:
    async with sim_client.session.post(
        sim_client.sim.base_url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": SimClient.basic("sim-client", "sim-secret")},
    ) as resp:
        body = await resp.json()
    assert resp.status == 200
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert sim_client.sim.token_requests == 2  # the fixture's token and this one


async def test_token_with_form_credentials(sim_client: SimClient) -> None:
    form = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret"}
    async with sim_client.session.post(sim_client.sim.base_url + "/oauth/token", data=form) as resp:
        assert resp.status == 200
        assert (await resp.json())["access_token"]


@pytest.mark.parametrize(
    ("client_id", "secret", "description"),
    [("sim-client", "wrong", "authentication failed"), ("nobody", "x", "client not found")],
)
async def test_invalid_client_bodies(
    sim_client: SimClient, client_id: str, secret: str, description: str
) -> None:
    async with sim_client.session.post(
        sim_client.sim.base_url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": SimClient.basic(client_id, secret)},
    ) as resp:
        assert resp.status == 401
        assert await resp.json() == {
            "error": "invalid_client",
            "description": description,
            "error_description": description,
        }


async def test_invalid_client_status_is_configurable_and_grant_type_checked(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory(invalid_client_status=400)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            sim.base_url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": SimClient.basic("sim-client", "bad")},
        ) as resp:
            assert resp.status == 400
        async with session.post(
            sim.base_url + "/oauth/token",
            data={"grant_type": "password"},
            headers={"Authorization": SimClient.basic("sim-client", "sim-secret")},
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "unsupported_grant_type"


async def test_token_rate_limit_answers_429_with_retry_after(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(token_rate_limit_per_min=2)
    async with aiohttp.ClientSession() as session:
        client = SimClient(sim, session)
        await client.get_token()
        await client.get_token()
        async with session.post(
            sim.base_url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": SimClient.basic("sim-client", "sim-secret")},
        ) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
    assert sim.token_requests == 2


async def test_short_token_lifetime_is_reported_scaled(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(token_ttl=3600.0, time_scale=100.0)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            sim.base_url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": SimClient.basic("sim-client", "sim-secret")},
        ) as resp,
    ):
        assert (await resp.json())["expires_in"] == 36


# -- bearer checks and headers -------------------------------------------------------------------------------
async def test_missing_and_unknown_tokens_are_401(sim_client: SimClient) -> None:
    async with sim_client.session.get(sim_client.sim.base_url + CHANNELS) as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "authentication.required"
    status, body, _ = await sim_client.api("GET", CHANNELS, token="not-a-token")
    assert status == 401
    assert body["code"] == "bad.credentials"
    assert body["message"] == "Invalid login credentials."
    assert body["status"] == 401


async def test_expired_and_revoked_tokens_are_401(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(token_ttl=1.0, time_scale=20.0)
    async with aiohttp.ClientSession() as session:
        client = SimClient(sim, session)
        expiring = await client.get_token()
        sim.add_oauth_client("long", "secret", token_ttl=86400.0)
        revoked = await client.get_token("long", "secret")
        assert (await client.api("GET", CHANNELS, token=revoked))[0] == 200
        assert sim.revoke_token(revoked) == 1
        status, body, _ = await client.api("GET", CHANNELS, token=revoked)
        assert (status, body["code"]) == (401, "bad.credentials")
        loop_deadline = sim.now() + 5.0
        while (await client.api("GET", CHANNELS, token=expiring))[0] == 200:
            assert sim.now() < loop_deadline
            # not a busy loop: a fast machine would spend the token's 300 requests a minute before it expires
            await asyncio.sleep(0.005)
        status, body, _ = await client.api("GET", CHANNELS, token=expiring)
        assert (status, body["code"]) == (401, "bad.credentials")


async def test_responses_carry_rate_limit_and_correlation_headers(sim_client: SimClient) -> None:
    _, _, first = await sim_client.api("GET", CHANNELS)
    _, _, second = await sim_client.api("GET", CHANNELS)
    assert first["inin-ratelimit-allowed"] == "300"
    assert int(second["inin-ratelimit-count"]) == int(first["inin-ratelimit-count"]) + 1
    assert 0 < int(first["inin-ratelimit-reset"]) <= 60
    assert first["ININ-Correlation-Id"] != second["ININ-Correlation-Id"]


async def test_api_rate_limit_per_token(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory(api_rate_limit_per_min=3)
    async with aiohttp.ClientSession() as session:
        client = SimClient(sim, session)
        token = await client.get_token()
        statuses = [(await client.api("GET", CHANNELS, token=token))[0] for _ in range(3)]
        status, body, headers = await client.api("GET", CHANNELS, token=token)
        assert statuses == [200, 200, 200]
        assert status == 429
        assert body["code"] == "too.many.requests"
        assert "[3] requests within [60] seconds" in body["message"]
        assert int(headers["Retry-After"]) >= 1
        other = await client.get_token()  # the limit is per token
        assert (await client.api("GET", CHANNELS, token=other))[0] == 200


# -- channels ------------------------------------------------------------------------------------------------
async def test_create_channel_with_null_json_body(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    assert set(channel) == {"id", "connectUri", "expires"}
    assert ID_SHAPE.match(channel["id"])
    port = sim_client.sim.base_url.rsplit(":", 1)[1]
    assert channel["connectUri"] == f"ws://127.0.0.1:{port}/channels/{channel['id']}"
    expires = datetime.strptime(channel["expires"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    hours = (expires - datetime.now(UTC)).total_seconds() / 3600
    assert 23.9 < hours <= 24.0


async def test_head_channel_200_then_404(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    assert (await sim_client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 200
    assert (await sim_client.api("HEAD", f"{CHANNELS}/streaming-0-{'x' * 26}"))[0] == 404
    assert sim_client.sim.expire_channel(channel["id"])
    assert (await sim_client.api("HEAD", f"{CHANNELS}/{channel['id']}"))[0] == 404


async def test_list_channels_by_token_or_oauth_client(sim_client: SimClient) -> None:
    first_token = sim_client.token
    mine = await sim_client.create_channel()
    second_token = await sim_client.get_token()
    other = await sim_client.create_channel()
    status, by_token, _ = await sim_client.api("GET", CHANNELS)
    assert status == 200
    assert [c["id"] for c in by_token["entities"]] == [other["id"]]
    _, default, _ = await sim_client.api("GET", CHANNELS + "?includechannels=token", token=second_token)
    assert default == by_token
    _, by_client, _ = await sim_client.api(
        "GET", CHANNELS + "?includechannels=oauthclient", token=first_token
    )
    entities = by_client["entities"]
    assert len(entities) == 2
    assert [e.get("id") for e in entities if "id" in e] == [mine["id"]]  # other tokens' ids stay hidden
    assert all("expires" in e for e in entities)
    assert (await sim_client.api("GET", CHANNELS + "?includechannels=everything"))[0] == 400


async def test_21st_channel_evicts_the_oldest_unconnected(sim_client: SimClient) -> None:
    made = [await sim_client.create_channel() for _ in range(20)]
    await sim_client.create_channel()
    assert len(sim_client.sim.channels) == 20
    assert (await sim_client.api("HEAD", f"{CHANNELS}/{made[0]['id']}"))[0] == 404
    assert (await sim_client.api("HEAD", f"{CHANNELS}/{made[1]['id']}"))[0] == 200


async def test_21st_channel_spares_a_connected_channel_even_if_it_is_the_least_recently_used(
    sim_client: SimClient,
) -> None:
    made = [await sim_client.create_channel() for _ in range(20)]
    oldest = await sim_client.connect(made[0])
    for channel in made[1:]:  # use every other channel after the connect: made[0] is now the least used
        assert (await sim_client.api("GET", subs(channel["id"])))[0] == 200
    await sim_client.create_channel()
    assert len(sim_client.sim.channels) == 20
    alive = {c.id for c in sim_client.sim.channels}
    assert made[0]["id"] in alive  # connected channels go last (spec 2.3)
    assert made[1]["id"] not in alive  # the least recently used of the unconnected ones
    assert made[2]["id"] in alive
    assert (await sim_client.api("HEAD", f"{CHANNELS}/{made[1]['id']}"))[0] == 404
    assert not oldest.closed


# -- subscriptions -------------------------------------------------------------------------------------------
async def test_subscriptions_get_post_put_delete(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    path = subs(channel["id"])
    status, body = await sim_client.subscribe(channel["id"], ["v2.users.u1.presence"])
    assert status == 200
    assert body == {"entities": [{"id": "v2.users.u1.presence", "state": "Permitted"}]}
    await sim_client.subscribe(channel["id"], ["v2.users.u2?presence&routingStatus"])
    _, listing, _ = await sim_client.api("GET", path)
    assert [e["id"] for e in listing["entities"]] == [
        "v2.users.u1.presence",
        "v2.users.u2?presence&routingStatus",
    ]
    status, body, _ = await sim_client.api("PUT", path, json=[{"id": "v2.routing.queues.q1.conversations"}])
    assert status == 200
    assert [e["id"] for e in body["entities"]] == ["v2.routing.queues.q1.conversations"]
    status, body, _ = await sim_client.api("DELETE", path)
    assert status in (200, 204)
    assert (await sim_client.api("GET", path))[1] == {"entities": []}


async def test_more_than_1000_topics_is_400_and_changes_nothing(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    assert (await sim_client.subscribe(channel["id"], [f"v2.users.u{i}.presence" for i in range(1000)]))[
        0
    ] == 200
    status, body = await sim_client.subscribe(channel["id"], ["v2.users.extra.presence"])
    assert status == 400
    assert body["code"] == "bad.request"
    assert len((await sim_client.api("GET", subs(channel["id"])))[1]["entities"]) == 1000


async def test_forbidden_topic_fails_the_request_unless_ignore_errors(sim_client: SimClient) -> None:
    sim_client.sim.forbid_topic("v2.detail.events.*")
    channel = await sim_client.create_channel()
    topics = ["v2.users.u1.presence", "v2.detail.events.conversation.c1.acw"]
    status, body = await sim_client.subscribe(channel["id"], topics)
    assert status == 403
    assert body["code"] == "missing.permissions"
    assert body["status"] == 403
    assert (await sim_client.api("GET", subs(channel["id"])))[1] == {"entities": []}
    status, body = await sim_client.subscribe(channel["id"], topics, params={"ignoreErrors": "true"})
    assert status == 200
    by_id = {e["id"]: e for e in body["entities"]}
    assert by_id["v2.users.u1.presence"]["state"] == "Permitted"
    rejected = by_id["v2.detail.events.conversation.c1.acw"]
    assert rejected["state"] == "Rejected"
    assert rejected["rejectionReason"]
    assert rejected["missingPermissions"] == ["analytics:conversationDetail:view"]


async def test_combined_topic_with_a_forbidden_part(sim_client: SimClient) -> None:
    sim_client.sim.forbid_topic("v2.users.*.station")
    channel = await sim_client.create_channel()
    status, body = await sim_client.subscribe(
        channel["id"], ["v2.users.u1?presence&station"], params={"ignoreErrors": "true"}
    )
    assert status == 200
    states = {e["id"]: e["state"] for e in body["entities"]}
    assert states == {"v2.users.u1?presence&station": "Permitted", "v2.users.u1.station": "Rejected"}


@pytest.mark.parametrize(
    "topics", [["v2.users.u1 presence"], ["v2.users.u1?" + "&".join(f"p{i:03d}" for i in range(60))]]
)
async def test_malformed_topics_are_400(sim_client: SimClient, topics: list[str]) -> None:
    channel = await sim_client.create_channel()
    status, body = await sim_client.subscribe(channel["id"], topics)
    assert status == 400
    assert body["code"] == "bad.request"


async def test_subscriptions_of_another_clients_channel_are_404(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    sim_client.sim.add_oauth_client("second", "s2")
    other = await sim_client.get_token("second", "s2")
    assert (await sim_client.api("GET", subs(channel["id"]), token=other))[0] == 404
    assert (await sim_client.api("HEAD", f"{CHANNELS}/{channel['id']}", token=other))[0] == 404


# -- bad input and faults ------------------------------------------------------------------------------------
async def test_bad_input_gets_error_bodies(sim_client: SimClient) -> None:
    channel = await sim_client.create_channel()
    status, body, _ = await sim_client.api(
        "POST", subs(channel["id"]), data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (status, body["code"]) == (400, "bad.request")
    status, body, _ = await sim_client.api("POST", subs(channel["id"]), json={"id": "v2.users.u1.presence"})
    assert status == 400
    status, body, _ = await sim_client.api("GET", "/api/v2/nothing/here")
    assert (status, body["code"]) == (404, "not.found")
    status, body, headers = await sim_client.api("PATCH", CHANNELS)
    assert status == 405
    assert body["status"] == 405
    assert "POST" in headers["Allow"]
    big = b"[" + b'{"id":"v2.users.u1.presence"},' * 20_000 + b'{"id":"x"}]'
    status, body, _ = await sim_client.api(
        "POST", subs(channel["id"]), data=big, headers={"Content-Type": "application/json"}
    )
    assert (status, body["status"]) == (413, 413)
    async with sim_client.session.get(sim_client.sim.base_url + "/nowhere") as resp:
        assert resp.status == 404
    # and the simulator still works
    assert (await sim_client.subscribe(channel["id"], ["v2.users.u1.presence"]))[0] == 200


async def test_injected_rest_failures_then_recovery(sim_client: SimClient) -> None:
    sim_client.sim.fail_next_rest(2, status=429, retry_after=3)
    status, body, headers = await sim_client.api("GET", CHANNELS)
    assert status == 429
    assert headers["Retry-After"] == "3"
    assert body["status"] == 429
    assert (await sim_client.api("GET", CHANNELS))[0] == 429
    assert (await sim_client.api("GET", CHANNELS))[0] == 200
    sim_client.sim.fail_next_rest(1, status=503)
    status, _, headers = await sim_client.api("GET", CHANNELS)
    assert status == 503
    assert "Retry-After" not in headers


async def test_injected_token_failure(sim_client: SimClient) -> None:
    sim_client.sim.fail_next_token(1, status=503, retry_after=1)
    async with sim_client.session.post(
        sim_client.sim.base_url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(b"sim-client:sim-secret").decode()},
    ) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
    await sim_client.get_token()


async def test_rest_delay_applies_to_requests(sim_client: SimClient) -> None:
    sim_client.sim.set_rest_delay(1.0)
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(TimeoutError):
        await sim_client.api("GET", CHANNELS, timeout=timeout)
    sim_client.sim.set_rest_delay(0)
    assert (await sim_client.api("GET", CHANNELS))[0] == 200


async def test_token_info_and_delete_token(sim_client: SimClient) -> None:
    status, info, _ = await sim_client.api("GET", "/api/v2/tokens/me")
    assert status == 200
    assert info["OAuthClient"]["id"] == "sim-client"
    assert (await sim_client.api("DELETE", "/api/v2/tokens/me"))[0] in (200, 204)
    assert (await sim_client.api("GET", "/api/v2/tokens/me"))[0] == 401


async def test_available_topics(genesys_sim: GenesysSim, sim_client: SimClient) -> None:
    status, body, _ = await sim_client.api("GET", "/api/v2/notifications/availabletopics")
    assert status == 200
    assert "v2.users.{id}.presence" in {t["id"] for t in body["entities"]}
