"""Property tests: bad input to the mapping gives a clear error or a dead-letter reason, never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge import _json
from gcbridge.bridge.expressions import EventView, ExpressionError, compile_expression
from gcbridge.bridge.mapping import Record, Unmappable, compile_mapping, fit_row

MAPPING = compile_mapping()
MARKER = " [truncated]"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
conversationish = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=40), st.integers(), st.none()),
        "conversationId": st.text(max_size=40),
        "participants": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "purpose": st.sampled_from(["customer", "agent", "acd", 7]),
                    "address": json_values,
                    "connectedTime": st.one_of(st.text(max_size=30), st.integers(), json_values),
                    "calls": st.lists(st.dictionaries(st.sampled_from(["state", "direction"]), json_values)),
                    "wrapup": json_values,
                },
            ),
            max_size=4,
        ),
        "presenceDefinition": json_values,
        "routingStatus": json_values,
        "data": st.lists(st.dictionaries(st.sampled_from(["metric", "stats"]), json_values), max_size=4),
        "eventTime": json_values,
        "notes": st.text(min_size=0, max_size=20000),
    },
)
topics = st.sampled_from(
    [
        "v2.routing.queues.q-1.conversations",
        "v2.users.u-1.conversations",
        "v2.detail.events.conversation.c-1.acd.start",
        "v2.detail.events.conversation.c-1.wrapup",
        "v2.users.u-1.presence",
        "v2.users.u-1.routingStatus",
        "v2.analytics.queues.q-1.observations",
        "v2.something.else",
    ]
)


@settings(max_examples=300, deadline=None)
@given(topic=topics, body=st.one_of(conversationish, json_values))
def test_default_mapping_never_raises(topic: str, body: Any) -> None:
    result = MAPPING.map_event(EventView(topic, body, {}, "2", "dk", 1.7e9))
    assert isinstance(result, Record | Unmappable)
    if isinstance(result, Record):
        assert all(isinstance(v, str) for v in result.fields.values())
        assert result.fields[result.rule.key_field] == result.key
        assert len(_json.dumps(result.fields)) <= MAPPING.max_row_bytes
    else:
        assert result.reason


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(min_size=1, max_size=200),
    fields=st.dictionaries(
        st.from_regex(r"u_[a-z]{1,8}", fullmatch=True), st.text(max_size=6000), max_size=6
    ),
    limit=st.integers(min_value=256, max_value=9000),
)
def test_fit_row_fits_or_says_why(key: str, fields: dict[str, str], limit: int) -> None:
    row = {**fields, "u_key": key}
    fitted = fit_row(row, "u_key", limit, MARKER)
    if isinstance(fitted, Unmappable):
        assert "u_key" in fitted.reason
        return
    assert len(_json.dumps(fitted.fields)) <= limit
    assert fitted.fields["u_key"] == key
    assert set(fitted.fields) == set(row)
    for name, value in fitted.fields.items():
        assert value == row[name] or value.endswith(MARKER)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_compiling_any_text_gives_an_expression_or_a_clear_error(source: str) -> None:
    error: ExpressionError | None = None
    try:
        expression = compile_expression(source)
    except ExpressionError as exc:
        error = exc
    if error is not None:
        assert "column" in str(error)
        return
    value = expression.evaluate(EventView("a.b", {"x": [1, {"y": "z"}]}, {}, None, "d", 0.0))
    assert value is not None
