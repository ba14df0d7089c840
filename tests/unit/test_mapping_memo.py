"""The per-event memo of shared sub-paths: an expression evaluated with a memo shared by every other
expression of the event gives exactly what it gives alone, and a shared filter is walked once per event."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.bridge.expressions import EventView, Expression, Memo, compile_expression, first_present
from gcbridge.bridge.mapping import compile_mapping, payload_of, view_from_payload
from gcbridge.genesys.events import Event
from gcbridge.sim.genesys import org_bodies
from gcbridge.sim.genesys.bodies import AVAILABLE_TOPICS, BodyGenerator
from gcbridge.sim.genesys.org import OrgSettings, OrgWorld

from .test_mapping_properties import conversationish, topics

MAPPING = compile_mapping()
#: Every expression of the built-in rules, keys included, in rule order.
ALL_EXPRESSIONS: list[Expression] = [
    expr
    for rule in MAPPING.rules
    for expr in (rule.key, *(alt for spec in rule.fields for alt in spec.alternatives))
]


def _view(topic: str, body: Any, received_at: float = 1.7e9) -> EventView:
    return EventView(topic, body, {"simSequence": 3}, "2", "dedup-1", received_at)


def _same_with_memo(view: EventView, order: list[Expression]) -> None:
    memo: Memo = {}
    for expr in order:
        assert expr.evaluate(view, memo) == expr.evaluate(view), expr.source


@settings(max_examples=300, deadline=None)
@given(topics, conversationish, st.randoms(use_true_random=False))
def test_a_shared_memo_changes_no_value_of_the_built_in_expressions(
    topic: str, body: dict[str, Any], rnd: random.Random
) -> None:
    view = _view(topic, body)
    _same_with_memo(view, ALL_EXPRESSIONS)
    shuffled = list(ALL_EXPRESSIONS)
    rnd.shuffle(shuffled)
    _same_with_memo(view, shuffled)


def test_a_shared_memo_changes_nothing_on_the_simulators_bodies() -> None:
    generator = BodyGenerator(seed=5)
    for template, _ in AVAILABLE_TOPICS:
        for n in range(20):
            topic = template.format(id=f"id-{n % 3}")
            event = Event(topic, generator.body(topic), "2", {}, f"k{n}", 1.7e9 + n)
            view = view_from_payload(payload_of(event))
            _same_with_memo(view, ALL_EXPRESSIONS)
            _same_with_memo(view, ALL_EXPRESSIONS[::-1])


def test_a_shared_memo_changes_nothing_on_the_simulated_orgs_bodies() -> None:
    start = 1_800_000_000.0
    world = OrgWorld(OrgSettings(seed=3, calls_per_hour=240), start)
    seen: set[str] = set()
    count = 0
    for change in world.advance(start + 1800):
        for topic, body in org_bodies.notifications(world, change):
            view = _view(topic, body, received_at=start + count)
            _same_with_memo(view, ALL_EXPRESSIONS)
            _same_with_memo(view, ALL_EXPRESSIONS[::-1])
            rule = MAPPING.rule_for(topic)
            seen.add(rule.name if rule is not None else "")
            count += 1
    assert count > 100
    assert {"conversations", "conversation_details", "presence"} <= seen


def test_paths_that_differ_only_after_or_inside_the_filter_do_not_share_a_value() -> None:
    body = {
        "p": [
            {"n": 1, "v": "one", "w": {"x": "deep"}},
            {"n": 2, "v": "two"},
            {"n": "1", "v": "text one"},
            {"n": True, "v": "true"},
        ]
    }
    sources = [
        "{body.p[?n==1].v}",
        "{eventBody.p[?n==1].w.x}",
        "{body.p[?n==2].v}",
        "{body.p[?n=='1'].v}",
        "{body.p[?n!=1].v}",
        "{body.p[?n==true].v}",
        "{body.p[?n==1.0].v}",
        "{metadata.p[?n==1].v}",
        "$.body.p[?n==2]",
        "{body.p[1].v}",
    ]
    exprs = [compile_expression(s) for s in sources]
    view = _view("a.b", body)
    _same_with_memo(view, exprs)
    _same_with_memo(view, exprs[::-1])
    memo: Memo = {}
    assert [e.evaluate(view, memo) for e in exprs][:4] == ["one", "deep", "two", "text one"]


class _CountingList(list[Any]):
    """A JSON list that counts how often a filter walks it."""

    walks = 0

    def __iter__(self) -> Any:
        type(self).walks += 1
        return super().__iter__()


def test_a_filter_shared_by_several_fields_is_walked_once_per_event() -> None:
    _CountingList.walks = 0
    participants = _CountingList(
        [{"purpose": "agent", "name": "A"}, {"purpose": "customer", "ani": "123", "address": "tel:9"}]
    )
    view = _view("v2.users.u-1.conversations", {"id": "c-1", "participants": participants})
    customer = [
        compile_expression("{body.participants[?purpose=='customer'].ani}"),
        compile_expression("{body.participants[?purpose=='customer'].address}"),
        compile_expression("$.eventBody.participants[?purpose=='customer'].calls[0].state"),
    ]
    memo: Memo = {}
    assert first_present(customer[2:], view, memo) == (first_present(customer[2:], view)[0], [])
    assert [e.evaluate(view, memo) for e in customer[:2]] == ["123", "tel:9"]
    _CountingList.walks = 0
    second: Memo = {}
    for expr in customer:
        expr.evaluate(view, second)
    assert _CountingList.walks == 1
    # the mapping gives each event one memo: the built-in conversation rule filters the participants for
    # the customer and the agent, so two walks per event for its ~25 filtered fields
    _CountingList.walks = 0
    record = MAPPING.map_event(view)
    assert not isinstance(record, str)
    assert _CountingList.walks == 2
