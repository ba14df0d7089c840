"""The org world's REST endpoints on a running simulator (127.0.0.1): paging, filters, limits, permissions,
rate limits, and agreement with the notifications published on the sockets.

The org's clock is stopped (``time_scale=0``) and moved with ``advance_by``, so every answer is exact.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from gcbridge.sim.genesys import GenesysSim
from gcbridge.sim.genesys.org import OrgSettings
from gcbridge.sim.processes import gcbridge_argv, simulator_process

from .conftest import SimClient, SimFactory, next_json

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY_INTERVAL = "2027-01-15T00:00:00.000Z/2027-01-16T00:00:00.000Z"
DETAILS = "/api/v2/analytics/conversations/details/query"
OBSERVATIONS = "/api/v2/analytics/queues/observations/query"
BULK = "/api/v2/users/presences/purecloud/bulk"


async def org_sim(factory: SimFactory, hours: float = 4.0, users: int = 12, **config: Any) -> GenesysSim:
    sim = await factory(org=OrgSettings(seed=4, users=users, time_scale=0, start=START), **config)
    assert sim.org is not None
    sim.org.advance_by(hours * 3600)
    return sim


async def client_for(sim: GenesysSim, client_factory: Callable[[GenesysSim], SimClient]) -> SimClient:
    client = client_factory(sim)
    await client.get_token()
    return client


def query(page_size: int = 25, page_number: int = 1, **extra: Any) -> dict[str, Any]:
    return {"interval": DAY_INTERVAL, "paging": {"pageSize": page_size, "pageNumber": page_number}, **extra}


async def all_pages(client: SimClient, page_size: int, **extra: Any) -> tuple[list[dict[str, Any]], int]:
    """Every conversation of the query, page by page until a body has no ``conversations`` key."""
    found: list[dict[str, Any]] = []
    for number in range(1, 1000):
        status, body, _ = await client.api("POST", DETAILS, json=query(page_size, number, **extra))
        assert status == 200, body
        if "conversations" not in body:
            assert "totalHits" in body
            return found, number
        found += body["conversations"]
    raise AssertionError("the pages never ended")


async def test_details_query_pages_until_a_body_without_conversations(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    expected = {c.id for c in sim.org.world.conversations()}
    assert len(expected) > 100

    found, pages = await all_pages(client, 40)
    ids = [c["conversationId"] for c in found]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert pages == -(-len(expected) // 40) + 1  # the first page past the end is the one without the key
    starts = [c["conversationStart"] for c in found]
    assert starts == sorted(starts)  # default order: asc by conversationStart

    status, body, _ = await client.api("POST", DETAILS, json=query(10, 1, order="desc"))
    assert status == 200
    assert body["totalHits"] == len(expected)
    assert [c["conversationStart"] for c in body["conversations"]] == sorted(starts, reverse=True)[:10]


async def test_details_query_outside_the_days_of_the_interval_is_empty(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory, hours=1)
    client = await client_for(sim, client_factory)
    body = {"interval": "2027-01-13T00:00:00Z/2027-01-14T00:00:00Z"}
    status, answer, _ = await client.api("POST", DETAILS, json=body)
    assert status == 200
    assert answer == {"totalHits": 0}


async def test_segment_filters_on_queue_and_user_and_conversation_filters(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    world = sim.org.world
    queue_id = next(iter(world.queues))
    user_id = next(u for c in world.conversations() for u in c.user_ids)

    def predicate(dimension: str, value: str | None = None, operator: str = "matches") -> dict[str, Any]:
        return {"type": "dimension", "dimension": dimension, "operator": operator, "value": value}

    by_queue, _ = await all_pages(
        client, 100, segmentFilters=[{"type": "and", "predicates": [predicate("queueId", queue_id)]}]
    )
    assert {c["conversationId"] for c in by_queue} == {
        c.id for c in world.conversations() if queue_id in c.queue_ids
    }

    by_user, _ = await all_pages(
        client, 100, segmentFilters=[{"type": "or", "predicates": [predicate("userId", user_id)]}]
    )
    assert {c["conversationId"] for c in by_user} == {
        c.id for c in world.conversations() if user_id in c.user_ids
    }
    assert by_user

    ongoing, _ = await all_pages(
        client,
        100,
        conversationFilters=[
            {"type": "and", "predicates": [predicate("conversationEnd", operator="notExists")]}
        ],
    )
    assert {c["conversationId"] for c in ongoing} == {c.id for c in world.conversations() if c.end is None}
    assert all("conversationEnd" not in c for c in ongoing)

    both, _ = await all_pages(
        client,
        100,
        segmentFilters=[
            {"type": "and", "predicates": [predicate("queueId", queue_id)]},
            {
                "type": "and",
                "predicates": [predicate("segmentType", "wrapup"), predicate("wrapUpCode", "Sale")],
            },
        ],
    )
    for conv in both:
        segments = [s for p in conv["participants"] for x in p["sessions"] for s in x["segments"]]
        assert any(s.get("wrapUpCode") == "Sale" and s["segmentType"] == "wrapup" for s in segments)
        assert any(s.get("queueId") == queue_id for s in segments)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "interval is required"),
        ({"interval": "yesterday/today"}, "not an ISO-8601 date"),
        ({"interval": "2027-01-16T00:00:00Z/2027-01-15T00:00:00Z"}, "end must be after"),
        (query(101), "pageSize must be between 1 and 100"),
        (query(order="sideways"), "order must be one of"),
        (query(segmentFilters=[{"type": "xor", "predicates": []}]), "type must be 'and' or 'or'"),
        (query(segmentFilters=[{"predicates": [{"dimension": "queueId"}]}]), "value is required"),
    ],
)
async def test_a_bad_details_query_is_a_400_that_says_why(
    genesys_sim_factory: SimFactory,
    client_factory: Callable[[GenesysSim], SimClient],
    body: dict[str, Any],
    fragment: str,
) -> None:
    sim = await org_sim(genesys_sim_factory, hours=0.1)
    client = await client_for(sim, client_factory)
    status, answer, _ = await client.api("POST", DETAILS, json=body)
    assert status == 400
    assert answer["status"] == 400
    assert answer["code"] == "bad.request"
    assert fragment in answer["message"]


async def test_injected_page_drift_makes_rows_reappear_and_total_hits_approximate(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    total = len(sim.org.world.conversations())
    async with client.session.post(sim.base_url + "/_sim/org/faults", json={"query_drift": 3}) as resp:
        assert resp.status == 200
    found, _ = await all_pages(client, 25)
    ids = [c["conversationId"] for c in found]
    assert len(ids) > len(set(ids))  # the documented caveat: de-duplicate by conversationId
    assert set(ids) == {c.id for c in sim.org.world.conversations()}
    _status, body, _ = await client.api("POST", DETAILS, json=query(25, 1))
    assert body["totalHits"] != total


async def test_conversation_by_id_current_and_ended_and_404(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    conversations = sim.org.world.conversations()
    ended = next(c for c in conversations if c.end is not None and c.transfers)
    status, body, _ = await client.api("GET", f"/api/v2/conversations/{ended.id}")
    assert status == 200
    assert body["id"] == ended.id
    assert "endTime" in body
    assert body["state"] == "terminated"
    assert {p["calls"][0]["state"] for p in body["participants"]} == {"terminated"}
    assert [p["purpose"] for p in body["participants"]].count("acd") == 2  # a transfer: two queue visits

    status, body, _ = await client.api("GET", "/api/v2/conversations/0f0f0f0f-0000-4000-8000-000000000000")
    assert status == 404
    assert body["code"] == "not.found"


async def test_bulk_presence_and_routing_status(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory, users=60)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    users = list(sim.org.world.users.values())

    status, body, _ = await client.api("GET", BULK, params={"id": ",".join(u.id for u in users[:50])})
    assert status == 200
    assert isinstance(body, list)
    assert [p["userId"] for p in body] == [u.id for u in users[:50]]

    status, body, _ = await client.api("GET", BULK, params={"id": ",".join(u.id for u in users[:51])})
    assert status == 400
    assert body["status"] == 400
    assert body["code"] == "bad.request"
    assert "maximum of 50" in body["message"]
    assert body["messageParams"] == {"max": "50"}

    user = users[0]
    status, body, _ = await client.api("GET", f"/api/v2/users/{user.id}/routingstatus")
    assert status == 200
    assert body["userId"] == user.id
    assert body["status"] == user.routing
    status, body, _ = await client.api(
        "GET", "/api/v2/users/0f0f0f0f-0000-4000-8000-000000000000/routingstatus"
    )
    assert (status, body["status"]) == (200, "OFF_QUEUE")


@pytest.mark.parametrize(
    ("denied", "method", "path", "body", "code"),
    [
        (
            ["analytics:conversationDetail:view", "analytics:agentConversationDetail:view"],
            "POST",
            DETAILS,
            query(),
            "missing.any.permissions",
        ),
        (
            ["conversation:communication:view"],
            "GET",
            "/api/v2/conversations/{conversation}",
            None,
            "missing.permissions",
        ),
        (["analytics:queueObservation:view"], "POST", OBSERVATIONS, {}, "missing.permissions"),
    ],
)
async def test_a_missing_permission_is_a_403_naming_it(
    genesys_sim_factory: SimFactory,
    client_factory: Callable[[GenesysSim], SimClient],
    denied: list[str],
    method: str,
    path: str,
    body: Any,
    code: str,
) -> None:
    sim = await org_sim(genesys_sim_factory, hours=1)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    path = path.format(conversation=sim.org.world.conversations()[0].id)
    sim.org.denied_permissions.update(denied)
    status, answer, _ = await client.api(method, path, json=body)
    assert status == 403
    assert answer["code"] == code
    assert answer["status"] == 403
    assert all(p in answer["message"] for p in denied)
    sim.org.denied_permissions.clear()
    status, _, _ = await client.api(method, path, json=body if body else None)
    assert status in (200, 400)  # allowed again (an empty observations query is then a 400)


async def test_one_of_the_two_detail_permissions_is_enough(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory, hours=1)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    sim.org.denied_permissions.add("analytics:conversationDetail:view")
    status, _, _ = await client.api("POST", DETAILS, json=query())
    assert status == 200


async def test_a_burst_gets_429_with_retry_after_and_rate_limit_headers(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory, hours=1, api_rate_limit_per_min=5)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    user = next(iter(sim.org.world.users))
    answers = [await client.api("GET", f"/api/v2/users/{user}/routingstatus") for _ in range(8)]
    assert [a[0] for a in answers] == [200] * 5 + [429] * 3
    for _, _, headers in answers[:5]:
        assert headers["inin-ratelimit-allowed"] == "5"
    _status, body, headers = answers[5]
    assert body["code"] == "too.many.requests"
    assert int(headers["Retry-After"]) >= 1
    assert headers["inin-ratelimit-count"] == "5"


async def test_queue_observations_agree_with_the_published_observations(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    sim = await org_sim(genesys_sim_factory, hours=0)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    queue_ids = list(sim.org.world.queues)
    channel = await client.create_channel()
    ws = await client.connect(channel)
    topics = [f"v2.analytics.queues.{q}.observations" for q in queue_ids]
    status, _ = await client.subscribe(channel["id"], topics)
    assert status == 200
    sim.org.advance_by(1800)
    last: dict[str, Any] = {}
    published = sum(1 for r in sim.ledger if r.topic in topics)
    assert published > 0
    for _ in range(published):
        message = await next_json(ws)
        last[message["topicName"]] = message["eventBody"]
    metrics = ["oWaiting", "oAlerting", "oInteracting", "oOnQueueUsers", "oOffQueueUsers"]
    predicates = [{"type": "dimension", "dimension": "queueId", "value": q} for q in queue_ids]
    status, body, _ = await client.api(
        "POST", OBSERVATIONS, json={"filter": {"type": "or", "predicates": predicates}, "metrics": metrics}
    )
    assert status == 200
    for result in body["results"]:
        topic = f"v2.analytics.queues.{result['group']['queueId']}.observations"
        if topic in last:
            assert last[topic]["data"][0]["metrics"] == result["data"]
    await ws.close()


async def test_the_org_world_is_off_by_default(genesys_sim: GenesysSim, sim_client: SimClient) -> None:
    assert genesys_sim.org is None
    status, _, _ = await sim_client.api("POST", DETAILS, json=query())
    assert status == 404


async def test_the_cli_runs_an_org_and_serves_its_state() -> None:
    async with (
        simulator_process(
            "genesys",
            "--port",
            "0",
            "--org",
            "--org-seed",
            "3",
            "--org-users",
            "5",
            "--org-time-scale",
            "600",
        ) as command,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(command.base_url + "/_sim/org") as resp:
            assert resp.status == 200
            state = await resp.json()
        assert len(state["users"]) == 5
        assert len(state["queues"]) == 3
        async with session.post(command.base_url + "/_sim/org/advance", json={"seconds": 3600}) as resp:
            assert resp.status == 200
            assert (await resp.json())["changes"] > 0
        async with session.get(command.base_url + "/_sim/org") as resp:
            assert (await resp.json())["conversations"] > 0


async def test_the_cli_repeats_an_org_given_its_start_and_settings() -> None:
    args = ("genesys", "--port", "0", "--org", "--org-time-scale", "0", "--org-start", "1796400000")
    tuned = (*args, "--org-setting", "mean_talk=5", "--org-setting", "mean-presence=30")
    states = []
    async with aiohttp.ClientSession() as session:
        for argv in (tuned, tuned, args):
            async with simulator_process(*argv) as command:
                url = command.base_url + "/_sim/org"
                async with session.post(url + "/advance", json={"seconds": 1800}) as resp:
                    assert resp.status == 200
                async with session.get(url) as resp:
                    states.append(await resp.json())
    assert states[0]["now"] == 1796400000 + 1800
    assert states[0] == states[1]  # the same world
    assert states[0]["published"] != states[2]["published"]  # the settings took effect


async def test_the_cli_names_a_wrong_org_setting() -> None:
    for setting, message in (("seed=3", "NAME one of mean_talk"), ("mean_talk=x", "needs a number")):
        proc = await asyncio.create_subprocess_exec(
            *gcbridge_argv("sim", "genesys", "--port", "0", "--org", "--org-setting", setting),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "COLUMNS": "300"},
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2
        assert message in " ".join(err.decode().split()), err.decode()


async def test_the_cli_refuses_random_traffic_with_an_org() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gcbridge",
        "sim",
        "genesys",
        "--port",
        "0",
        "--org",
        "--traffic",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"exclude each other" in err


async def test_what_a_socket_received_replays_to_the_rest_answers(
    genesys_sim_factory: SimFactory, client_factory: Callable[[GenesysSim], SimClient]
) -> None:
    # One GET per conversation seen: no rate limit, so that the check is of agreement only.
    sim = await org_sim(genesys_sim_factory, hours=0, users=4, api_rate_limit_per_min=None)
    client = await client_for(sim, client_factory)
    assert sim.org is not None
    user_ids = list(sim.org.world.users)
    channel = await client.create_channel()
    ws = await client.connect(channel)
    topics = [f"v2.users.{u}?presence&routingStatus&conversations" for u in user_ids]
    status, _ = await client.subscribe(channel["id"], topics)
    assert status == 200
    sim.org.advance_by(3 * 3600)
    expected = len(sim.deliveries_to(channel["id"]))
    assert expected > 50
    presence: dict[str, Any] = {}
    routing: dict[str, Any] = {}
    conversations: dict[str, Any] = {}
    for _ in range(expected):
        message = await next_json(ws)
        topic, body = message["topicName"], message["eventBody"]
        user_id = topic.split(".")[2]
        if topic.endswith(".presence"):
            presence[user_id] = body
        elif topic.endswith(".routingStatus"):
            routing[user_id] = body
        else:
            conversations[body["id"]] = body
    await ws.close()

    status, bulk, _ = await client.api("GET", BULK, params={"id": ",".join(user_ids)})
    assert status == 200
    for answer in bulk:
        if answer["userId"] in presence:
            seen = presence[answer["userId"]]
            assert seen["modifiedDate"] == answer["modifiedDate"]
            assert seen["presenceDefinition"]["id"] == answer["presenceDefinition"]["id"]
    for user_id, seen in routing.items():
        status, answer, _ = await client.api("GET", f"/api/v2/users/{user_id}/routingstatus")
        assert seen["routingStatus"] == {"status": answer["status"], "startTime": answer["startTime"]}
    assert conversations
    for conversation_id, seen in conversations.items():
        status, answer, _ = await client.api("GET", f"/api/v2/conversations/{conversation_id}")
        assert status == 200
        states = {p["id"]: (p["calls"][0]["state"], p["calls"][0]["held"]) for p in answer["participants"]}
        assert {
            p["id"]: (p["calls"][0]["state"], p["calls"][0]["held"]) for p in seen["participants"]
        } == states
