"""The mapping expression language: templates, paths, filters, functions, and compile errors."""

from __future__ import annotations

from typing import Any

import pytest

from gcbridge.bridge.expressions import (
    MISSING,
    EventView,
    ExpressionError,
    Unconvertible,
    compile_expression,
    first_present,
    sn_datetime,
)

BODY: dict[str, Any] = {
    "id": "conv-1",
    "count": 3,
    "ratio": 0.5,
    "whole": 2.0,
    "flag": True,
    "nothing": None,
    "odd key": "odd",
    "participants": [
        {"purpose": "agent", "name": "Ann", "userId": "u-9", "wrapup": {"code": "Sale"}},
        {"purpose": "customer", "address": "tel:+1555", "calls": [{"state": "connected"}]},
    ],
    "data": [
        {"metric": "oWaiting", "stats": {"count": 4}},
        {"metric": "oInteracting", "stats": {"count": 0}},
    ],
    "connectedTime": "2024-03-01T10:20:30.123Z",
    "eventTime": 1709288430123,
}
VIEW = EventView(
    topic="v2.routing.queues.q-7.conversations",
    body=BODY,
    metadata={"CorrelationId": "corr"},
    version="2",
    dedup_key="dk",
    received_at=1709288430.0,
)


def ev(source: str, view: EventView = VIEW) -> object:
    return compile_expression(source).evaluate(view)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{body.id}", "conv-1"),
        ("Genesys call {body.id}", "Genesys call conv-1"),
        ("{topic}", "v2.routing.queues.q-7.conversations"),
        ("{topicName}", "v2.routing.queues.q-7.conversations"),
        ("{topic_parts[3]}", "q-7"),
        ("{topic_parts[-1]}", "conversations"),
        ("$.eventBody.participants[0].name", "Ann"),
        ("$.body.participants[?purpose=='customer'].address", "tel:+1555"),
        ('{body.participants[?purpose == "customer"].calls[0].state}', "connected"),
        ("{body.participants[?purpose!='agent'].address}", "tel:+1555"),
        ("{body.participants[?wrapup.code=='Sale'].userId}", "u-9"),
        ("{body.data[?metric=='oWaiting'].stats.count}", "4"),
        ("{body.data[?metric=='oInteracting'].stats.count}", "0"),
        ("{body['odd key']}", "odd"),
        ("{body.count}", "3"),
        ("{body.ratio}", "0.5"),
        ("{body.whole}", "2"),
        ("{body.flag}", "true"),
        ("{metadata.CorrelationId}", "corr"),
        ("{version}/{dedup_key}", "2/dk"),
        ("{received_at}", "2024-03-01 10:20:30"),
        ("{body.connectedTime|datetime}", "2024-03-01 10:20:30"),
        ("{body.eventTime | datetime}", "2024-03-01 10:20:30"),
        ("{body.participants[0].name|upper}", "ANN"),
        ("{body.participants[0].name|lower}", "ann"),
        ("{body.eventTime|seconds}", "1709288430"),
        ("{body.participants[0].wrapup|json}", '{"code":"Sale"}'),
        ("{body.participants[0].wrapup}", '{"code":"Sale"}'),
        ("voice{body.participants[1].calls|exists}", "voice"),
        ("{{literal}} {body.id}", "{literal} conv-1"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_expression_values(source: str, expected: str) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{body.missing}",
        "{body.id.deeper}",
        "{body.participants[5].name}",
        "{body.participants[?purpose=='supervisor'].name}",
        "{body.nothing}",
        "call {body.missing} now",  # one missing placeholder makes the whole template missing
        "chat{body.participants[0].chats|exists}",
        "{topic_parts[9]}",
    ],
)
def test_missing_values(source: str) -> None:
    assert ev(source) is MISSING


def test_version_none_is_missing() -> None:
    view = EventView("t", {}, {}, None, "d", 0.0)
    assert ev("{version}", view) is MISSING


def test_unconvertible_is_reported_not_raised() -> None:
    result = ev("{body.id|datetime}")
    assert isinstance(result, Unconvertible)
    assert "conv-1" in result.reason


def test_first_present_takes_first_alternative_with_a_value() -> None:
    exprs = [compile_expression(s) for s in ("{body.missing}", "{body.id|datetime}", "{body.id}", "{topic}")]
    value, problems = first_present(exprs, VIEW)
    assert value == "conv-1"
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{unknown.x}", "unknown root 'unknown'"),
        ("{body.x|shout}", "unknown function 'shout'"),
        ("{body.x", "unclosed '{'"),
        ("oops }", "single '}'"),
        ("{body.}", "expected a field name"),
        ("{body[}", "expected an index"),
        ("{body[?a==b]}", "expected a string, number"),
        ("{body[?a~'b']}", "expected '==' or '!='"),
        ("{body[?a=='b'}", "expected ']'"),
        ("$.body['x", "unterminated string"),
        ("{body['x}", "unclosed '{'"),
        ("$body", "expected '.' after '$'"),
        ("{body.x y}", "unexpected 'y'"),
        ("{}", "expected a root"),
    ],
)
def test_compile_errors_say_what_and_where(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match="column") as info:
        compile_expression(source)
    assert fragment in str(info.value)


def test_error_column_points_into_the_template() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("Call {body.id|nope}")
    assert "column 15" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T10:20:30Z", "2024-03-01 10:20:30"),
        ("2024-03-01T12:20:30+02:00", "2024-03-01 10:20:30"),
        ("2024-03-01T10:20:30", "2024-03-01 10:20:30"),
        (1709288430, "2024-03-01 10:20:30"),
        (1709288430123, "2024-03-01 10:20:30"),
    ],
)
def test_sn_datetime(value: object, expected: str) -> None:
    assert sn_datetime(value) == expected


@pytest.mark.parametrize("value", ["soon", True, [1], {"a": 1}])
def test_sn_datetime_rejects_non_dates(value: object) -> None:
    assert isinstance(sn_datetime(value), Unconvertible)
