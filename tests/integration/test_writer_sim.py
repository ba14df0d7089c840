"""The ServiceNow writer (Router and its sinks) against the ServiceNow simulator on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from gcbridge import _json
from gcbridge.bridge.mapping import MappingRule, compile_mapping, event_to_outbox_item
from gcbridge.bridge.router import Router, ServiceNowSection, build_router
from gcbridge.genesys.events import Event
from gcbridge.outbox.base import Delivered, OutboxRow, Reject, Retry
from gcbridge.servicenow import OAuthConfig
from gcbridge.sim.servicenow import ServiceNowSim

from .conftest import wait_for
from .sn_fixtures import basic_writer_config, localhost_url, started_sim, writer_session

QUEUE_TOPIC = "v2.routing.queues.q-1.conversations"


@pytest.fixture
async def sim() -> AsyncIterator[ServiceNowSim]:
    async with started_sim() as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with writer_session() as s:
        yield s


_seq = iter(range(1, 10**9))


def conversation(conv_id: str, state: str, **agent: Any) -> dict[str, Any]:
    return {
        "id": conv_id,
        "participants": [
            {
                "purpose": "customer",
                "address": "tel:+15550100",
                "connectedTime": "2024-03-01T10:00:00Z",
                "calls": [{"state": state, "direction": "inbound"}],
            },
            {"purpose": "agent", "userId": "u-1", "queueId": "q-1", "calls": [{"state": state}], **agent},
        ],
    }


def to_row(topic: str, body: dict[str, Any], router: Router) -> OutboxRow:
    n = next(_seq)
    event = Event(topic=topic, body=body, version="2", metadata={}, dedup_key=f"dk-{n}", received_at=1.7e9)
    item = event_to_outbox_item(event, router.mapping)
    assert item is not None
    return OutboxRow(n, item.dedup_key, item.order_key, item.topic, item.payload, item.received_at, 0)


async def test_conversation_updates_coalesce_into_one_interaction(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    router = build_router(basic_writer_config(localhost_url(sim)), session)
    outcomes = [
        await router.deliver(to_row(QUEUE_TOPIC, conversation("c-1", "alerting"), router)),
        await router.deliver(to_row(QUEUE_TOPIC, conversation("c-1", "connected"), router)),
        await router.deliver(
            to_row(
                QUEUE_TOPIC,
                conversation("c-1", "disconnected", wrapup={"code": "Sale", "notes": "done"}),
                router,
            )
        ),
        await router.deliver(to_row(QUEUE_TOPIC, conversation("c-2", "alerting"), router)),
    ]
    assert all(isinstance(o, Delivered) for o in outcomes), outcomes
    assert [o.detail.split()[1] for o in outcomes if isinstance(o, Delivered)] == [
        "inserted",
        "ignored",
        "updated",
        "inserted",
    ]  # alerting and connected both map to work_in_progress
    interactions = {r["correlation_id"]: r for r in sim.records("interaction")}
    assert set(interactions) == {"c-1", "c-2"}
    first = interactions["c-1"]
    assert first["state"] == "closed_complete"
    assert first["wrapup_code"] == "Sale"
    assert first["number"].startswith("IMS")
    assert interactions["c-2"]["state"] == "work_in_progress"


async def test_presence_and_queue_statistics_defaults(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    router = build_router(basic_writer_config(localhost_url(sim)), session)
    presence = {
        "presenceDefinition": {"id": "p", "systemPresence": "Busy"},
        "modifiedDate": "2024-03-01T10:00:00Z",
    }
    routing = {"routingStatus": {"status": "IDLE", "startTime": "2024-03-01T10:01:00Z"}}
    stats = {
        "group": {"queueId": "q-9", "mediaType": "voice"},
        "data": [{"interval": "x/x", "metrics": [{"metric": "oWaiting", "stats": {"count": 3}}]}],
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("v2.users.u-7.presence", presence),
        ("v2.users.u-7.routingStatus", routing),
        ("v2.analytics.queues.q-9.observations", stats),
    ]
    for topic, body in events:
        assert isinstance(await router.deliver(to_row(topic, body, router)), Delivered)
    (user,) = sim.records("u_genesys_presence")
    assert (user["u_user_id"], user["u_presence"], user["u_routing_status"]) == ("u-7", "Busy", "IDLE")
    (queue,) = sim.records("u_genesys_queue_stats")
    assert (queue["u_queue_id"], queue["u_waiting"]) == ("q-9", "3")


async def test_table_upsert_and_event_management(sim: ServiceNowSim, session: aiohttp.ClientSession) -> None:
    rules = [
        MappingRule(
            name="incidents",
            topics=["v2.routing.queues.*.conversations"],
            sink="table",
            target="incident",
            key="{body.id}",
            fields={"short_description": "Genesys call {body.id}", "correlation_display": "Genesys Cloud"},
        ),
        MappingRule(
            name="queue_alerts",
            topics=["v2.analytics.queues.*.observations"],
            sink="event",
            key="genesys-queue-{topic_parts[3]}",
            fields={
                "source": "Genesys Cloud",
                "node": "{topic_parts[3]}",
                "type": "queue",
                "severity": "3",
                "description": "{body.data[?metric=='oWaiting'].stats.count} waiting",
            },
        ),
    ]
    router = build_router(basic_writer_config(localhost_url(sim), rules), session)
    for state in ("alerting", "connected", "disconnected"):
        assert isinstance(
            await router.deliver(to_row(QUEUE_TOPIC, conversation("c-5", state), router)), Delivered
        )
    (incident,) = sim.records("incident")
    assert incident["correlation_id"] == "c-5"
    assert incident["short_description"] == "Genesys call c-5"
    assert incident["number"].startswith("INC")
    body = {"data": [{"metric": "oWaiting", "stats": {"count": 12}}]}
    outcome = await router.deliver(to_row("v2.analytics.queues.q-3.observations", body, router))
    assert isinstance(outcome, Delivered)
    assert "1 events were inserted" in outcome.detail
    (event,) = sim.records("em_event")
    assert (event["message_key"], event["description"]) == ("genesys-queue-q-3", "12 waiting")


async def test_no_cookie_ever_reaches_the_instance_and_no_202(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    """Against ``localhost`` (a hostname: aiohttp's default jar would keep the session cookie) with slow
    answers and more concurrency than a session may queue, our writer never sends a session cookie."""
    sim.set_delay(0.05)
    router = build_router(
        basic_writer_config(localhost_url(sim)).model_copy(update={"concurrency": 16}), session
    )
    rows = [to_row(QUEUE_TOPIC, conversation(f"c-{i}", "connected"), router) for i in range(40)]
    outcomes = await asyncio.gather(*(router.deliver(r) for r in rows))
    assert all(isinstance(o, Delivered) for o in outcomes)
    api = [r for r in sim.requests if r.path.startswith("/api/")]
    assert len(api) == 40
    assert not any(r.had_cookie for r in api)
    assert not any(r.status == 202 for r in api)
    assert len(sim.records("interaction")) == 40


async def test_the_cookie_trap_is_real_for_a_client_that_keeps_cookies(sim: ServiceNowSim) -> None:
    """The control experiment: aiohttp's default jar on ``localhost`` keeps JSESSIONID and gets 202s."""
    url = localhost_url(sim) + "/api/now/table/incident"
    auth = {"Authorization": aiohttp.encode_basic_auth("admin", "admin-pass")}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar()) as leaky:
        async with leaky.get(url, headers=auth) as first:
            assert first.status == 200

        async def status() -> int:
            async with leaky.get(url, headers=auth) as r:
                return r.status

        # The node stalls while the burst arrives, so the session's queue fills however slowly a loaded
        # machine sends it (a 50 ms delay per request assumed 30 requests arrive within a few of those).
        sim.pause()
        burst = [asyncio.create_task(status()) for _ in range(30)]
        await wait_for(lambda: sum(1 for r in sim.requests if r.status == 202) + sim.pending == 30, within=60)
        sim.resume()
        statuses = await asyncio.gather(*burst)
    assert 202 in statuses


