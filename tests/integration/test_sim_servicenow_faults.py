"""Faults of the ServiceNow simulator: error envelopes, rate limits, full pools, load-balancer pages, the
transaction quota, hibernation, the session-cookie 202 trap, bad input, and the /_sim controls."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gcbridge import _json
from gcbridge.sim.servicenow import ServiceNowSim

from .conftest import wait_for
from .sn_fixtures import Answer, FakeClock, SnClient, running_sim, sim_config

INCIDENTS = "/api/now/table/incident"
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule")


async def test_injected_500_has_the_exception_envelope_and_no_effect(
    sn: tuple[ServiceNowSim, SnClient],
) -> None:
    sim, client = sn
    sim.inject(500, count=1)
    answer = await client.call("POST", INCIDENTS, json={"short_description": "x"})
    assert answer.status == 500
    assert answer.body["status"] == "failure"
    assert answer.body["error"]["detail"].endswith(
        "Check logs for error trace or enable glide.rest.debug property to verify REST request processing"
    )
    assert sim.records("incident") == []
    assert (await client.call("POST", INCIDENTS, json={})).status == 201  # the fault was used up


async def test_injected_500_after_commit_loses_only_the_response(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.inject(500, after_commit=True)
    answer = await client.call("POST", INCIDENTS, json={"short_description": "x"})
    assert answer.status == 500
    assert len(sim.records("incident")) == 1


@pytest.mark.parametrize(("status", "title"), [(502, "502 Bad Gateway"), (503, "503 Service Unavailable")])
async def test_load_balancer_errors_are_html(
    sn: tuple[ServiceNowSim, SnClient], status: int, title: str
) -> None:
    sim, client = sn
    sim.inject(status, count=2)
    for _ in range(2):
        answer = await client.call("GET", INCIDENTS)
        assert answer.status == status
        assert answer.headers["Content-Type"].startswith("text/html")
        assert title in answer.text
    assert (await client.call("GET", INCIDENTS)).status == 200


async def test_injected_429_is_a_full_pool_without_retry_after(sn: tuple[ServiceNowSim, SnClient]) -> None:
    """A 429 storm on demand (a rate-limit rule's 429 waits for the end of its hour window instead)."""
    sim, client = sn
    sim.inject(429, count=2)
    for _ in range(2):
        answer = await client.call("POST", INCIDENTS, json={"short_description": "x"})
        assert answer.status == 429
        assert "API_INT" in answer.body["error"]["detail"]
        assert "Retry-After" not in answer.headers
        assert not any(h in answer.headers for h in RATE_LIMIT_HEADERS)
    assert sim.records("incident") == []
    assert (await client.call("POST", INCIDENTS, json={})).status == 201


async def test_cancelled_transaction_body(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.inject(500, cancelled=True)
    answer = await client.call("GET", INCIDENTS)
    assert answer.status == 500
    assert answer.body["error"]["message"] == "Transaction cancelled: maximum execution time exceeded"


async def test_transaction_quota_cancels_writes_and_truncates_lists() -> None:
    async with running_sim(sim_config(transaction_quota=0.05)) as (sim, client):
        await client.call("POST", INCIDENTS, json={})
        await client.call("POST", INCIDENTS, json={})
        sim.set_delay(1.0)  # longer than the quota: the quota cuts it
        write = await client.call("POST", INCIDENTS, json={})
        assert write.status == 500
        assert write.body["error"]["message"] == "Transaction cancelled: maximum execution time exceeded"
        listed = await client.call("GET", INCIDENTS)
        assert listed.status == 200  # the quirk: a 200 whose stream ends in an error
        assert listed.body["status"] == "failure"
        assert "Transaction cancelled" in listed.body["error"]["message"]
        assert len(listed.body["result"]) == 1  # half of the two rows
        assert len(sim.records("incident")) == 2


async def test_truncated_list_on_demand(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.truncate_lists(1)
    first = await client.call("GET", INCIDENTS)
    assert "maximum execution time exceeded" in first.text
    second = await client.call("GET", INCIDENTS)
    assert second.body == {"result": []}


async def test_slow_responses_still_succeed(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.set_delay(0.05)
    assert (await client.call("POST", INCIDENTS, json={})).status == 201


async def test_hibernating_instance_answers_200_html(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.hibernate(True)
    for path in (INCIDENTS, "/oauth_token.do"):
        answer = await client.call("GET", path)
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "hibernating" in answer.text
    assert (await client.call("POST", INCIDENTS, json={})).status == 200
    assert sim.records("incident") == []
    sim.hibernate(False)
    assert (await client.call("GET", INCIDENTS)).body == {"result": []}


async def test_rate_limit_rule_headers_and_429(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    no_rule = await client.call("GET", INCIDENTS)
    assert not any(h in no_rule.headers for h in RATE_LIMIT_HEADERS)
    rule = sim.set_rate_limit(2)
    assert rule is not None
    for _ in range(2):
        allowed = await client.call("GET", INCIDENTS)
        assert allowed.status == 200
        assert allowed.headers["X-RateLimit-Limit"] == "2"
        assert allowed.headers["X-RateLimit-Rule"] == rule.sys_id
    denied = await client.call("GET", INCIDENTS)
    assert denied.status == 429
    assert denied.body == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 2 requests per hour for Table API exceeded",
        },
        "status": "failure",
    }
    assert 1 <= int(denied.headers["Retry-After"]) <= 3600
    assert int(denied.headers["X-RateLimit-Reset"]) % 3600 == 0


async def test_rate_limit_is_per_table_and_per_api(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    sim.set_rate_limit(1, "u_genesys_interaction_import", api="import")
    stage = "/api/now/import/u_genesys_interaction_import"
    assert (await client.call("POST", stage, json={"u_conversation_id": "a"})).status == 201
    assert (await client.call("POST", stage, json={"u_conversation_id": "b"})).status == 429
    other = await client.call("GET", INCIDENTS)
    assert other.status == 200
    assert "X-RateLimit-Limit" not in other.headers


async def test_full_pool_answers_429_without_headers() -> None:
    async with running_sim(sim_config(concurrency=1, queue=1)) as (sim, client):
        sim.pause()
        held = [asyncio.create_task(client.call("POST", INCIDENTS, json={})) for _ in range(2)]
        await wait_for(lambda: sim.in_flight == 2)
        rejected = await client.call("POST", INCIDENTS, json={})
        assert rejected.status == 429
        assert rejected.body["status"] == "failure"
        assert not any(h in rejected.headers for h in (*RATE_LIMIT_HEADERS, "Retry-After"))
        sim.resume()
        assert [a.status for a in await asyncio.gather(*held)] == [201, 201]
        assert len(sim.records("incident")) == 2


async def _burst_on_one_session(sim: ServiceNowSim, client: SnClient, requests: int) -> list[Answer]:
    """Prime the client's cookie (if its jar keeps it), stall the node, send ``requests`` writes at once."""
    await client.call("GET", INCIDENTS)
    sim.pause()
    burst = [
        asyncio.create_task(client.call("POST", INCIDENTS, json={"short_description": "burst"}))
        for _ in range(requests)
    ]
    # Every request of the burst is either answered 202 already or waiting inside the stalled simulator.
    await wait_for(lambda: sum(1 for r in sim.requests if r.status == 202) + sim.pending == requests)
    sim.resume()
    return list(await asyncio.gather(*burst))


async def test_cookie_keeping_client_on_localhost_gets_202_and_loses_writes() -> None:
    # aiohttp's default jar keeps cookies for a host name (not for an IP address): the real-world trap.
    async with running_sim(sim_config(session_queue_limit=3), cookie_jar=aiohttp.CookieJar()) as (
        sim,
        client,
    ):
        client.base_url = client.base_url.replace("127.0.0.1", "localhost")
        answers = await _burst_on_one_session(sim, client, 10)
        statuses = sorted(a.status for a in answers)
        assert statuses == [201] * 4 + [202] * 6  # one running + three queued; the rest dropped
        assert all(a.text == "" for a in answers if a.status == 202)
        assert len([r for r in sim.records("incident") if r["short_description"] == "burst"]) == 4
        assert all(r.had_cookie for r in sim.requests[1:])


async def test_session_stuck_on_a_long_request_drops_the_next_one() -> None:
    clock = FakeClock()
    config = sim_config(clock=clock)
    async with running_sim(config, cookie_jar=aiohttp.CookieJar()) as (sim, client):
        client.base_url = client.base_url.replace("127.0.0.1", "localhost")
        await client.call("GET", INCIDENTS)  # the jar now holds a JSESSIONID
        sim.pause()
        slow = asyncio.create_task(client.call("POST", INCIDENTS, json={}))
        await wait_for(lambda: sim.in_flight == 1)
        clock.advance(31)  # the running request has held its session for more than 30 s
        dropped = await client.call("POST", INCIDENTS, json={})
        assert dropped.status == 202
        sim.resume()
        assert (await slow).status == 201
        assert len(sim.records("incident")) == 1


async def test_cookie_less_client_never_gets_202() -> None:
    async with running_sim(sim_config(session_queue_limit=3), cookie_jar=aiohttp.DummyCookieJar()) as (
        sim,
        client,
    ):
        client.base_url = client.base_url.replace("127.0.0.1", "localhost")
        answers = await _burst_on_one_session(sim, client, 10)
        assert [a.status for a in answers] == [201] * 10
        assert len(sim.records("incident")) == 10
        assert not any(r.had_cookie for r in sim.requests)


async def test_default_jar_ignores_cookies_from_an_ip_address_host() -> None:
    async with running_sim(cookie_jar=aiohttp.CookieJar()) as (sim, client):
        first = await client.call("GET", INCIDENTS)
        assert "JSESSIONID" in first.headers.get("Set-Cookie", "") or first.headers.getall("Set-Cookie")
        await client.call("GET", INCIDENTS)
        assert not any(r.had_cookie for r in sim.requests)


async def test_responses_set_session_and_load_balancer_cookies(sn: tuple[ServiceNowSim, SnClient]) -> None:
    _, client = sn
    answer = await client.call("GET", INCIDENTS)
    cookies = " ".join(answer.headers.getall("Set-Cookie"))
    assert "JSESSIONID=" in cookies
    assert "BIGipServerpool" in cookies


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", INCIDENTS, b'{"short_description": ', 400, "Exception while reading request"),
        ("POST", INCIDENTS, b'"just a string"', 400, "Exception while reading request"),
        ("POST", f"{INCIDENTS}/{'0' * 32}", b"{}", 405, "Method not Supported"),
        ("DELETE", INCIDENTS, b"", 405, "Method not Supported"),
        ("GET", "/api/now/tables/incident", b"", 400, "Requested URI does not represent any resource"),
        (
            "GET",
            "/api/now/import/u_genesys_interaction_import/insertMultiple",
            b"",
            405,
            "Method not Supported",
        ),
        ("POST", "/api/global/em/jsonv2", b"[1, 2]", 400, "Exception while reading request"),
    ],
)
async def test_bad_input_is_answered_like_an_instance(
    sn: tuple[ServiceNowSim, SnClient], method: str, path: str, body: bytes, status: int, message: str
) -> None:
    _sim, client = sn
    answer = await client.call(method, path, data=body, headers={"Content-Type": "application/json"})
    assert (answer.status, answer.body["error"]["message"]) == (status, message)
    assert answer.body["status"] == "failure"
    assert (await client.call("POST", INCIDENTS, json={})).status == 201  # still serving


async def test_oversize_body_is_400() -> None:
    async with running_sim(sim_config(max_body_bytes=1000)) as (sim, client):
        answer = await client.call("POST", INCIDENTS, json={"description": "x" * 2000})
        assert answer.status == 400
        assert answer.body["error"]["message"] == "Exception while reading request"
        assert sim.records("incident") == []


async def test_requests_are_recorded(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn
    await client.call("POST", INCIDENTS, json={}, params={"sysparm_fields": "sys_id"})
    await client.call("GET", INCIDENTS, auth={})
    post, unauthenticated = sim.requests
    assert (post.method, post.path, post.query, post.status, post.user) == (
        "POST",
        INCIDENTS,
        "sysparm_fields=sys_id",
        201,
        "admin",
    )
    assert (unauthenticated.status, unauthenticated.user, unauthenticated.had_cookie) == (401, None, False)


async def test_http_controls(sn: tuple[ServiceNowSim, SnClient]) -> None:
    sim, client = sn

    async def control(method: str, path: str, payload: object = None) -> Answer:
        return await client.call(
            method, path, data=_json.dumps(payload) if payload is not None else None, auth={}
        )

    assert (await control("POST", "/_sim/inject", {"status": 503, "count": 1})).status == 200
    assert (await client.call("GET", INCIDENTS)).status == 503
    await control("POST", "/_sim/hibernate", {"on": True})
    assert "hibernating" in (await client.call("GET", INCIDENTS)).text
    await control("POST", "/_sim/hibernate", {"on": False})
    await control("POST", "/_sim/rate_limit", {"per_hour": 1})
    await client.call("POST", INCIDENTS, json={"short_description": "via api"})
    assert (await client.call("GET", INCIDENTS)).status == 429
    await control("POST", "/_sim/reset", {})
    await control(
        "POST", "/_sim/fail_transform", {"staging_table": "u_genesys_interaction_import", "count": 1}
    )
    failed = await client.call(
        "POST", "/api/now/import/u_genesys_interaction_import", json={"u_conversation_id": "c"}
    )
    assert failed.body["result"][0]["status"] == "error"
    await control("POST", "/_sim/tables", {"name": "u_extra", "prefix": "EXT"})
    assert (await client.call("POST", "/api/now/table/u_extra", json={})).body["result"][
        "number"
    ] == "EXT0010001"
    records = await control("GET", "/_sim/records/incident")
    assert [r["short_description"] for r in records.body["result"]] == ["via api"]
    state = await control("GET", "/_sim/state")
    assert state.body["tables"]["incident"] == 1
    assert state.body["faults"]["hibernating"] is False
    assert (await control("POST", "/_sim/inject", {"status": 404})).status == 400
    assert (await control("POST", "/_sim/delay", {})).status == 400
    assert (await control("GET", "/_sim/nothing")).status == 404
    assert (await control("GET", "/_sim/records/u_missing")).status == 400
    assert len(sim.records("incident")) == 1


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "content_type"),
    [
        ("POST", INCIDENTS, None, b"\xff\xfe\x00garbage", "application/json"),
        ("POST", INCIDENTS, None, b"null", "application/json"),
        ("POST", INCIDENTS, None, b"12", "application/json"),
        ("POST", INCIDENTS, None, b"<xml/>", "application/xml"),
        ("POST", INCIDENTS, None, b'{"short_description": {"nested": [1, {"x": null}]}}', "application/json"),
        (
            "GET",
            INCIDENTS,
            {"sysparm_limit": "-5", "sysparm_offset": "abc", "sysparm_display_value": "bogus"},
            b"",
            "",
        ),
        ("GET", INCIDENTS, {"sysparm_query": "^^^OR^ORDERBY^NQ^=^!=^LIKE" * 50}, b"", ""),
        ("GET", INCIDENTS, {"sysparm_fields": ",,,sys_id.name.x,"}, b"", ""),
        ("GET", "/api/now/table/%00%ff/..%2F..", None, b"", ""),
        (
            "POST",
            "/api/now/import/u_genesys_interaction_import",
            None,
            b'[{"u_conversation_id": 5}]',
            "application/json",
        ),
        (
            "POST",
            "/api/global/em/jsonv2",
            None,
            b'{"records": [{"severity": 1, "additional_info": {"a": 1}}]}',
            "",
        ),
        ("POST", "/oauth_token.do", None, b"\xff\xfe", "application/x-www-form-urlencoded"),
        ("GET", "/", None, b"", ""),
        ("PATCH", "/api", None, b"{}", "application/json"),
    ],
)
async def test_odd_input_never_gets_a_server_error(
    sn: tuple[ServiceNowSim, SnClient],
    method: str,
    path: str,
    params: dict[str, str] | None,
    body: bytes,
    content_type: str,
) -> None:
    _, client = sn
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await client.call(method, path, params=params, data=body or None, headers=headers)
    assert answer.status < 500, answer.text
    assert (await client.call("POST", INCIDENTS, json={})).status == 201


async def test_an_internal_error_is_a_500_envelope_and_the_server_lives_on(
    sn: tuple[ServiceNowSim, SnClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, client = sn

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("gcbridge.sim.servicenow.sim.handle_table", broken)
    answer = await client.call("GET", INCIDENTS)
    assert answer.status == 500
    assert answer.body["error"]["message"] == "java.lang.RuntimeException: RuntimeError"
    monkeypatch.undo()
    assert (await client.call("GET", INCIDENTS)).status == 200
    assert [r.status for r in sim.requests] == [500, 200]


@pytest.mark.parametrize(
    ("path", "payload", "says"),
    [
        ("/_sim/delay", {"seconds": -1}, "argument 'seconds' must be at least 0, got -1"),
        ("/_sim/delay", {}, "missing argument 'seconds'"),
        ("/_sim/delay", {"seconds": "5"}, "argument 'seconds' must be a number, got '5'"),
        ("/_sim/transform_time", {"seconds": -0.1}, "argument 'seconds' must be at least 0"),
        ("/_sim/inject", {"status": 404}, "argument 'status' must be one of [429, 500, 502, 503], got 404"),
        ("/_sim/inject", {"status": 503, "count": 0}, "argument 'count' must be at least 1, got 0"),
        ("/_sim/inject", {"status": 503, "after_commit": "yes"}, "'after_commit' must be true or false"),
        ("/_sim/hibernate", {"on": "false"}, "argument 'on' must be true or false, got 'false'"),
        ("/_sim/truncate_lists", {"count": -3}, "argument 'count' must be at least 1, got -3"),
        ("/_sim/rate_limit", {"per_hour": -5}, "argument 'per_hour' must be at least 1, got -5"),
        ("/_sim/rate_limit", {"per_hour": 1.5}, "argument 'per_hour' must be a whole number"),
        ("/_sim/fail_transform", {"staging_table": "u_x", "count": 0}, "'count' must be at least 1"),
        ("/_sim/client_credentials", {}, "missing argument 'enabled'"),
        ("/_sim/inject", [503], "the body must be a JSON object"),
    ],
)
async def test_http_controls_refuse_invalid_arguments_and_change_nothing(
    sn: tuple[ServiceNowSim, SnClient], path: str, payload: object, says: str
) -> None:
    _sim, client = sn
    before = (await client.call("GET", "/_sim/state", auth={})).body["faults"]
    answer = await client.call("POST", path, data=_json.dumps(payload), auth={})
    assert answer.status == 400
    assert answer.body["error"] == says or says in answer.body["error"]
    assert (await client.call("GET", "/_sim/state", auth={})).body["faults"] == before
    assert (await client.call("GET", INCIDENTS)).status == 200  # no fault armed by the refused request
