"""Every kind of ServiceNow answer maps to the right delivery outcome (pure functions, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from gcbridge import _json
from gcbridge.core.token import FetchError
from gcbridge.outbox.base import Delivered, Reject, Retry
from gcbridge.servicenow.auth import classify_token_answer
from gcbridge.servicenow.rest import Ok, Unauthorized, classify, envelope_message
from gcbridge.servicenow.sinks import (
    Create,
    Patch,
    decide_upsert,
    interpret_em_result,
    interpret_import_result,
)

JSON = "application/json;charset=UTF-8"
HTML = "text/html;charset=UTF-8"
NOW = 1_700_000_000.0


def envelope(message: str, detail: str | None = None) -> bytes:
    return _json.dumps({"error": {"message": message, "detail": detail}, "status": "failure"})


def answer(status: int, body: bytes = b"", ctype: str = JSON, headers: dict[str, str] | None = None) -> Any:
    return classify(status, ctype, body, headers or {}, NOW)


def test_2xx_json_is_ok_with_the_parsed_body() -> None:
    assert answer(200, b'{"result": []}') == Ok(200, {"result": []})
    assert answer(201, b'{"result": {"sys_id": "a"}}') == Ok(201, {"result": {"sys_id": "a"}})
    assert answer(204, b"", ctype="") == Ok(204, None)


def test_202_is_not_delivered() -> None:
    result = answer(202, b"")
    assert isinstance(result, Retry)
    assert "HTTP 202" in result.reason
    assert "not delivered" in result.reason


def test_hibernating_instance_html_200_is_retried() -> None:
    result = answer(200, b"<html><body>Your instance is hibernating</body></html>", ctype=HTML)
    assert isinstance(result, Retry)
    assert "HTML" in result.reason


def test_truncated_list_with_failure_envelope_is_retried() -> None:
    body = (
        b'{"result":[{"a":"1"}],"error":{"detail":null,"message":"Transaction cancelled: maximum execution '
        b'time exceeded"},"status":"failure"}'
    )
    result = answer(200, body)
    assert isinstance(result, Retry)
    assert "Transaction cancelled" in result.reason


def test_unparsable_json_is_retried() -> None:
    assert isinstance(answer(200, b'{"result": ['), Retry)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            403,
            envelope("Operation Failed", "Data Policy Exception: Short description is mandatory"),
            "HTTP 403: Operation Failed: Data Policy Exception: Short description is mandatory",
        ),
        (
            404,
            envelope("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
            "HTTP 404: No Record found: Record doesn't exist or ACL restricts the record retrieval",
        ),
        (400, b"", "HTTP 400 from ServiceNow (no error message)"),
    ],
)
def test_client_errors_are_rejected_with_the_envelope_reason(status: int, body: bytes, reason: str) -> None:
    assert answer(status, body) == Reject(reason)


@pytest.mark.parametrize(
    ("status", "body", "kind", "summary"),
    [
        (400, envelope("Invalid table foo"), "missing_table", "ServiceNow table foo does not exist"),
        (
            403,
            envelope("Operation Failed", "ACL Exception Update Failed due to security constraints"),
            "access",
            "ServiceNow refused access (HTTP 403: Operation Failed: ACL Exception",
        ),
        (403, envelope("Insufficient rights to query records"), "access", "ServiceNow refused access"),
        (200, b"<html>hibernating</html>", "hibernating", "ServiceNow answers with an HTML page"),
    ],
)
def test_sink_wide_answers_are_retries_that_name_the_condition(
    status: int, body: bytes, kind: str, summary: str
) -> None:
    result = answer(status, body, ctype=HTML if body.startswith(b"<") else JSON)
    assert isinstance(result, Retry)
    assert result.condition is not None
    assert (result.condition.kind, result.condition.threshold) == (kind, 1)
    assert result.condition.summary.startswith(summary)


def test_5xx_is_a_soft_condition_that_needs_a_run_of_failures() -> None:
    for result in (answer(500, envelope("boom")), answer(503, b"<html/>", ctype=HTML)):
        assert isinstance(result, Retry)
        assert result.condition is not None
        assert result.condition.kind == "unavailable"
        assert result.condition.threshold > 1


def test_import_result_with_a_missing_target_table_is_a_sink_condition() -> None:
    data = {
        "result": [
            {"transform_map": "m", "table": "u_gone", "status": "error", "error_message": "Invalid table"}
        ]
    }
    result = interpret_import_result(data, "u_stage")
    assert isinstance(result, Retry)
    assert result.condition is not None
    assert result.condition.summary.startswith("ServiceNow table u_gone does not exist")


def test_401_is_unauthorized() -> None:
    result = answer(401, envelope("User Not Authenticated", "Required to provide Auth information"))
    assert result == Unauthorized("HTTP 401: User Not Authenticated: Required to provide Auth information")


def test_429_honours_retry_after() -> None:
    body = envelope("Rate limit exceeded", "Rate limit of 100 requests per hour for Table API exceeded")
    result = answer(429, body, headers={"Retry-After": "42", "X-RateLimit-Reset": str(int(NOW) + 900)})
    assert isinstance(result, Retry)
    assert result.after == 42.0
    assert "Rate limit exceeded" in result.reason


def test_429_falls_back_to_rate_limit_reset_timestamp() -> None:
    result = answer(429, envelope("Rate limit exceeded"), headers={"X-RateLimit-Reset": str(int(NOW) + 900)})
    assert isinstance(result, Retry)
    assert result.after == 900.0


def test_429_without_headers_is_a_full_pool_a_soft_sink_condition() -> None:
    """The instance's inbound pool is full for everyone: a run of these pauses deliveries and probes, instead
    of every row retrying into a saturated instance and sitting out its own backoff afterwards."""
    result = answer(429, b"")
    assert isinstance(result, Retry)
    assert (result.reason, result.after) == ("HTTP 429: rate limited", None)
    assert result.condition is not None
    assert result.condition.kind == "overloaded"
    assert result.condition.threshold > 1


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "42"}, {"X-RateLimit-Reset": str(int(NOW) + 900)}, {"X-RateLimit-Limit": "100"}],
)
def test_rate_limit_rule_429_stays_the_rows_own(headers: dict[str, str]) -> None:
    result = answer(429, envelope("Rate limit exceeded"), headers=headers)
    assert isinstance(result, Retry)
    assert result.condition is None


def test_retry_after_is_capped_at_an_hour() -> None:
    result = answer(429, b"", headers={"Retry-After": "999999"})
    assert isinstance(result, Retry)
    assert result.after == 3600.0


@pytest.mark.parametrize(
    ("status", "body", "ctype", "fragment"),
    [
        (500, envelope("java.lang.NullPointerException"), JSON, "HTTP 500: java.lang.NullPointerException"),
        (502, b"<html>Bad Gateway</html>", HTML, "HTTP 502 with text/html"),
        (503, b"<html>Service Unavailable</html>", HTML, "HTTP 503 with text/html"),
        (408, b"", "", "HTTP 408"),
        (404, b"<html>nginx</html>", HTML, "not from the ServiceNow API"),
    ],
)
def test_server_errors_and_proxy_pages_are_retried(
    status: int, body: bytes, ctype: str, fragment: str
) -> None:
    result = answer(status, body, ctype=ctype)
    assert isinstance(result, Retry)
    assert fragment in result.reason


def test_envelope_message_shapes() -> None:
    assert envelope_message({"error": {"message": "m", "detail": "d"}}) == "m: d"
    assert envelope_message({"error": {"message": "m", "detail": None}}) == "m"
    assert envelope_message({"error": {"message": "m", "detail": "m"}}) == "m"
    assert envelope_message({"error": "flat"}) == "flat"
    assert envelope_message({"result": []}) is None


# ---- Import Set results --------------------------------------------------------------------------------


def import_answer(*results: dict[str, str]) -> dict[str, Any]:
    return {"import_set": "ISET0010001", "staging_table": "u_imp", "result": list(results)}


@pytest.mark.parametrize("status", ["inserted", "updated", "ignored"])
def test_import_success_statuses_are_delivered(status: str) -> None:
    result = interpret_import_result(
        import_answer({"transform_map": "T", "table": "interaction", "status": status, "sys_id": "abc"}),
        "u_imp",
    )
    assert result == Delivered(f"interaction {status} abc")


def test_import_error_is_rejected_with_error_message_even_if_another_map_succeeded() -> None:
    data = import_answer(
        {"transform_map": "A", "table": "interaction", "status": "inserted", "sys_id": "1"},
        {
            "transform_map": "B",
            "table": "incident",
            "status": "error",
            "error_message": "Target record not found",
        },
    )
    assert interpret_import_result(data, "u_imp") == Reject(
        "Import Set u_imp: transform map 'B' -> incident: error: Target record not found"
    )
    retried = interpret_import_result(data, "u_imp", on_error="retry")
    assert isinstance(retried, Retry)
    assert "Target record not found" in retried.reason


def test_import_skipped_is_rejected_with_the_reason() -> None:
    data = import_answer(
        {
            "transform_map": "A",
            "table": "interaction",
            "status": "skipped",
            "status_message": "No coalesce value",
            "sys_id": "staging",
        }
    )
    assert interpret_import_result(data, "u_imp") == Reject(
        "Import Set u_imp: transform map 'A' -> interaction: skipped: No coalesce value"
    )


def test_import_without_transform_result_is_rejected() -> None:
    result = interpret_import_result(import_answer(), "u_imp")
    assert isinstance(result, Reject)
    assert "no transform map ran" in result.reason


# ---- Event Management ----------------------------------------------------------------------------------


def test_em_result() -> None:
    assert interpret_em_result({"result": {"Default Bulk Endpoint": "1 events were inserted"}}) == Delivered(
        "1 events were inserted"
    )
    zero = interpret_em_result({"result": {"Default Bulk Endpoint": "0 events were inserted"}})
    assert isinstance(zero, Reject)


# ---- token endpoint ------------------------------------------------------------------------------------


def test_token_success_keeps_the_tokens_secret() -> None:
    body = _json.dumps(
        {
            "access_token": "AT-secret",
            "refresh_token": "RT-secret",
            "expires_in": 1799,
            "token_type": "Bearer",
            "scope": "useraccount",
        }
    )
    fetched = classify_token_answer(200, JSON, body, None, "password")
    assert fetched.expires_in == 1799.0  # type: ignore[union-attr]
    assert fetched.access_token.reveal() == "AT-secret"  # type: ignore[union-attr]
    assert "AT-secret" not in repr(fetched)
    assert "RT-secret" not in repr(fetched)


def test_token_refusal_is_fatal_with_what_to_check() -> None:
    body = _json.dumps({"error_description": "access_denied", "error": "server_error"})
    problem = classify_token_answer(401, JSON, body, None, "client_credentials")
    assert problem.error is FetchError.INVALID_CLIENT  # type: ignore[union-attr]
    assert "client_credentials grant (HTTP 401, access_denied)" in problem.reason  # type: ignore[union-attr]
    assert "glide.oauth.inbound.client.credential.grant_type.enabled" in problem.reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "ctype", "body", "error"),
    [
        (429, JSON, b"{}", FetchError.RATE_LIMITED),
        (503, HTML, b"<html/>", FetchError.TRANSIENT),
        (200, HTML, b"<html>hibernating</html>", FetchError.TRANSIENT),
        (401, HTML, b"<html/>", FetchError.TRANSIENT),
    ],
)
def test_token_transient_failures(status: int, ctype: str, body: bytes, error: FetchError) -> None:
    problem = classify_token_answer(status, ctype, body, "5", "password")
    assert problem.error is error  # type: ignore[union-attr]


# ---- Table upsert decision ---------------------------------------------------------------------------


def test_upsert_creates_when_nothing_matches() -> None:
    assert decide_upsert({"result": []}, "incident", "correlation_id", "c1") == Create()


def test_upsert_patches_the_record_that_carries_the_key() -> None:
    data = {"result": [{"sys_id": "abc", "correlation_id": "C1"}]}  # ServiceNow matches case-insensitively
    assert decide_upsert(data, "incident", "correlation_id", "c1") == Patch("abc")
    by_reference = {
        "result": [{"sys_id": {"value": "abc"}, "correlation_id": {"value": "c1", "display_value": "c1"}}]
    }
    assert decide_upsert(by_reference, "incident", "correlation_id", "c1") == Patch("abc")


@pytest.mark.parametrize(
    "record",
    [
        {"sys_id": "abc", "correlation_id": "other"},  # the query part was ignored: an unrelated record
        {"sys_id": "abc"},  # the field does not exist (or is not readable)
    ],
)
def test_upsert_never_patches_an_unrelated_record(record: dict[str, str]) -> None:
    result = decide_upsert({"result": [record]}, "incident", "correlation_id", "c1")
    assert isinstance(result, Reject)
    assert "refusing to patch an unrelated record" in result.reason


def test_upsert_odd_answers() -> None:
    assert isinstance(decide_upsert({"oops": 1}, "incident", "correlation_id", "c1"), Retry)
    no_id = decide_upsert({"result": [{"correlation_id": "c1"}]}, "incident", "correlation_id", "c1")
    assert isinstance(no_id, Reject)
    assert "without sys_id" in no_id.reason