async def test_faults_are_classified(sim: ServiceNowSim, session: aiohttp.ClientSession) -> None:
    router = build_router(basic_writer_config(localhost_url(sim)), session)
    row = to_row(QUEUE_TOPIC, conversation("c-1", "connected"), router)
    sim.hibernate(True)
    hibernating = await router.deliver(row)
    assert isinstance(hibernating, Retry)
    assert "HTML" in hibernating.reason
    sim.hibernate(False)
    sim.inject(503, count=1)
    assert isinstance(await router.deliver(row), Retry)
    sim.inject(502, count=1)
    assert isinstance(await router.deliver(row), Retry)
    sim.inject(500, count=1)
    assert isinstance(await router.deliver(row), Retry)
    sim.set_rate_limit(1)
    assert isinstance(await router.deliver(row), Delivered)
    limited = await router.deliver(row)
    assert isinstance(limited, Retry)
    assert limited.after is not None
    assert 0 < limited.after <= 3600
    assert "Rate limit exceeded" in limited.reason
    sim.set_rate_limit(None)
    sim.fail_transform("u_genesys_interaction_import", 1)
    failed = await router.deliver(row)
    assert isinstance(failed, Reject)
    assert "error" in failed.reason
    assert "u_genesys_interaction_import" in failed.reason
    assert isinstance(await router.deliver(row), Delivered)
    assert len(sim.records("interaction")) == 1


