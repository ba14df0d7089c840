"""The ServiceNow simulator's Table API over HTTP (aiohttp client, 127.0.0.1, free port)."""

from __future__ import annotations

import re

import pytest

from gcbridge.sim.servicenow import ServiceNowSim

from .sn_fixtures import SnClient, basic, running_sim, sim_config

INCIDENTS = "/api/now/table/incident"


async def create(client: SnClient, path: str = INCIDENTS, **fields: object) -> dict[str, str]:
    answer = await client.call("POST", path, json=fields)
    assert answer.status == 201, answer.text
    return dict(answer.body["result"])


async def test_post_returns_201_location_and_a_string_typed_record(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    answer = await client.call(
        "POST", INCIDENTS, json={"short_description": "Call", "impact": 2, "active": True}
    )
    assert answer.status == 201
    record = answer.body["result"]
    assert answer.headers["Location"] == f"{client.base_url}{INCIDENTS}/{record['sys_id']}"
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert record["number"] == "INC0010001"
    assert (record["impact"], record["active"], record["sys_mod_count"]) == ("2", "true", "0")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["sys_created_on"])
    assert record["sys_updated_on"] == record["sys_created_on"]
    assert all(isinstance(v, str) for k, v in record.items() if k not in ("sys_domain", "caller_id"))
    assert record["sys_domain"] == {
        "link": f"{client.base_url}/api/now/table/sys_user_group/global",
        "value": "global",
    }
    assert sim.records("incident")[0]["short_description"] == "Call"


