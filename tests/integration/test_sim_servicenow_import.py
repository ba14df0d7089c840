"""Import Set API and Event Management in the ServiceNow simulator, over HTTP."""

from __future__ import annotations

import asyncio
import time

from gcbridge.sim.servicenow import AutoMap, ServiceNowSim, TransformMap

from .conftest import wait_for
from .sn_fixtures import SnClient

STAGE = "/api/now/import/u_genesys_interaction_import"


async def test_single_row_import_inserts_then_updates_then_ignores(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    first = await client.call("POST", STAGE, json={"u_conversation_id": "conv-1", "u_state": "queued"})
    assert first.status == 201
    assert first.body["staging_table"] == "u_genesys_interaction_import"
    assert first.body["import_set"].startswith("ISET")
    (result,) = first.body["result"]
    assert result["status"] == "inserted"
    assert (result["transform_map"], result["table"], result["display_name"]) == (
        "Genesys Interaction",
        "interaction",
        "number",
    )
    assert result["display_value"].startswith("IMS")
    assert result["record_link"] == f"{client.base_url}/api/now/table/interaction/{result['sys_id']}"

    updated = await client.call(
        "POST", STAGE, json={"u_conversation_id": "CONV-1", "u_state": "work_in_progress"}
    )
    assert updated.status == 201
    assert (updated.body["result"][0]["status"], updated.body["result"][0]["sys_id"]) == (
        "updated",
        result["sys_id"],
    )

    ignored = await client.call(
        "POST", STAGE, json={"u_conversation_id": "CONV-1", "u_state": "work_in_progress"}
    )
    assert ignored.body["result"][0]["status"] == "ignored"
    assert ignored.body["result"][0]["status_message"] == "No field values changed"

    (record,) = sim.records("interaction")
    assert (record["correlation_id"], record["state"]) == ("CONV-1", "work_in_progress")
    assert [row.state for row in sim.import_sets[0].rows] == ["inserted", "updated", "ignored"]


async def test_missing_coalesce_value_is_skipped_with_the_staging_row_id(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    answer = await client.call("POST", STAGE, json={"u_state": "queued"})
    assert answer.status == 201
    (result,) = answer.body["result"]
    assert result["status"] == "skipped"
    assert result["sys_id"] == sim.import_sets[0].rows[0].sys_id
    assert sim.records("interaction") == []


async def test_failed_transform_still_answers_201(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.fail_transform("u_genesys_interaction_import", 1)
    failed = await client.call("POST", STAGE, json={"u_conversation_id": "conv-1"})
    assert failed.status == 201
    assert failed.body["result"][0]["status"] == "error"
    assert failed.body["result"][0]["error_message"] == "Target record not found"
    assert sim.records("interaction") == []
    retried = await client.call("POST", STAGE, json={"u_conversation_id": "conv-1"})
    assert retried.body["result"][0]["status"] == "inserted"


async def test_import_row_can_be_read_back(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    posted = await client.call("POST", STAGE, json={"u_conversation_id": "conv-1"})
    row_id = sim.import_sets[0].rows[0].sys_id
    answer = await client.call("GET", f"{STAGE}/{row_id}")
    assert (answer.status, answer.body) == (200, posted.body)
    missing = await client.call("GET", f"{STAGE}/{'0' * 32}")
    assert missing.status == 404


async def test_unknown_staging_table_is_invalid_table(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    answer = await client.call("POST", "/api/now/import/u_nope", json={"u_a": "1"})
    assert (answer.status, answer.body["error"]["message"]) == (400, "Invalid table u_nope")


async def test_presence_and_queue_staging_tables_coalesce_on_their_ids(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    for presence in ("Available", "Busy"):
        await client.call(
            "POST",
            "/api/now/import/u_genesys_presence_import",
            json={"u_user_id": "u-1", "u_presence": presence},
        )
    await client.call(
        "POST", "/api/now/import/u_genesys_queue_stats_import", json={"u_queue_id": "q-1", "u_waiting": "3"}
    )
    assert [(r["u_user_id"], r["u_presence"]) for r in sim.records("u_genesys_presence")] == [("u-1", "Busy")]
    assert [(r["u_queue_id"], r["u_waiting"]) for r in sim.records("u_genesys_queue_stats")] == [("q-1", "3")]


async def test_every_transform_map_of_a_staging_table_gives_a_result(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    sim.add_transform_map(
        "u_genesys_interaction_import",
        TransformMap(
            "Genesys Incident", "incident", {"u_conversation_id": "correlation_id"}, ["correlation_id"]
        ),
    )
    answer = await client.call("POST", STAGE, json={"u_conversation_id": "conv-1"})
    assert [(r["table"], r["status"]) for r in answer.body["result"]] == [
        ("interaction", "inserted"),
        ("incident", "inserted"),
    ]


async def test_concurrent_rows_with_one_coalesce_value_make_one_record(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    sim.set_transform_time(0.02)  # each transform holds its coalesce value for a while
    answers = await asyncio.gather(
        *(
            client.call("POST", STAGE, json={"u_conversation_id": "same", "u_state": f"s{i}"})
            for i in range(8)
        )
    )
    statuses = sorted(a.body["result"][0]["status"] for a in answers)
    assert statuses == ["inserted"] + ["updated"] * 7
    assert len(sim.records("interaction")) == 1


async def test_insert_multiple_is_asynchronous_and_processed_shortly(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    records = [{"u_conversation_id": f"c-{i}", "u_state": "queued"} for i in range(3)]
    answer = await client.call("POST", f"{STAGE}/insertMultiple", json={"records": records})
    assert answer.status == 200
    assert set(answer.body) == {"import_set_id", "multi_import_set_id"}
    (import_set,) = sim.import_sets
    assert import_set.sys_id == answer.body["import_set_id"]
    await wait_for(lambda: len(sim.records("interaction")) == 3)
    await wait_for(lambda: import_set.state == "Processed")
    assert [row.state for row in import_set.rows] == ["inserted"] * 3


async def test_insert_multiple_needs_a_records_list(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    answer = await client.call("POST", f"{STAGE}/insertMultiple", json={"u_conversation_id": "x"})
    assert answer.status == 400
    assert answer.body["status"] == "failure"


async def test_em_events_are_inserted_and_deduplicated_by_message_key(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    events = [
        {"source": "Genesys", "node": "queue-1", "type": "SLA", "message_key": "q1-sla", "severity": "2"},
        {"source": "Genesys", "node": "queue-1", "type": "SLA", "message_key": "q1-sla", "severity": "0"},
        {"source": "Genesys", "node": "trunk-9", "type": "Trunk", "resource": "t", "metric_name": "up"},
    ]
    answer = await client.call("POST", "/api/global/em/jsonv2", json={"records": events})
    assert (answer.status, answer.body) == (
        200,
        {"result": {"Default Bulk Endpoint": "3 events were inserted"}},
    )
    rows = sim.records("em_event")
    assert [(r["message_key"], r["severity"]) for r in rows] == [
        ("q1-sla", "0"),
        ("Genesystrunk-9Trunktup", ""),
    ]


async def test_non_u_columns_do_not_reach_the_target(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.add_transform_map(
        "u_copy_import",
        TransformMap("Copy", "u_genesys_presence", coalesce=["u_user_id"], auto_map=AutoMap.SAME),
    )
    await client.call(
        "POST", "/api/now/import/u_copy_import", json={"u_user_id": "u", "short_description": "x"}
    )
    assert "short_description" not in sim.records("u_genesys_presence")[0]


async def test_each_import_row_records_when_its_transform_committed(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    """The stamp a latency benchmark compares with the Genesys simulator's publish time (both wall clock)."""
    sim, client = sn
    before = time.time()
    await client.call("POST", STAGE, json={"u_conversation_id": "conv-1", "u_state": "queued"})
    await client.call("POST", STAGE, json={"u_conversation_id": "conv-1", "u_state": "closed_complete"})
    first, second = sim.import_sets[0].rows
    assert first.committed_at is not None
    assert second.committed_at is not None
    assert before <= first.committed_at <= second.committed_at <= time.time()
