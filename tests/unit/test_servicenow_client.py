"""Auth, REST client and sinks against a small aiohttp stub of ServiceNow (the full simulator has its own
integration tests in tests/integration/test_writer*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from gcbridge import _json
from gcbridge.bridge.mapping import MappingConfig, MappingRule, compile_mapping
from gcbridge.bridge.router import ServiceNowSection, build_router
from gcbridge.core.token import TokenPolicy
from gcbridge.outbox.base import Delivered, OutboxRow, Reject, Retry
from gcbridge.secrets import Secret
from gcbridge.servicenow.auth import AuthError, BasicAuth, OAuthTokens
from gcbridge.servicenow.config import BasicAuthConfig, OAuthConfig
from gcbridge.servicenow.rest import Ok, ServiceNowRest, create_session
from gcbridge.servicenow.sinks import KeyLocks, Writer
from tests.integration.sn_fixtures import writer_session

SECRET_WORDS = ("csecret-XYZ", "admin-pass-XYZ", "AT-1", "AT-2", "RT-1")


@dataclass
class Stub:
    """Just enough ServiceNow: /oauth_token.do, a Table API with an upsert-able table, one Import Set."""

    token_answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0
    cookie_sessions: bool = False
    busy_sessions: set[str] = field(default_factory=set)
    import_status: str = "inserted"
    token_delay: float = 0.0

    def authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[7:] in self.valid_tokens
        return header.startswith("Basic ")

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_forms.append({k: str(v) for k, v in form.items()})
        await asyncio.sleep(self.token_delay)
        status, body = self.token_answers.pop(0) if self.token_answers else (500, {})
        if status == 200:
            self.valid_tokens.add(body["access_token"])
        return web.json_response(body, status=status)

    async def table(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if not self.authorised(request):
            return web.json_response(
                {
                    "error": {
                        "message": "User Not Authenticated",
                        "detail": "Required to provide Auth information",
                    },
                    "status": "failure",
                },
                status=401,
            )
        session = request.cookies.get("JSESSIONID")
        if self.cookie_sessions and session is not None:
            if session in self.busy_sessions:
                return web.Response(status=202)  # the session's queue overflowed: dropped
            self.busy_sessions.add(session)
        try:
            await asyncio.sleep(self.delay)
            response = await self._table(request)
        finally:
            if session is not None:
                self.busy_sessions.discard(session)
        if self.cookie_sessions:
            response.set_cookie("JSESSIONID", f"s{len(self.requests)}")
        return response

    async def _table(self, request: web.Request) -> web.Response:
        sys_id = request.match_info.get("sys_id")
        if request.method == "GET":
            query = request.query.get("sysparm_query", "")
            name, _, value = query.partition("=")
            if name == "correlation_id":
                rows = [r for r in self.records.values() if r.get("correlation_id") == value]
            else:  # ServiceNow ignores an invalid query part: everything matches
                rows = list(self.records.values())
            limit = int(request.query.get("sysparm_limit", "10000"))
            return web.json_response({"result": rows[:limit]})
        body = await request.json()
        if request.method == "POST":
            new_id = f"{len(self.records):032x}"
            self.records[new_id] = {**body, "sys_id": new_id}
            return web.json_response({"result": {"sys_id": new_id}}, status=201)
        assert sys_id is not None
        if sys_id not in self.records:
            return web.json_response(
                {"error": {"message": "No Record found", "detail": "gone"}, "status": "failure"}, status=404
            )
        self.records[sys_id].update(body)
        return web.json_response({"result": {"sys_id": sys_id}})

    async def import_row(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, {}))
        body = await request.json()
        key = body.get("u_conversation_id", "")
        existing = next((k for k, r in self.records.items() if r.get("u_conversation_id") == key), None)
        status = self.import_status
        if status == "inserted" and existing is not None:
            status = "updated"
        target = existing or f"{len(self.records):032x}"
        self.records[target] = {**self.records.get(target, {}), **body}
        result = {"transform_map": "Genesys", "table": "interaction", "status": status, "sys_id": target}
        if status == "error":
            result["error_message"] = "Invalid table"
        return web.json_response(
            {"import_set": "ISET0001", "staging_table": "u_calls_import", "result": [result]}, status=201
        )


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, str]]:
    state = Stub()
    app = web.Application()
    app.router.add_post("/oauth_token.do", state.token)
    app.router.add_route("*", "/api/now/table/{table}", state.table)
    app.router.add_route("*", "/api/now/table/{table}/{sys_id}", state.table)
    app.router.add_post("/api/now/import/{staging}", state.import_row)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with writer_session() as s:
        yield s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens(
    session: aiohttp.ClientSession, url: str, clock: Callable[[], float] | None = None, **kwargs: Any
) -> OAuthTokens:
    options: dict[str, Any] = {"client_id": "cid", "client_secret": Secret("csecret-XYZ")}
    options.update(kwargs)
    if clock is not None:
        options["clock"] = clock
    return OAuthTokens(session, url, **options)


def ok_token(value: str, refresh: str | None = None, expires_in: int = 1800) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"access_token": value, "token_type": "Bearer", "expires_in": expires_in}
    if refresh:
        body["refresh_token"] = refresh
    return 200, body


# ---- OAuth ---------------------------------------------------------------------------------------------


async def test_concurrent_callers_share_one_token_request(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.token_answers = [ok_token("AT-1")]
    state.token_delay = 0.05
    auth = tokens(session, url)
    headers = await asyncio.gather(*(auth.header() for _ in range(20)))
    assert {h for h, _ in headers} == {"Bearer AT-1"}
    assert len(state.token_forms) == 1
    form = state.token_forms[0]
    assert form["grant_type"] == "client_credentials"
    assert form["client_secret"] == "csecret-XYZ"


async def test_burst_of_401s_costs_one_token_request(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.token_answers = [ok_token("AT-1"), ok_token("AT-2")]
    auth = tokens(session, url)
    rest = ServiceNowRest(session, url, auth)
    await auth.header()
    state.valid_tokens.discard("AT-1")  # the instance revoked it
    results = await asyncio.gather(*(rest.table_query("incident", "active=true") for _ in range(10)))
    assert all(isinstance(r, Ok) for r in results)
    assert len(state.token_forms) == 2


async def test_password_grant_uses_the_refresh_token_then_falls_back(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    clock = FakeClock()
    state.token_answers = [
        ok_token("AT-1", refresh="RT-1"),
        ok_token("AT-2"),
        (401, {"error_description": "access_denied", "error": "server_error"}),  # refresh token expired
        ok_token("AT-3", refresh="RT-2"),
    ]
    auth = tokens(session, url, clock, grant="password", username="bridge", password=Secret("admin-pass-XYZ"))
    assert (await auth.header())[0] == "Bearer AT-1"
    clock.now += 60  # rejections right after issue would (rightly) back off
    await auth.rejected(1)
    assert (await auth.header())[0] == "Bearer AT-2"
    clock.now += 60
    await auth.rejected(2)
    assert (await auth.header())[0] == "Bearer AT-3"
    grants = [f["grant_type"] for f in state.token_forms]
    assert grants == ["password", "refresh_token", "refresh_token", "password"]
    assert state.token_forms[1]["refresh_token"] == "RT-1"
    assert state.token_forms[0]["username"] == "bridge"


async def test_proactive_refresh_keeps_serving_the_current_token(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    clock = FakeClock()
    state.token_answers = [ok_token("AT-1"), ok_token("AT-2")]
    auth = tokens(session, url, clock)
    assert (await auth.header())[0] == "Bearer AT-1"
    clock.now += 1500  # past 80 % of 1800 s, before expiry
    assert (await auth.header())[0] == "Bearer AT-1"  # refresh runs in the background
    # Polled until done, not for a fixed 2 s: on a loaded machine the background refresh takes what it takes.
    deadline = asyncio.get_running_loop().time() + 60
    while not (len(state.token_forms) == 2 and auth.state == "valid"):
        assert asyncio.get_running_loop().time() < deadline, "the background refresh never finished"
        await asyncio.sleep(0.01)
    assert (await auth.header())[0] == "Bearer AT-2"


async def test_refused_credentials_are_fatal_and_retried_rows_say_why(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.token_answers = [(401, {"error_description": "access_denied", "error": "server_error"})]
    auth = tokens(session, url)
    rest = ServiceNowRest(session, url, auth)
    result = await rest.table_query("incident", "active=true")
    assert isinstance(result, Retry)
    assert "access_denied" in result.reason
    assert "client_credentials" in result.reason
    with pytest.raises(AuthError) as info:
        await auth.header()
    assert info.value.fatal
    assert len(state.token_forms) == 1  # no loop against the token endpoint
    assert not any(word in result.reason or word in str(info.value) for word in SECRET_WORDS)


async def test_token_endpoint_outage_backs_off_with_a_delay(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    clock = FakeClock()
    state.token_answers = [(503, {})]
    auth = tokens(session, url, clock, policy=TokenPolicy())
    with pytest.raises(AuthError) as info:
        await auth.header()
    assert not info.value.fatal
    assert info.value.retry_after is not None
    with pytest.raises(AuthError):
        await auth.header()  # still inside the backoff: no new request
    assert len(state.token_forms) == 1


async def test_waiters_are_released_when_the_token_request_is_cancelled(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.token_answers = [ok_token("AT-1")]
    state.token_delay = 5.0
    auth = tokens(session, url)
    waiter = asyncio.create_task(auth.header())
    deadline = asyncio.get_running_loop().time() + 60
    while not state.token_forms:  # the request must be in flight (held 5 s by the stub) before the close
        assert asyncio.get_running_loop().time() < deadline, "the token request never arrived"
        await asyncio.sleep(0.01)
    await auth.close()  # shutdown while the token request is in flight
    with pytest.raises(AuthError) as info:
        await asyncio.wait_for(waiter, timeout=5)
    assert "cancelled" in str(info.value)
    assert not info.value.fatal


def test_secrets_stay_out_of_repr() -> None:
    config = ServiceNowSection(
        instance_url="https://acme.service-now.com",
        auth=OAuthConfig(
            client_id="cid",
            client_secret=SecretStr("csecret-XYZ"),
            grant="password",
            username="u",
            password=SecretStr("admin-pass-XYZ"),
        ),
    )
    basic = BasicAuth("admin", Secret("admin-pass-XYZ"))
    text = repr(config) + str(config) + repr(basic) + config.model_dump_json()
    assert not any(word in text for word in SECRET_WORDS)


# ---- REST ----------------------------------------------------------------------------------------------


async def test_rest_refuses_a_session_that_keeps_cookies(stub: tuple[Stub, str]) -> None:
    _, url = stub
    async with aiohttp.ClientSession() as cookie_session:
        with pytest.raises(ValueError, match="DummyCookieJar"):
            ServiceNowRest(cookie_session, url, BasicAuth("a", Secret("b")))


async def test_no_cookie_jar_means_no_202_on_a_named_host(stub: tuple[Stub, str]) -> None:
    """The stub drops (202) a request whose session cookie is busy; against ``localhost`` aiohttp's default
    jar would send the cookie back. Ours never does, so concurrent requests all get through."""
    state, url = stub
    state.cookie_sessions = True
    state.delay = 0.02
    named = url.replace("127.0.0.1", "localhost")
    async with create_session() as session:
        rest = ServiceNowRest(session, named, BasicAuth("a", Secret("b")))
        await rest.table_query("incident", "active=true")  # receives a Set-Cookie
        results = await asyncio.gather(*(rest.table_query("incident", "active=true") for _ in range(12)))
    assert all(isinstance(r, Ok) for r in results)
    # the same traffic with a cookie jar that keeps localhost cookies hits the trap: proves the stub can tell
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as leaky:
        await leaky.get(named + "/api/now/table/incident", headers={"Authorization": "Basic x"})
        statuses = await asyncio.gather(*(_status(leaky, named) for _ in range(12)))
    assert 202 in statuses


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/api/now/table/incident", headers={"Authorization": "Basic x"}) as r:
        return r.status


async def test_basic_auth_401_is_retried_not_rejected(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    _, url = stub

    class Refused(BasicAuth):
        async def header(self) -> tuple[str, int]:
            return "Bearer nope", 0

    rest = ServiceNowRest(session, url, Refused("a", Secret("b")))
    result = await rest.table_query("incident", "active=true")
    assert isinstance(result, Retry)
    assert "User Not Authenticated" in result.reason


async def test_timeout_and_connection_refused_are_retried(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.delay = 0.5
    rest = ServiceNowRest(session, url, BasicAuth("a", Secret("b")), timeout=0.1)
    slow = await rest.table_query("incident", "active=true")
    assert isinstance(slow, Retry)
    assert "no answer within" in slow.reason
    dead = ServiceNowRest(session, "http://127.0.0.1:9", BasicAuth("a", Secret("b")))
    refused = await dead.table_query("incident", "active=true")
    assert isinstance(refused, Retry)


async def test_on_request_times_each_request_without_its_wait_for_a_slot(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.delay = 0.05  # the three requests overlap: two wait for the one slot
    calls = [0.0]

    def timer() -> float:  # every reading is one tick later: a duration counts the readings in between
        calls[0] += 1.0
        return calls[0]

    seen: list[tuple[str, float]] = []
    rest = ServiceNowRest(
        session,
        url,
        BasicAuth("a", Secret("b")),
        concurrency=1,
        on_request=lambda method, seconds: seen.append((method, seconds)),
        timer=timer,
    )
    results = await asyncio.gather(*(rest.table_query("incident", "active=true") for _ in range(3)))
    assert all(isinstance(r, Ok) for r in results)
    # started inside the slot: no other request's readings fall between a request's two
    assert seen == [("GET", 1.0)] * 3

    dead = ServiceNowRest(
        session,
        "http://127.0.0.1:9",
        BasicAuth("a", Secret("b")),
        on_request=lambda method, seconds: seen.append((method, seconds)),
    )
    assert isinstance(await dead.table_create("incident", {"a": "b"}), Retry)
    assert len(seen) == 4  # a request that failed is timed too
    assert seen[-1][0] == "POST"
    assert seen[-1][1] >= 0.0


# ---- sinks through the router --------------------------------------------------------------------------


def config(url: str, *rules: MappingRule) -> ServiceNowSection:
    return ServiceNowSection(
        instance_url=url,
        auth=BasicAuthConfig(username="admin", password=SecretStr("admin-pass-XYZ")),
        mapping=MappingConfig(rules=list(rules)) if rules else MappingConfig(),
    )


TABLE_RULE = MappingRule(
    name="incidents",
    topics=["v2.routing.queues.*.conversations"],
    sink="table",
    target="incident",
    key="{body.id}",
    fields={"short_description": "Call {body.id}", "state": "{body.state}"},
)


def row(topic: str, body: dict[str, Any], row_id: int = 1, payload: bytes | None = None) -> OutboxRow:
    data = payload if payload is not None else _json.dumps({"topicName": topic, "eventBody": body})
    return OutboxRow(
        id=row_id,
        dedup_key=f"d{row_id}",
        order_key="k",
        topic=topic,
        payload=data,
        received_at=1.0,
        attempts=0,
    )


TOPIC = "v2.routing.queues.q1.conversations"


async def test_table_upsert_creates_then_patches(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    router = build_router(config(url, TABLE_RULE), session)
    first = await router.deliver(row(TOPIC, {"id": "c1", "state": "new"}))
    second = await router.deliver(row(TOPIC, {"id": "c1", "state": "closed"}, 2))
    assert isinstance(first, Delivered)
    assert first.detail.startswith("incident inserted")
    assert isinstance(second, Delivered)
    assert second.detail.startswith("incident updated")
    assert list(state.records.values()) == [
        {"short_description": "Call c1", "state": "closed", "correlation_id": "c1", "sys_id": "0" * 32}
    ]
    query = next(q for m, _, q in state.requests if m == "GET")
    assert query["sysparm_query"] == "correlation_id=c1"
    assert query["sysparm_limit"] == "1"


async def test_table_upsert_refuses_to_patch_when_the_query_was_ignored(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.records["a" * 32] = {"sys_id": "a" * 32, "short_description": "someone else's"}
    typo = TABLE_RULE.model_copy(update={"key_field": "corelation_id"})
    router = build_router(config(url, typo), session)
    result = await router.deliver(row(TOPIC, {"id": "c1", "state": "new"}))
    assert isinstance(result, Reject)
    assert "refusing to patch an unrelated record" in result.reason
    assert "'corelation_id'" in result.reason
    assert state.records["a" * 32] == {"sys_id": "a" * 32, "short_description": "someone else's"}
    assert not any(m == "PATCH" for m, _, _ in state.requests)


async def test_concurrent_writes_of_one_key_create_one_record(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.delay = 0.01
    router = build_router(config(url, TABLE_RULE), session)
    results = await asyncio.gather(
        *(router.deliver(row(TOPIC, {"id": "c1", "state": str(i)}, i)) for i in range(6))
    )
    assert all(isinstance(r, Delivered) for r in results)
    assert len(state.records) == 1
    assert isinstance(router.writer, Writer)
    table_sink = router.writer.sinks["table"]
    assert len(table_sink.locks) == 0  # type: ignore[attr-defined]


async def test_key_locks_serialise_one_key_and_not_others() -> None:
    locks = KeyLocks()
    order: list[str] = []

    async def hold(key: str, tag: str, wait: float) -> None:
        async with locks.hold(key):
            order.append(f"{tag}+")
            await asyncio.sleep(wait)
            order.append(f"{tag}-")

    await asyncio.gather(hold("a", "a1", 0.03), hold("a", "a2", 0.0), hold("b", "b1", 0.0))
    assert order.index("a1-") < order.index("a2+")
    assert order.index("b1+") < order.index("a1-")
    assert len(locks) == 0


async def test_import_set_rows_and_transform_errors(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    import_rule = MappingRule(
        name="calls",
        topics=["v2.routing.queues.*.conversations"],
        sink="import_set",
        target="u_calls_import",
        key="{body.id}",
        key_field="u_conversation_id",
        fields={"u_state": "{body.state}"},
    )
    router = build_router(config(url, import_rule), session)
    assert await router.deliver(row(TOPIC, {"id": "c1", "state": "a"})) == Delivered(
        f"interaction inserted {'0' * 32}"
    )
    assert await router.deliver(row(TOPIC, {"id": "c1", "state": "b"}, 2)) == Delivered(
        f"interaction updated {'0' * 32}"
    )
    state.import_status = "error"
    failed = await router.deliver(row(TOPIC, {"id": "c2", "state": "a"}, 3))
    # the transform's target table is missing: the sink's condition, so the row waits instead of dying
    assert isinstance(failed, Retry)
    assert (
        failed.reason
        == "Import Set u_calls_import: transform map 'Genesys' -> interaction: error: Invalid table"
    )
    assert failed.condition is not None
    assert failed.condition.kind == "missing_table"


async def test_router_rejects_what_it_cannot_map(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    _, url = stub
    router = build_router(config(url, TABLE_RULE), session)
    bad = await router.deliver(row(TOPIC, {}, payload=b"\xff not json"))
    assert isinstance(bad, Reject)
    assert "outbox row 1: payload is not JSON" in bad.reason
    unknown = await router.deliver(row("v2.users.u1.presence", {"id": "x"}))
    assert unknown == Reject("no mapping rule matches topic 'v2.users.u1.presence'")
    keyless = await router.deliver(row(TOPIC, {"state": "x"}))
    assert keyless == Reject("rule 'incidents': key '{body.id}' is missing in this event")


async def test_router_turns_a_sink_bug_into_a_retry(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    _, url = stub
    router = build_router(config(url, TABLE_RULE), session)

    class Broken:
        async def write(self, record: Any) -> Any:
            raise KeyError("Authorization: Basic c2VjcmV0LXBhc3M=")

    assert isinstance(router.writer, Writer)
    router.writer.sinks["table"] = Broken()
    result = await router.deliver(row(TOPIC, {"id": "c1"}))
    assert isinstance(result, Retry)
    assert result.reason == "internal error in sink 'table': KeyError (see the log)"


async def test_build_router_with_oauth_closes_its_token_task(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    state, url = stub
    state.token_answers = [ok_token("AT-1")]
    cfg = ServiceNowSection(
        instance_url=url,
        auth=OAuthConfig(client_id="cid", client_secret=SecretStr("csecret-XYZ")),
        mapping=MappingConfig(rules=[TABLE_RULE]),
    )
    router = build_router(cfg, session, mapping=compile_mapping(cfg.mapping))
    assert isinstance(await router.deliver(row(TOPIC, {"id": "c9", "state": "x"})), Delivered)
    await router.close()
    assert state.token_forms[0]["client_id"] == "cid"