async def test_multi_record_post_processes_only_the_first(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    answer = await client.call(
        "POST", INCIDENTS, json=[{"short_description": "one"}, {"short_description": "two"}]
    )
    assert answer.status == 201
    assert [r["short_description"] for r in sim.records("incident")] == ["one"]


async def test_get_patch_put_delete_one_record(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sys_id = (await create(client, short_description="a"))["sys_id"]
    got = await client.call("GET", f"{INCIDENTS}/{sys_id}")
    assert (got.status, got.body["result"]["short_description"]) == (200, "a")
    patched = await client.call("PATCH", f"{INCIDENTS}/{sys_id}", json={"state": "2"})
    assert (patched.status, patched.body["result"]["state"], patched.body["result"]["sys_mod_count"]) == (
        200,
        "2",
        "1",
    )
    put = await client.call("PUT", f"{INCIDENTS}/{sys_id}", json={"short_description": ""})
    assert (put.status, put.body["result"]["short_description"]) == (200, "")  # empty string clears
    deleted = await client.call("DELETE", f"{INCIDENTS}/{sys_id}")
    assert (deleted.status, deleted.text) == (204, "")
    assert sim.records("incident") == []


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
async def test_missing_record_is_404_no_record_found(sn: tuple[ServiceNowSim, SnClient], method: str) -> None:
    _, client = sn
    answer = await client.call(method, f"{INCIDENTS}/{'0' * 32}", json={"state": "2"})
    assert answer.status == 404
    assert answer.body == {
        "error": {
            "message": "No Record found",
            "detail": "Record doesn't exist or ACL restricts the record retrieval",
        },
        "status": "failure",
    }


async def test_unknown_table_is_400_invalid_table(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    answer = await client.call("GET", "/api/now/table/u_nope")
    assert answer.status == 400
    assert answer.body == {"error": {"message": "Invalid table u_nope", "detail": None}, "status": "failure"}


async def test_query_operators_order_and_misspelled_field(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    for conv, desc in (("c-1", "Printer on fire"), ("c-2", "printer jam"), ("c-3", "VPN down")):
        await create(client, correlation_id=conv, short_description=desc)

    async def numbers(query: str) -> list[str]:
        answer = await client.call(
            "GET", INCIDENTS, params={"sysparm_query": query, "sysparm_fields": "number"}
        )
        assert answer.status == 200
        return [r["number"] for r in answer.body["result"]]

    assert await numbers("correlation_id=c-2") == ["INC0010002"]
    assert await numbers("correlation_id!=c-2^ORDERBYDESCnumber") == ["INC0010003", "INC0010001"]
    assert await numbers("short_descriptionLIKEprinter") == ["INC0010002"]
    assert await numbers("short_descriptionSTARTSWITHVPN^ORcorrelation_id=c-1") == [
        "INC0010001",
        "INC0010003",
    ]
    assert await numbers("short_descriptionENDSWITHjam") == ["INC0010002"]
    # A misspelled field is ignored: the lookup matches every row, as on a real instance.
    assert await numbers("corelation_id=c-2") == ["INC0010001", "INC0010002", "INC0010003"]


async def test_invalid_query_returns_no_rows_when_the_property_is_set() -> None:
    async with running_sim(sim_config(invalid_query_returns_no_rows=True)) as (_, client):
        await create(client, correlation_id="c-1")
        answer = await client.call("GET", INCIDENTS, params={"sysparm_query": "corelation_id=c-1"})
        assert (answer.status, answer.body) == (200, {"result": []})


async def test_name_value_pairs_filter_like_a_query(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    await create(client, correlation_id="a")
    await create(client, correlation_id="b")
    answer = await client.call("GET", INCIDENTS, params={"correlation_id": "b"})
    assert [r["correlation_id"] for r in answer.body["result"]] == ["b"]


async def test_paging_headers_limit_and_offset(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    for i in range(5):
        await create(client, short_description=f"n{i}")
    answer = await client.call("GET", INCIDENTS, params={"sysparm_limit": "2", "sysparm_offset": "2"})
    assert [r["short_description"] for r in answer.body["result"]] == ["n2", "n3"]
    assert answer.headers["X-Total-Count"] == "5"
    links = dict((rel, url) for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', answer.headers["Link"]))
    assert set(links) == {"first", "prev", "next", "last"}
    assert "sysparm_offset=4" in links["next"]
    assert "sysparm_offset=0" in links["prev"]
    assert "sysparm_offset=4" in links["last"]
    suppressed = await client.call(
        "GET", INCIDENTS, params={"sysparm_limit": "2", "sysparm_suppress_pagination_header": "true"}
    )
    assert "Link" not in suppressed.headers
    assert suppressed.headers["X-Total-Count"] == "5"


async def test_v1_answers_404_on_no_match_v2_and_latest_answer_empty(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    _, client = sn
    query = {"sysparm_query": "correlation_id=none"}
    v1 = await client.call("GET", "/api/now/v1/table/incident", params=query)
    assert (v1.status, v1.body["error"]["message"]) == (404, "No Record found")
    for path in ("/api/now/v2/table/incident", INCIDENTS):
        answer = await client.call("GET", path, params=query)
        assert (answer.status, answer.body) == (200, {"result": []})


async def test_display_value_modes_and_reference_links(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    user = await create(client, "/api/now/table/sys_user", name="Ada Lovelace", user_name="ada")
    incident = await create(client, caller_id=user["sys_id"], short_description="x")
    path = f"{INCIDENTS}/{incident['sys_id']}"
    fields = "caller_id,short_description,caller_id.name,not_a_field"
    link = f"{client.base_url}/api/now/table/sys_user/{user['sys_id']}"

    async def fetch(**params: str) -> dict[str, object]:
        answer = await client.call("GET", path, params={"sysparm_fields": fields, **params})
        return dict(answer.body["result"])

    assert await fetch() == {
        "caller_id": {"link": link, "value": user["sys_id"]},
        "short_description": "x",
        "caller_id.name": "Ada Lovelace",
    }
    assert (await fetch(sysparm_exclude_reference_link="true"))["caller_id"] == user["sys_id"]
    assert (await fetch(sysparm_display_value="true"))["caller_id"] == {
        "display_value": "Ada Lovelace",
        "link": link,
    }
    everything = await fetch(sysparm_display_value="all", sysparm_exclude_reference_link="true")
    assert everything["caller_id"] == {"display_value": "Ada Lovelace", "value": user["sys_id"]}
    assert everything["short_description"] == {"display_value": "x", "value": "x"}


async def test_x_no_response_body_suppresses_the_body(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    answer = await client.call(
        "POST", INCIDENTS, json={"short_description": "quiet"}, headers={"X-no-response-body": "true"}
    )
    assert (answer.status, answer.text) == (201, "")
    assert "Location" in answer.headers
    assert sim.records("incident")[0]["short_description"] == "quiet"


async def test_journal_fields_are_write_only(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    record = await create(client, work_notes="called the customer")
    assert record["work_notes"] == ""
    assert [e.value for e in sim.journal] == ["called the customer"]


async def test_acl_denials_use_the_documented_bodies(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.deny("incident", "write", user="bridge")
    denied = await client.call("POST", INCIDENTS, json={"short_description": "x"}, auth=basic("bridge"))
    assert denied.status == 403
    assert denied.body == {
        "error": {
            "message": "Operation Failed",
            "detail": "ACL Exception Update Failed due to security constraints",
        },
        "status": "failure",
    }
    assert (await client.call("POST", INCIDENTS, json={})).status == 201  # admin is not denied
    sim.deny("incident", "read")
    read = await client.call("GET", INCIDENTS)
    assert (read.status, read.body["error"]) == (
        403,
        {"message": "Insufficient rights to query records", "detail": None},
    )


async def test_method_override_header_is_honoured(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sys_id = (await create(client, state="1"))["sys_id"]
    answer = await client.call(
        "POST", f"{INCIDENTS}/{sys_id}", json={"state": "6"}, headers={"X-http-method-override": "PATCH"}
    )
    assert answer.status == 200
    assert sim.records("incident")[0]["state"] == "6"


async def test_head_is_get_without_a_body(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    await create(client)
    answer = await client.call("HEAD", INCIDENTS)
    assert (answer.status, answer.text, answer.headers["X-Total-Count"]) == (200, "", "1")


async def test_default_limit_is_10000() -> None:
    async with running_sim() as (sim, client):
        for _ in range(10_001):
            sim.state.store.insert("u_genesys_presence", {"u_user_id": "u"}, "admin", 0.0)
        answer = await client.call(
            "GET", "/api/now/table/u_genesys_presence", params={"sysparm_fields": "sys_id"}
        )
        assert len(answer.body["result"]) == 10_000
        assert answer.headers["X-Total-Count"] == "10001"


async def test_strict_columns_drop_unknown_writes() -> None:
    async with running_sim(sim_config(strict_columns=True)) as (sim, client):
        record = await create(client, short_description="x", u_made_up="y")
        assert "u_made_up" not in record
        assert "u_made_up" not in sim.records("incident")[0]


async def test_added_table_is_served(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.add_table("u_custom", "CUS")
    record = await create(client, "/api/now/table/u_custom", u_field="v")
    assert record["number"] == "CUS0010001"
