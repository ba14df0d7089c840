"""Pure parts of the ServiceNow simulator: OAuth grants, rate-limit rules, admission, the record store."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.sim.servicenow.admission import PoolGate, SessionTable
from gcbridge.sim.servicenow.config import table_schema
from gcbridge.sim.servicenow.faults import FaultPlan, Injection
from gcbridge.sim.servicenow.importsets import ImportSetRegistry
from gcbridge.sim.servicenow.oauth import TokenIssuer, basic_credentials
from gcbridge.sim.servicenow.ratelimit import RateLimiter, RateLimitRule
from gcbridge.sim.servicenow.routes import Resource, resolve
from gcbridge.sim.servicenow.store import RecordStore, to_field_string

T0 = 1_800_000_000.0  # on a clock-hour boundary


def issuer(**kw: object) -> TokenIssuer:
    args: dict[str, object] = {
        "users": {"admin": "pw"},
        "clients": {"cid": "cs"},
        "client_credentials_enabled": False,
        "access_token_ttl": 1800.0,
        "refresh_token_ttl": 8_640_000.0,
    }
    args.update(kw)
    return TokenIssuer(**args)  # type: ignore[arg-type]


PASSWORD = {
    "grant_type": "password",
    "client_id": "cid",
    "client_secret": "cs",
    "username": "admin",
    "password": "pw",
}


class TestOAuth:
    def test_password_grant_gives_1799_seconds_and_a_refresh_token(self) -> None:
        grant = issuer().grant(PASSWORD, T0)
        assert grant is not None
        body = grant.body(T0)
        assert body["expires_in"] == 1799
        assert body["token_type"] == "Bearer"
        assert body["refresh_token"]

    def test_same_token_within_its_lifetime_then_a_new_one(self) -> None:
        tokens = issuer()
        first = tokens.grant(PASSWORD, T0)
        again = tokens.grant(PASSWORD, T0 + 600)
        assert first is not None
        assert again is not None
        assert again.access_token == first.access_token
        assert again.body(T0 + 600)["expires_in"] == 1199
        later = tokens.grant(PASSWORD, T0 + 1800)
        assert later is not None
        assert later.access_token != first.access_token
        assert later.refresh_token == first.refresh_token  # refresh tokens live 100 days

    def test_bearer_token_expires(self) -> None:
        tokens = issuer()
        grant = tokens.grant(PASSWORD, T0)
        assert grant is not None
        assert tokens.user_for(grant.access_token, T0 + 1799.9) == "admin"
        assert tokens.user_for(grant.access_token, T0 + 1800) is None
        assert tokens.user_for("forged", T0) is None

    @pytest.mark.parametrize(
        "change",
        [
            {"client_secret": "wrong"},
            {"password": "wrong"},
            {"client_id": "other"},
            {"grant_type": "implicit"},
        ],
    )
    def test_bad_requests_are_denied(self, change: dict[str, str]) -> None:
        assert issuer().grant({**PASSWORD, **change}, T0) is None

    def test_client_credentials_in_a_basic_header_are_accepted(self) -> None:
        """RFC 6749 section 2.3.1, as requests-oauthlib (so pysnc) sends them."""
        user_only = {k: v for k, v in PASSWORD.items() if k not in ("client_id", "client_secret")}
        grant = issuer().grant(user_only, T0, basic=("cid", "cs"))
        assert grant is not None
        assert grant.refresh_token
        with_id = issuer().grant({**user_only, "client_id": "cid"}, T0, basic=("cid", "cs"))
        assert with_id is not None  # include_client_id=True: the form repeats the id

    def test_a_form_encoded_basic_header_is_accepted(self) -> None:
        tokens = issuer(clients={"c id": "s&cret:1"})
        user_only = {k: v for k, v in PASSWORD.items() if k not in ("client_id", "client_secret")}
        assert tokens.grant(user_only, T0, basic=("c+id", "s%26cret%3A1")) is not None
        assert tokens.grant(user_only, T0, basic=("c id", "s&cret:1")) is not None

    @pytest.mark.parametrize(
        ("basic", "form_change"),
        [
            (("cid", "wrong"), {}),  # a wrong secret in the header
            (("cid", "wrong"), {"client_id": "cid", "client_secret": "cs"}),  # good form, bad header
            (("other", "cs"), {}),
            (("cid", "cs"), {"client_id": "someone-else"}),  # the form names another client
            (("cid", "cs"), {"client_secret": "wrong"}),  # the form repeats a wrong secret
            (("cid", "cs"), {"password": "wrong"}),  # client fine, user not
        ],
    )
    def test_bad_basic_client_authentication_is_denied(
        self, basic: tuple[str, str], form_change: dict[str, str]
    ) -> None:
        user_only = {k: v for k, v in PASSWORD.items() if k not in ("client_id", "client_secret")}
        assert issuer().grant({**user_only, **form_change}, T0, basic=basic) is None

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("Basic Y2lkOmNz", ("cid", "cs")),
            ("basic  Y2lkOmNz ", ("cid", "cs")),
            ("Basic Y2lkOg==", ("cid", "")),
            ("Bearer Y2lkOmNz", None),
            ("Basic Y2lk", None),  # no colon
            ("Basic not-base64!", None),
            ("", None),
        ],
    )
    def test_basic_credentials_parse_only_a_well_formed_basic_header(
        self, header: str, expected: tuple[str, str] | None
    ) -> None:
        assert basic_credentials(header) == expected

    def test_refresh_grant_returns_an_access_token_only(self) -> None:
        tokens = issuer()
        first = tokens.grant(PASSWORD, T0)
        assert first is not None
        assert first.refresh_token is not None
        refresh = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "cs"}
        refreshed = tokens.grant({**refresh, "refresh_token": first.refresh_token}, T0 + 1900)
        assert refreshed is not None
        assert "refresh_token" not in refreshed.body(T0 + 1900)
        assert tokens.user_for(refreshed.access_token, T0 + 1900) == "admin"
        assert tokens.grant({**refresh, "refresh_token": "nope"}, T0) is None
        assert tokens.grant({**refresh, "refresh_token": first.refresh_token}, T0 + 8_640_001) is None

    def test_client_credentials_only_when_enabled(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "cs"}
        assert issuer().grant(form, T0) is None
        tokens = issuer(client_credentials_enabled=True, client_users={"cid": "integration"})
        grant = tokens.grant(form, T0)
        assert grant is not None
        assert grant.refresh_token is None
        assert tokens.user_for(grant.access_token, T0) == "integration"

    def test_revoked_tokens_are_rejected_and_replaced(self) -> None:
        tokens = issuer()
        first = tokens.grant(PASSWORD, T0)
        assert first is not None
        tokens.revoke_all()
        assert tokens.user_for(first.access_token, T0) is None
        second = tokens.grant(PASSWORD, T0)
        assert second is not None
        assert second.access_token != first.access_token


class TestRateLimiter:
    def test_no_rule_no_headers(self) -> None:
        decision = RateLimiter().check("admin", "table", "incident", T0)
        assert decision.allowed
        assert decision.headers == {}

    def test_limit_per_user_per_hour(self) -> None:
        limiter = RateLimiter()
        rule = RateLimitRule(2)
        limiter.set_rules([rule])
        assert limiter.check("a", "table", "incident", T0).allowed
        ok = limiter.check("a", "table", "incident", T0 + 10)
        assert ok.allowed
        assert ok.headers == {
            "X-RateLimit-Limit": "2",
            "X-RateLimit-Reset": str(int(T0 + 3600)),
            "X-RateLimit-Rule": rule.sys_id,
        }
        denied = limiter.check("a", "table", "incident", T0 + 600)
        assert not denied.allowed
        assert denied.retry_after == 3000
        assert (denied.detail_limit, denied.api_name) == (2, "Table API")
        assert limiter.check("b", "table", "incident", T0 + 600).allowed  # per user
        assert limiter.check("a", "table", "incident", T0 + 3600).allowed  # next window

    def test_user_rule_beats_lower_all_users_rule_and_table_filter_applies(self) -> None:
        limiter = RateLimiter()
        limiter.set_rules(
            [RateLimitRule(1), RateLimitRule(5, user="bridge"), RateLimitRule(9, table="incident")]
        )
        assert limiter.check("bridge", "table", "incident", T0).headers["X-RateLimit-Limit"] == "5"
        assert limiter.check("other", "table", "incident", T0).headers["X-RateLimit-Limit"] == "1"
        scoped = RateLimiter()
        scoped.set_rules([RateLimitRule(1, api="import", table="u_stage")])
        assert scoped.check("x", "table", "incident", T0).headers == {}
        assert scoped.check("x", "import", "u_stage", T0).headers["X-RateLimit-Limit"] == "1"


class TestAdmission:
    def test_pool_admits_concurrency_plus_queue(self) -> None:
        gate = PoolGate(concurrency=2, queue=1)
        assert [gate.try_enter() for _ in range(4)] == [True, True, True, False]
        gate.leave()
        assert gate.try_enter()

    def test_session_drops_past_the_queue_limit(self) -> None:
        sessions = SessionTable(queue_limit=2)
        sessions.open("s", "admin")
        assert [sessions.try_enter("s", T0) for _ in range(4)] == [True, True, True, False]
        sessions.leave("s")
        assert sessions.try_enter("s", T0)
        sessions.open("t", None)
        assert sessions.try_enter("t", T0)  # sessions are independent

    def test_session_running_too_long_drops_newcomers(self) -> None:
        sessions = SessionTable(queue_limit=10, busy_limit=30.0)
        sessions.open("s", "admin")
        assert sessions.try_enter("s", T0)
        sessions.started("s", T0)
        assert sessions.try_enter("s", T0 + 30)
        assert not sessions.try_enter("s", T0 + 30.5)
        sessions.leave("s")  # the long one finished; the queued one starts now
        sessions.started("s", T0 + 31)
        assert sessions.try_enter("s", T0 + 32)

    def test_oldest_sessions_are_forgotten(self) -> None:
        sessions = SessionTable(queue_limit=10, max_sessions=2)
        for name in ("a", "b", "c"):
            sessions.open(name, None)
        assert not sessions.known("a")
        assert sessions.known("c")


class TestStore:
    def test_insert_numbers_ids_and_timestamps(self) -> None:
        store = RecordStore()
        store.add_table(table_schema("incident", "INC"))
        first = store.insert("incident", {"short_description": "x", "impact": 2, "active": True}, "admin", T0)
        second = store.insert("incident", {}, "admin", T0)
        assert (first["number"], second["number"]) == ("INC0010001", "INC0010002")
        assert re.fullmatch(r"[0-9a-f]{32}", first["sys_id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first["sys_created_on"])
        assert (first["impact"], first["active"], first["sys_mod_count"]) == ("2", "true", "0")
        assert second["impact"] == "3"  # the column's default

    def test_update_counts_only_real_changes_and_ignores_system_fields(self) -> None:
        store = RecordStore()
        store.add_table(table_schema("incident", "INC"))
        record = store.insert("incident", {"state": "1"}, "admin", T0)
        assert (
            store.update("incident", record["sys_id"], {"state": "1", "sys_mod_count": "99"}, "a", T0)
            is False
        )
        assert store.update("incident", record["sys_id"], {"state": "2"}, "admin", T0 + 5) is True
        assert record["sys_mod_count"] == "1"
        assert record["sys_updated_on"] != record["sys_created_on"]
        assert store.update("incident", "0" * 32, {"state": "2"}, "admin", T0) is None

    def test_journal_fields_read_back_empty(self) -> None:
        store = RecordStore()
        store.add_table(table_schema("incident", "INC"))
        record = store.insert("incident", {"work_notes": "called back"}, "admin", T0)
        assert record["work_notes"] == ""
        assert [(e.element, e.value) for e in store.journal] == [("work_notes", "called back")]

    def test_strict_schema_drops_unknown_columns_open_schema_grows(self) -> None:
        store = RecordStore()
        store.add_table(table_schema("incident", "INC", strict=True))
        store.add_table(table_schema("interaction", "IMS"))
        assert "u_x" not in store.insert("incident", {"u_x": "1"}, "admin", T0)
        assert not store.is_field("incident", "u_x")
        assert store.insert("interaction", {"u_x": "1"}, "admin", T0)["u_x"] == "1"
        assert store.is_field("interaction", "u_x")

    def test_dot_walking_through_a_reference(self) -> None:
        store = RecordStore()
        store.add_table(table_schema("incident", "INC"))
        store.add_table(table_schema("sys_user", None))
        user = store.insert("sys_user", {"name": "Ada"}, "admin", T0)
        incident = store.insert("incident", {"caller_id": user["sys_id"]}, "admin", T0)
        assert store.is_field("incident", "caller_id.name")
        assert not store.is_field("incident", "short_description.name")
        assert store.get_field("incident", incident, "caller_id.name") == "Ada"

    @pytest.mark.parametrize(
        ("value", "stored"),
        [(None, ""), (True, "true"), (3, "3"), ({"value": "abc"}, "abc"), ([1, 2], "[1,2]"), ("x", "x")],
    )
    def test_every_value_is_stored_as_a_string(self, value: object, stored: str) -> None:
        assert to_field_string(value) == stored


def test_routes() -> None:
    assert resolve("/api/now/table/incident") == resolve("/api/now/v2/table/incident")
    route = resolve("/api/now/v1/table/incident/abc")
    assert route is not None
    assert (route.resource, route.version, route.sys_id) == (Resource.TABLE_RECORD, 1, "abc")
    multiple = resolve("/api/now/import/u_stage/insertMultiple")
    assert multiple is not None
    assert multiple.resource is Resource.IMPORT_MULTIPLE
    assert resolve("/api/now/tables/incident") is None
    assert resolve("/api/now/table") is None


def test_injections_are_consumed_in_order_and_by_path() -> None:
    plan = FaultPlan()
    plan.inject(Injection(503, "/api/now/import/"), 1)
    plan.inject(Injection(500), 2)
    assert plan.take_injection("/api/now/import/x") == Injection(503, "/api/now/import/")
    assert plan.take_injection("/oauth_token.do") is None
    assert [plan.take_injection("/api/now/table/x") for _ in range(3)] == [
        Injection(500),
        Injection(500),
        None,
    ]
    with pytest.raises(ValueError, match="status must be one of"):
        plan.inject(Injection(404), 1)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete"]),
        st.sampled_from(["a", "A", "b", ""]),
        st.integers(0, 5),
    ),
    max_size=30,
)


@given(ops=_ops)
def test_case_folded_lookup_agrees_with_a_full_scan(ops: list[tuple[str, str, int]]) -> None:
    store = RecordStore()
    store.add_table(table_schema("interaction", "IMS"))
    store.find_casefolded("interaction", "correlation_id", "a")  # index built early, then kept current
    for op, value, pick in ops:
        ids = [r["sys_id"] for r in store.rows("interaction")]
        if op == "insert" or not ids:
            store.insert("interaction", {"correlation_id": value}, "admin", T0)
        elif op == "update":
            store.update("interaction", ids[pick % len(ids)], {"correlation_id": value}, "admin", T0)
        else:
            store.delete("interaction", ids[pick % len(ids)])
    for probe in ("a", "b", ""):
        scanned = [r for r in store.rows("interaction") if r["correlation_id"].casefold() == probe]
        assert store.find_casefolded("interaction", "correlation_id", probe) == scanned


def test_old_import_sets_are_cleaned_up_past_the_row_cap() -> None:
    registry = ImportSetRegistry(max_rows=3)
    old = registry.async_set("u_stage", T0)
    old_rows = [registry.add_row(old, {"u_a": str(i)}) for i in range(2)]
    new = registry.async_set("u_stage", T0)
    for i in range(2):
        registry.add_row(new, {"u_b": str(i)})
    assert registry.sets == [new]
    assert registry.find_row("u_stage", old_rows[0].sys_id) is None


def test_sync_imports_share_a_set_per_utc_day() -> None:
    registry = ImportSetRegistry()
    first = registry.sync_set("u_stage", T0)
    assert registry.sync_set("u_stage", T0 + 60) is first
    assert registry.sync_set("u_other", T0) is not first
    assert registry.sync_set("u_stage", T0 + 86_400) is not first


def test_rate_limit_commit_lag_lets_a_burst_overshoot_until_the_next_commit() -> None:
    limiter = RateLimiter(commit_interval=30.0)
    limiter.set_rules([RateLimitRule(2)])
    burst = [limiter.check("a", "table", None, T0 + i).allowed for i in range(5)]
    assert burst == [True] * 5  # counted, not yet committed
    assert not limiter.check("a", "table", None, T0 + 30).allowed  # committed: 5 >= 2
    exact = RateLimiter()
    exact.set_rules([RateLimitRule(2)])
    assert [exact.check("a", "table", None, T0 + i).allowed for i in range(3)] == [True, True, False]


def test_a_shortened_rate_limit_window_resets_at_its_own_end() -> None:
    """The compressed soak's 429 storm: a 15 s window, so Retry-After is seconds, not up to an hour."""
    limiter = RateLimiter()
    limiter.set_rules([RateLimitRule(2, window=15.0)])
    assert limiter.check("u", "import", None, 3600.0).allowed
    assert limiter.check("u", "import", None, 3601.0).allowed
    refused = limiter.check("u", "import", None, 3604.0)
    assert not refused.allowed
    assert refused.retry_after == 11
    assert refused.headers["X-RateLimit-Reset"] == "3615"
    assert limiter.check("u", "import", None, 3615.0).allowed