async def test_acl_denial_and_unknown_staging_table_are_sink_wide_conditions_not_rejections(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    """Every row would fail alike, so they are retries that name the condition (the dispatcher pauses)."""
    rules = [
        MappingRule(
            name="incidents",
            topics=["v2.routing.queues.*.conversations"],
            sink="table",
            target="incident",
            key="{body.id}",
            fields={"short_description": "x"},
        ),
        MappingRule(
            name="typo",
            topics=["v2.users.*.presence"],
            sink="import_set",
            target="u_genesys_presense_import",
            key="{topic_parts[2]}",
            key_field="u_user_id",
        ),
    ]
    router = build_router(basic_writer_config(localhost_url(sim), rules), session)
    sim.deny("incident", "write")
    denied = await router.deliver(to_row(QUEUE_TOPIC, conversation("c-1", "connected"), router))
    assert isinstance(denied, Retry)
    assert denied.reason.startswith("HTTP 403")
    assert denied.condition is not None
    assert denied.condition.kind == "access"
    unknown = await router.deliver(to_row("v2.users.u-1.presence", {"presenceDefinition": {}}, router))
    assert isinstance(unknown, Retry)
    assert "Invalid table u_genesys_presense_import" in unknown.reason
    assert unknown.condition is not None
    assert unknown.condition.summary.startswith("ServiceNow table u_genesys_presense_import does not exist")


async def test_oauth_password_grant_survives_token_revocation(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    config = ServiceNowSection(
        instance_url=localhost_url(sim),
        auth=OAuthConfig(
            client_id="cid",
            client_secret=SecretStr("csecret"),
            grant="password",
            username="bridge",
            password=SecretStr("bridge-pass"),
        ),
    )
    router = build_router(config, session)
    try:
        rows = [to_row(QUEUE_TOPIC, conversation(f"c-{i}", "connected"), router) for i in range(5)]
        assert all(isinstance(o, Delivered) for o in await asyncio.gather(*(router.deliver(r) for r in rows)))
        sim.revoke_tokens()
        again = [to_row(QUEUE_TOPIC, conversation(f"c-{i}", "disconnected"), router) for i in range(5)]
        assert all(
            isinstance(o, Delivered) for o in await asyncio.gather(*(router.deliver(r) for r in again))
        )
    finally:
        await router.close()
    token_requests = [r for r in sim.requests if r.path == "/oauth_token.do"]
    assert 2 <= len(token_requests) <= 3  # one at start, one (maybe a refresh + password fallback) after
    assert {r["state"] for r in sim.records("interaction")} == {"closed_complete"}


async def test_client_credentials_disabled_is_a_clear_retry(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    config = ServiceNowSection(
        instance_url=localhost_url(sim),
        auth=OAuthConfig(client_id="cid", client_secret=SecretStr("csecret"), grant="client_credentials"),
    )
    router = build_router(config, session)
    try:
        outcome = await router.deliver(to_row(QUEUE_TOPIC, conversation("c-1", "connected"), router))
    finally:
        await router.close()
    assert isinstance(outcome, Retry)
    assert "glide.oauth.inbound.client.credential.grant_type.enabled" in outcome.reason
    assert "csecret" not in outcome.reason


async def test_oversize_row_is_truncated_not_lost(sim: ServiceNowSim, session: aiohttp.ClientSession) -> None:
    rule = MappingRule(
        name="notes",
        topics=["v2.routing.queues.*.conversations"],
        sink="import_set",
        target="u_genesys_interaction_import",
        key="{body.id}",
        key_field="u_conversation_id",
        fields={"u_description": "{body.notes}", "u_short_description": "call {body.id}"},
    )
    router = build_router(basic_writer_config(localhost_url(sim), [rule]), session)
    outcome = await router.deliver(to_row(QUEUE_TOPIC, {"id": "c-big", "notes": "n" * 20000}, router))
    assert isinstance(outcome, Delivered)
    assert "u_description: truncated to fit 8126 bytes" in outcome.detail
    (record,) = sim.records("interaction")
    assert record["description"].endswith("[truncated]")
    assert record["short_description"] == "call c-big"
    assert len(_json.dumps(sim.import_sets[-1].rows[-1].values)) <= 8126


async def test_mapping_shared_with_the_ingest_side(sim: ServiceNowSim) -> None:
    mapping = compile_mapping()
    item = event_to_outbox_item(
        Event(QUEUE_TOPIC, conversation("c-77", "alerting"), "2", {}, "dk", 1.0), mapping
    )
    assert item is not None
    assert item.order_key == "c-77"


async def test_a_later_event_without_a_field_does_not_blank_it(
    sim: ServiceNowSim, session: aiohttp.ClientSession
) -> None:
    """The wrap-up detail event sets the wrap-up code; a later conversation update without one leaves it."""
    router = build_router(basic_writer_config(localhost_url(sim)), session)
    wrapup = {
        "conversationId": "c-8",
        "wrapupCode": "Refund",
        "wrapupNotes": "card",
        "eventTime": 1709288430123,
    }
    steps = [
        (QUEUE_TOPIC, conversation("c-8", "connected")),
        ("v2.detail.events.conversation.c-8.wrapup", wrapup),
        (QUEUE_TOPIC, conversation("c-8", "disconnected")),
    ]
    for topic, body in steps:
        assert isinstance(await router.deliver(to_row(topic, body, router)), Delivered)
    (record,) = sim.records("interaction")
    assert (record["wrapup_code"], record["wrapup_notes"]) == ("Refund", "card")
    assert record["state"] == "closed_complete"
    assert record["last_event"] == QUEUE_TOPIC
