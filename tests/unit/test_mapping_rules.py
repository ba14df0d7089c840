"""Mapping rules: start-up errors naming the rule and field, runtime semantics, row fitting, outbox items."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gcbridge import _json
from gcbridge.bridge.expressions import EventView
from gcbridge.bridge.mapping import (
    FieldSpec,
    MappingConfig,
    MappingError,
    MappingRule,
    Record,
    Unmappable,
    compile_mapping,
    default_rules,
    event_to_outbox_item,
    fit_row,
    view_from_payload,
)
from gcbridge.genesys.events import Event
from gcbridge.sim.genesys import org_bodies
from gcbridge.sim.genesys.bodies import BodyGenerator
from gcbridge.sim.genesys.org import ObservationMetric


def rule(**overrides: Any) -> MappingRule:
    base: dict[str, Any] = {
        "name": "calls",
        "topics": ["v2.routing.queues.*.conversations"],
        "sink": "import_set",
        "target": "u_calls_import",
        "key": "{body.id}",
        "key_field": "u_conversation_id",
        "fields": {"u_state": "{body.state}"},
    }
    base.update(overrides)
    return MappingRule(**base)


def view(topic: str = "v2.routing.queues.q1.conversations", **body: Any) -> EventView:
    return EventView(topic, body, {}, "2", "dk-1", 1709288430.0)


# ---- start-up errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sink": "kafka"}, "rule 'calls', field 'sink': unknown sink 'kafka'"),
        ({"target": ""}, "rule 'calls', field 'target': sink 'import_set' needs the staging table"),
        ({"target": "Bad-Table"}, "rule 'calls', field 'target'"),
        ({"key": ""}, "rule 'calls', field 'key': missing"),
        ({"key_field": ""}, "rule 'calls', field 'key_field': sink 'import_set' needs the column"),
        ({"fields": {"u_state": "{body.state|shout}"}}, "rule 'calls', field 'u_state': unknown function"),
        ({"fields": {"u_state": "{bodyy.state}"}}, "rule 'calls', field 'u_state': unknown root 'bodyy'"),
        ({"fields": {"U State": "{body.state}"}}, "rule 'calls', field 'U State': not a ServiceNow column"),
        ({"fields": {"u_conversation_id": "{body.id}"}}, "field 'u_conversation_id': is the key_field"),
        ({"fields": {"u_x": FieldSpec(value=[])}}, "field 'u_x': 'value' is an empty list"),
        ({"key": "{body.id"}, "rule 'calls', field 'key': unclosed"),
        ({"topics": ["v2..x"]}, "rule 'calls': topic pattern 'v2..x' has an empty segment"),
        ({"topics": ["v2.**.x"]}, "'**' may only be the last segment"),
        ({"topics": ["v2.user*.x"]}, "a wildcard must be a whole segment"),
    ],
)
def test_bad_rules_fail_at_start_up_naming_rule_and_field(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MappingError) as info:
        compile_mapping(MappingConfig.model_construct(rules=[rule(**overrides)]))
    assert fragment in str(info.value)


def test_config_validation_compiles_the_mapping() -> None:
    with pytest.raises(ValidationError) as info:
        MappingConfig(rules=[rule(sink="kafka")])
    assert "rule 'calls', field 'sink': unknown sink 'kafka'" in str(info.value)


def test_duplicate_rule_names_are_an_error() -> None:
    with pytest.raises(MappingError, match="used twice"):
        compile_mapping(MappingConfig.model_construct(rules=[rule(), rule()], include_defaults=False))


def test_empty_rule_list_is_an_error() -> None:
    with pytest.raises(MappingError, match="no rules"):
        compile_mapping(MappingConfig.model_construct(rules=[], include_defaults=False))


def test_default_keys_for_table_and_event_sinks() -> None:
    mapping = compile_mapping(
        MappingConfig(
            rules=[
                rule(name="t", sink="table", target="incident", key_field="", topics=["a.*"]),
                rule(name="e", sink="event", target="", key_field="", topics=["b.*"]),
            ]
        )
    )
    assert [r.key_field for r in mapping.rules] == ["correlation_id", "message_key"]


def test_defaults_compile_and_can_follow_custom_rules() -> None:
    mapping = compile_mapping(MappingConfig(rules=[rule()], include_defaults=True))
    names = [r.name for r in mapping.rules]
    assert names == ["calls", *(r.name for r in default_rules())]


# ---- topic matching ------------------------------------------------------------------------------------


def test_first_matching_rule_wins_and_patterns_match_whole_segments() -> None:
    mapping = compile_mapping(
        MappingConfig(
            rules=[
                rule(name="one", topics=["v2.detail.events.conversation.*.wrapup"]),
                rule(name="many", topics=["v2.detail.events.conversation.**"]),
            ]
        )
    )
    assert mapping.rule_for("v2.detail.events.conversation.c1.wrapup").name == "one"  # type: ignore[union-attr]
    assert mapping.rule_for("v2.detail.events.conversation.c1.acd.start").name == "many"  # type: ignore[union-attr]
    assert mapping.rule_for("v2.detail.events.conversation") is None  # '**' needs at least one segment
    assert mapping.rule_for("v2.routing.queues.q1.conversations") is None


# ---- runtime semantics ---------------------------------------------------------------------------------


def test_missing_field_is_left_out_so_updates_never_blank_a_value() -> None:
    mapping = compile_mapping(
        MappingConfig(rules=[rule(fields={"u_state": "{body.state}", "u_x": "{body.x}"})])
    )
    record = mapping.map_event(view(id="c1", x="1"))
    assert isinstance(record, Record)
    assert record.fields == {"u_x": "1", "u_conversation_id": "c1"}


def test_default_map_required_and_max_length() -> None:
    fields = {
        "u_state": FieldSpec(value="{body.state}", map={"connected": "work_in_progress"}, default="new"),
        "u_agent": FieldSpec(value=["{body.agent}", "{body.fallback}"]),
        "u_text": FieldSpec(value="{body.text}", max_length=10),
    }
    mapping = compile_mapping(MappingConfig(rules=[rule(fields=fields)], truncation_marker="~"))
    record = mapping.map_event(view(id="c1", state="connected", fallback="bob", text="x" * 50))
    assert isinstance(record, Record)
    assert record.fields == {
        "u_state": "work_in_progress",
        "u_agent": "bob",
        "u_text": "xxxxxxxxx~",
        "u_conversation_id": "c1",
    }
    unmapped = mapping.map_event(view(id="c1", state="dialing"))
    assert isinstance(unmapped, Record)
    assert unmapped.fields["u_state"] == "new"


def test_required_field_missing_rejects_with_a_readable_reason() -> None:
    fields = {"u_state": FieldSpec(value="{body.state}", required=True)}
    mapping = compile_mapping(MappingConfig(rules=[rule(fields=fields)]))
    result = mapping.map_event(view(id="c1"))
    assert isinstance(result, Unmappable)
    assert result.reason == "rule 'calls': required field 'u_state' has no value in this event ({body.state})"


def test_missing_key_and_unknown_topic_are_unmappable() -> None:
    mapping = compile_mapping(MappingConfig(rules=[rule()]))
    missing = mapping.map_event(view(state="x"))
    assert isinstance(missing, Unmappable)
    assert "rule 'calls': key '{body.id}' is missing" in missing.reason
    empty = mapping.map_event(view(id=""))
    assert isinstance(empty, Unmappable)
    assert "rule 'calls': key '{body.id}' is empty" in empty.reason
    dated = compile_mapping(MappingConfig(rules=[rule(key="{body.id|datetime}")])).map_event(view(id="x"))
    assert isinstance(dated, Unmappable)
    assert "cannot be computed: cannot convert 'x' to a date-time" in dated.reason
    other = mapping.map_event(view(topic="v2.users.u1.presence", id="c1"))
    assert isinstance(other, Unmappable)
    assert "no mapping rule matches topic 'v2.users.u1.presence'" in other.reason


def test_unconvertible_value_is_left_out_and_noted() -> None:
    mapping = compile_mapping(MappingConfig(rules=[rule(fields={"u_at": "{body.at|datetime}"})]))
    record = mapping.map_event(view(id="c1", at="tomorrow"))
    assert isinstance(record, Record)
    assert "u_at" not in record.fields
    assert record.notes
    assert record.notes[0].startswith("u_at: cannot convert 'tomorrow'")


# ---- row size ------------------------------------------------------------------------------------------


def row_size(fields: dict[str, str]) -> int:
    return len(_json.dumps(fields))


def test_fit_row_truncates_the_longest_fields_with_a_marker() -> None:
    fields = {"u_key": "k" * 36, "u_notes": "n" * 9000, "u_other": "é" * 3000, "u_small": "s"}
    fitted = fit_row(fields, "u_key", 8126, " [truncated]")
    assert not isinstance(fitted, Unmappable)
    assert row_size(fitted.fields) <= 8126
    assert fitted.fields["u_key"] == fields["u_key"]
    assert fitted.fields["u_small"] == "s"
    assert fitted.fields["u_notes"].endswith(" [truncated]")
    assert fitted.notes == ("u_notes: truncated to fit 8126 bytes",)


def test_fit_row_never_splits_a_multibyte_character() -> None:
    fields = {"u_key": "k", "u_text": "€" * 4000}
    fitted = fit_row(fields, "u_key", 1000, "…")
    assert not isinstance(fitted, Unmappable)
    assert row_size(fitted.fields) <= 1000
    assert set(fitted.fields["u_text"]) == {"€", "…"}


def test_fit_row_rejects_when_the_key_alone_is_too_large() -> None:
    result = fit_row({"u_key": "k" * 9000, "u_x": "y" * 100}, "u_key", 8126, " [truncated]")
    assert isinstance(result, Unmappable)
    assert "field 'u_key' is 9000 bytes" in result.reason


def test_map_event_applies_the_row_limit_to_import_set_rows_only() -> None:
    mapping = compile_mapping(
        MappingConfig(
            rules=[
                rule(fields={"u_text": "{body.text}"}),
                rule(
                    name="t",
                    sink="table",
                    target="incident",
                    key_field="",
                    topics=["v2.users.*.x"],
                    fields={"description": "{body.text}"},
                ),
            ],
            max_row_bytes=1000,
        )
    )
    imported = mapping.map_event(view(id="c1", text="z" * 5000))
    assert isinstance(imported, Record)
    assert row_size(imported.fields) <= 1000
    assert imported.notes == ("u_text: truncated to fit 1000 bytes",)
    tabled = mapping.map_event(view(topic="v2.users.u1.x", id="c1", text="z" * 5000))
    assert isinstance(tabled, Record)
    assert tabled.fields["description"] == "z" * 5000


# ---- outbox items and payloads -------------------------------------------------------------------------


def make_event(topic: str, body: dict[str, Any], dedup: str = "dk-1") -> Event:
    return Event(
        topic=topic,
        body=body,
        version="2",
        metadata={"CorrelationId": "c"},
        dedup_key=dedup,
        received_at=1709288430.5,
        channel_id="ch-1",
    )


def test_event_to_outbox_item_orders_by_the_rule_key() -> None:
    mapping = compile_mapping()
    bodies = BodyGenerator(seed=3)
    conversation = make_event(
        "v2.routing.queues.q1.conversations", bodies.body("v2.routing.queues.q1.conversations")
    )
    item = event_to_outbox_item(conversation, mapping)
    assert item is not None
    assert item.order_key == conversation.body["id"]
    assert item.dedup_key == "dk-1"
    assert item.topic == conversation.topic
    presence = event_to_outbox_item(
        make_event("v2.users.u-42.presence", bodies.body("v2.users.u-42.presence")), mapping
    )
    assert presence is not None
    assert presence.order_key == "u-42"
    queue = event_to_outbox_item(
        make_event(
            "v2.analytics.queues.q-5.observations", bodies.body("v2.analytics.queues.q-5.observations")
        ),
        mapping,
    )
    assert queue is not None
    assert queue.order_key == "q-5"


def test_event_without_rule_gives_none_and_event_without_key_still_gets_a_row() -> None:
    mapping = compile_mapping()
    assert event_to_outbox_item(make_event("v2.system.other", {}), mapping) is None
    item = event_to_outbox_item(make_event("v2.routing.queues.q1.conversations", {"no": "id"}), mapping)
    assert item is not None
    assert item.order_key == "unkeyed:v2.routing.queues.q1.conversations"


def test_payload_round_trip_and_both_wire_spellings() -> None:
    event = make_event("v2.users.u1.presence", {"presenceDefinition": {"systemPresence": "Busy"}})
    mapping = compile_mapping()
    item = event_to_outbox_item(event, mapping)
    assert item is not None
    back = view_from_payload(item.payload)
    assert (back.topic, back.body, back.version, back.dedup_key, back.received_at) == (
        event.topic,
        event.body,
        "2",
        "dk-1",
        1709288430.5,
    )
    short = view_from_payload(
        _json.dumps({"topic": "a.b", "body": {"id": 1}}), dedup_key="x", received_at=5.0
    )
    assert (short.topic, short.body, short.dedup_key, short.received_at) == ("a.b", {"id": 1}, "x", 5.0)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"eventBody": {}}', "no topic"),
        (b'{"topicName": "a.b"}', "no eventBody/body"),
    ],
)
def test_bad_payloads_raise_value_error(payload: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        view_from_payload(payload)


# ---- the defaults on realistic bodies ------------------------------------------------------------------


def test_default_conversation_rule_builds_an_interaction_row() -> None:
    mapping = compile_mapping()
    body = {
        "id": "c-1",
        "participants": [
            {
                "purpose": "customer",
                "address": "tel:+15550100",
                "ani": "tel:+15550100",
                "dnis": "tel:+18005550",
                "connectedTime": "2024-03-01T10:00:00Z",
                "endTime": "2024-03-01T10:05:00Z",
                "calls": [{"state": "disconnected", "direction": "inbound"}],
            },
            {
                "purpose": "agent",
                "userId": "u-1",
                "name": "Ann",
                "queueId": "q-1",
                "wrapup": {"code": "Resolved", "notes": "ok"},
                "calls": [{"state": "disconnected"}],
            },
        ],
    }
    record = mapping.map_event(
        EventView("v2.routing.queues.q-1.conversations", body, {}, "2", "d", 1709288430.0)
    )
    assert isinstance(record, Record)
    assert record.rule.target == "u_genesys_interaction_import"
    assert record.fields == {
        "u_short_description": "Genesys tel:+15550100 conversation c-1",
        "u_state": "closed_complete",
        "u_media_type": "voice",
        "u_direction": "inbound",
        "u_ani": "tel:+15550100",
        "u_customer_address": "tel:+15550100",
        "u_dnis": "tel:+18005550",
        "u_queue_id": "q-1",
        "u_agent_id": "u-1",
        "u_agent_name": "Ann",
        "u_wrapup_code": "Resolved",
        "u_wrapup_notes": "ok",
        "u_start_time": "2024-03-01 10:00:00",
        "u_end_time": "2024-03-01 10:05:00",
        "u_last_event": "v2.routing.queues.q-1.conversations",
        "u_received_at": "2024-03-01 10:20:30",
        "u_conversation_id": "c-1",
    }


@pytest.mark.parametrize(
    ("topic", "state"),
    [
        ("v2.detail.events.conversation.c-1.acd.start", "queued"),
        ("v2.detail.events.conversation.c-1.user.start", "work_in_progress"),
        ("v2.detail.events.conversation.c-1.wrapup", "closed_complete"),
        ("v2.detail.events.conversation.c-1.customer.end", "closed_complete"),
    ],
)
def test_default_detail_rule_maps_event_type_to_state(topic: str, state: str) -> None:
    body = {
        "conversationId": "c-1",
        "mediaType": "VOICE",
        "direction": "INBOUND",
        "wrapupCode": "Sale",
        "eventTime": 1709288430123,
    }
    record = compile_mapping().map_event(EventView(topic, body, {}, "2", "d", 0.0))
    assert isinstance(record, Record)
    assert record.key == "c-1"
    assert record.fields["u_state"] == state
    assert record.fields["u_media_type"] == "voice"
    assert record.fields["u_wrapup_code"] == "Sale"
    assert record.fields["u_event_time"] == "2024-03-01 10:20:30"


def test_default_queue_stats_picks_metrics_by_name() -> None:
    # the topic's shape: counts in data[0].metrics, agents on queue once per routing status
    body = {
        "group": {"queueId": "q-5", "mediaType": "voice"},
        "data": [
            {
                "interval": "2026-12-04T10:00:00.000Z/2026-12-04T10:00:00.000Z",
                "metrics": [
                    {"metric": "oInteracting", "stats": {"count": 2}},
                    {"metric": "oWaiting", "stats": {"count": 7}},
                    {"metric": "oOnQueueUsers", "qualifier": "IDLE", "stats": {"count": 4}},
                    {"metric": "oOnQueueUsers", "qualifier": "INTERACTING", "stats": {"count": 3}},
                ],
            }
        ],
    }
    record = compile_mapping().map_event(
        EventView("v2.analytics.queues.q-5.observations", body, {}, None, "d", 0.0)
    )
    assert isinstance(record, Record)
    assert record.fields["u_waiting"] == "7"
    assert record.fields["u_interacting"] == "2"
    assert (record.fields["u_on_queue_idle"], record.fields["u_on_queue_interacting"]) == ("4", "3")
    assert "u_alerting" not in record.fields  # not in this observation
    assert record.fields["u_queue_id"] == "q-5"


def test_default_queue_stats_reads_the_simulated_orgs_observation_topic() -> None:
    metrics = [ObservationMetric("oWaiting", None, 5), ObservationMetric("oOnQueueUsers", "IDLE", 2)]
    body = org_bodies.topic_observation("q-7", metrics, 1_767_000_000.0)
    record = compile_mapping().map_event(
        EventView("v2.analytics.queues.q-7.observations", body, {}, None, "d", 0.0)
    )
    assert isinstance(record, Record)
    assert (record.fields["u_waiting"], record.fields["u_on_queue_idle"]) == ("5", "2")


def test_default_presence_rule_fills_every_field_from_a_realistic_presence_body() -> None:
    # The simulator's bodies follow the SDK's PresenceEventUserPresence model (message, not presenceMessage).
    body = BodyGenerator(seed=7).body("v2.users.u-9.presence")
    body["message"] = "back at 3"
    record = compile_mapping().map_event(EventView("v2.users.u-9.presence", body, {}, "2", "d", 0.0))
    assert isinstance(record, Record)
    assert record.key == "u-9"
    assert record.fields["u_presence_message"] == "back at 3"
    assert record.fields["u_presence"] == body["presenceDefinition"]["systemPresence"]
