"""From Genesys events to flat ServiceNow rows: rules chosen by topic pattern, fields from expressions.

A rule (:class:`~gcbridge.servicenow.config.MappingRule`) says which topics it takes (``*`` is one topic
segment, a final ``**`` one or more), which sink writes them (``import_set``, ``table``, ``event``), the key
that identifies the record (a conversation, user or queue id) and how each target field is computed (see
:mod:`gcbridge.servicenow.expressions`). Rules are tried in order; the first whose pattern matches wins.

Everything that can be wrong with a mapping is found by :func:`compile_mapping` at start-up and raised as one
:class:`MappingError` naming the rule and the field. At runtime, per event:

* a field whose value is missing is **left out of the row** (so that an update never blanks a value an earlier
  event set; ServiceNow transform maps do not copy empty fields by default), unless the field has a
  ``default`` (used instead) or is ``required`` (the event is rejected to the dead-letter list, naming it);
* a missing key rejects the event (the reason names the rule and the key expression);
* a value a function cannot convert (``datetime`` of ``"soon"``) leaves the field out and is noted in the
  delivery detail;
* Import Set rows above ``max_row_bytes`` (ServiceNow skips rows over 8126 bytes) have their longest non-key
  fields truncated with a marker until they fit; only a row whose key alone is too large is rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from gcbridge import _json
from gcbridge.genesys.events import Event
from gcbridge.outbox.base import OutboxItem
from gcbridge.servicenow.config import FieldSpec, MappingConfig, MappingRule
from gcbridge.servicenow.expressions import (
    MISSING,
    EventView,
    Expression,
    ExpressionError,
    Unconvertible,
    compile_expression,
    first_present,
)

__all__ = [
    "SINKS",
    "CompiledField",
    "CompiledRule",
    "Mapping",
    "MappingError",
    "Record",
    "Unmappable",
    "compile_mapping",
    "default_rules",
    "event_to_outbox_item",
    "event_view",
    "fit_row",
    "view_from_payload",
    "wire_fields",
]

SINKS: Final = ("import_set", "table", "event")
_DEFAULT_KEY_FIELD: Final = {"table": "correlation_id", "event": "message_key"}
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
_TOPIC_CACHE_LIMIT: Final = 10_000


class MappingError(ValueError):
    """A mapping that cannot work; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class TopicPattern:
    source: str
    segments: tuple[str, ...]

    def matches(self, parts: list[str]) -> bool:
        segments = self.segments
        if segments and segments[-1] == "**":
            if len(parts) < len(segments):
                return False
            segments = segments[:-1]
            parts = parts[: len(segments)]
        elif len(parts) != len(segments):
            return False
        return all(s in ("*", p) for s, p in zip(segments, parts, strict=True))


@dataclass(frozen=True, slots=True)
class CompiledField:
    name: str
    alternatives: tuple[Expression, ...]
    map: dict[str, str] | None
    default: str | None
    required: bool
    max_length: int | None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    patterns: tuple[TopicPattern, ...]
    sink: str
    target: str
    key: Expression
    key_field: str
    fields: tuple[CompiledField, ...]
    on_transform_error: str


@dataclass(frozen=True, slots=True)
class Record:
    """One row for a sink: the key (also in ``fields[rule.key_field]``), flat string fields, notes."""

    rule: CompiledRule = field(repr=False)
    key: str
    fields: dict[str, str]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unmappable:
    """Why an event cannot become a row (goes to the dead-letter list as the reason)."""

    reason: str


@dataclass
class Mapping:
    """The compiled rules. :meth:`rule_for` picks the rule; :meth:`map_event` builds the row."""

    rules: tuple[CompiledRule, ...]
    max_row_bytes: int = 8126
    truncation_marker: str = " [truncated]"
    _by_topic: dict[str, CompiledRule | None] = field(default_factory=dict, repr=False)

    def rule_for(self, topic: str) -> CompiledRule | None:
        try:
            return self._by_topic[topic]
        except KeyError:
            pass
        parts = topic.split(".")
        found = next((r for r in self.rules if any(p.matches(parts) for p in r.patterns)), None)
        if len(self._by_topic) >= _TOPIC_CACHE_LIMIT:
            self._by_topic.clear()  # per-conversation topics are unbounded; a full cache just starts over
        self._by_topic[topic] = found
        return found

    def key_of(self, view: EventView) -> str | None:
        """The order key of an event (its rule's key); ``None`` without a rule or without the key."""
        rule = self.rule_for(view.topic)
        if rule is None:
            return None
        key = rule.key.evaluate(view)
        return key if isinstance(key, str) and key else None

    def map_event(self, view: EventView) -> Record | Unmappable:
        rule = self.rule_for(view.topic)
        if rule is None:
            return Unmappable(f"no mapping rule matches topic {view.topic!r}")
        key = rule.key.evaluate(view)
        if isinstance(key, Unconvertible):
            return Unmappable(f"rule {rule.name!r}: key {rule.key.source!r} cannot be computed: {key.reason}")
        if not isinstance(key, str) or not key:
            why = "is empty" if key == "" else "is missing"
            return Unmappable(f"rule {rule.name!r}: key {rule.key.source!r} {why} in this event")
        fields: dict[str, str] = {}
        notes: list[str] = []
        for spec in rule.fields:
            value, problems = first_present(spec.alternatives, view)
            notes.extend(f"{spec.name}: {p.reason}" for p in problems)
            if value is not MISSING and spec.map is not None:
                value = spec.map.get(str(value), MISSING)
            if value is MISSING:
                if spec.default is not None:
                    value = spec.default
                elif spec.required:
                    return Unmappable(
                        f"rule {rule.name!r}: required field {spec.name!r} has no value in this event"
                        f" ({' | '.join(e.source for e in spec.alternatives)})"
                    )
                else:
                    continue
            text = str(value)
            if spec.max_length is not None and len(text) > spec.max_length:
                text = _truncate_chars(text, spec.max_length, self.truncation_marker)
            fields[spec.name] = text
        fields[rule.key_field] = key
        if rule.sink == "import_set":
            fitted = fit_row(fields, rule.key_field, self.max_row_bytes, self.truncation_marker)
            if isinstance(fitted, Unmappable):
                return Unmappable(f"rule {rule.name!r}: {fitted.reason}")
            if fitted.notes:
                notes.extend(fitted.notes)
            fields = fitted.fields
        return Record(rule, key, fields, tuple(notes))


@dataclass(frozen=True, slots=True)
class _Fitted:
    fields: dict[str, str]
    notes: tuple[str, ...]


def _row_bytes(fields: dict[str, str]) -> int:
    return len(_json.dumps(fields))


def _truncate_chars(text: str, limit: int, marker: str) -> str:
    keep = max(0, limit - len(marker))
    return text[:keep] + marker[: limit - keep]


def _truncate_bytes(text: str, excess: int, marker: str) -> str:
    raw = text.encode()
    keep = max(0, len(raw) - excess - len(marker.encode()))
    return raw[:keep].decode(errors="ignore") + marker


def fit_row(fields: dict[str, str], key_field: str, max_bytes: int, marker: str) -> _Fitted | Unmappable:
    """Truncate the longest non-key fields (with ``marker``) until the JSON row fits in ``max_bytes``.

    The size is measured on the JSON encoding of the row, which slightly over-counts what ServiceNow stores:
    a conservative bound.
    """
    size = _row_bytes(fields)
    if size <= max_bytes:
        return _Fitted(fields, ())
    fields = dict(fields)
    cut: list[str] = []
    for _ in range(4 * len(fields) + 8):
        size = _row_bytes(fields)
        if size <= max_bytes:
            break
        candidates = [
            (len(v.encode()), name)
            for name, v in fields.items()
            if name != key_field and v != marker and len(v.encode()) > len(marker.encode())
        ]
        if not candidates:
            return Unmappable(
                f"row of {size} bytes exceeds the Import Set row limit of {max_bytes} bytes even with every"
                f" other field truncated (field {key_field!r} is {len(fields[key_field].encode())} bytes)"
            )
        _, longest = max(candidates)
        fields[longest] = _truncate_bytes(fields[longest], size - max_bytes, marker)
        if longest not in cut:
            cut.append(longest)
    else:
        return Unmappable(f"row does not fit the Import Set row limit of {max_bytes} bytes")
    return _Fitted(fields, tuple(f"{name}: truncated to fit {max_bytes} bytes" for name in cut))


# ---- compiling -------------------------------------------------------------------------------------------


def _compile_pattern(rule: str, source: str) -> TopicPattern:
    segments = tuple(source.split("."))
    if not source or any(not s for s in segments):
        raise MappingError(f"rule {rule!r}: topic pattern {source!r} has an empty segment")
    for i, segment in enumerate(segments):
        if segment == "**" and i != len(segments) - 1:
            raise MappingError(f"rule {rule!r}: topic pattern {source!r}: '**' may only be the last segment")
        if segment not in ("*", "**") and ("*" in segment or "?" in segment):
            raise MappingError(
                f"rule {rule!r}: topic pattern {source!r}: a wildcard must be a whole segment ('*' or '**')"
            )
    return TopicPattern(source, segments)


def _compile_expr(rule: str, what: str, source: str) -> Expression:
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        raise MappingError(f"rule {rule!r}, {what}: {exc} in {source!r}") from None


def _compile_field(rule: str, name: str, spec: str | list[str] | FieldSpec) -> CompiledField:
    if not _COLUMN.match(name):
        raise MappingError(
            f"rule {rule!r}, field {name!r}: not a ServiceNow column name (lower case letters, digits, '_')"
        )
    if not isinstance(spec, FieldSpec):
        spec = FieldSpec(value=spec)
    sources = [spec.value] if isinstance(spec.value, str) else list(spec.value)
    if not sources:
        raise MappingError(f"rule {rule!r}, field {name!r}: 'value' is an empty list")
    alternatives = tuple(_compile_expr(rule, f"field {name!r}", s) for s in sources)
    return CompiledField(name, alternatives, spec.map, spec.default, spec.required, spec.max_length)


def _compile_rule(rule: MappingRule) -> CompiledRule:
    name = rule.name
    if rule.sink not in SINKS:
        raise MappingError(
            f"rule {name!r}, field 'sink': unknown sink {rule.sink!r} (expected one of {SINKS})"
        )
    if rule.sink in ("import_set", "table") and not rule.target:
        what = "staging table" if rule.sink == "import_set" else "table"
        raise MappingError(f"rule {name!r}, field 'target': sink {rule.sink!r} needs the {what} name")
    if rule.target and not _COLUMN.match(rule.target):
        raise MappingError(f"rule {name!r}, field 'target': {rule.target!r} is not a ServiceNow table name")
    if not rule.key.strip():
        raise MappingError(f"rule {name!r}, field 'key': missing (the expression of the record's identity)")
    key_field = rule.key_field or _DEFAULT_KEY_FIELD.get(rule.sink, "")
    if not key_field:
        raise MappingError(
            f"rule {name!r}, field 'key_field': sink {rule.sink!r} needs the column that holds the key"
            " (the transform map's coalesce field)"
        )
    if not _COLUMN.match(key_field):
        raise MappingError(f"rule {name!r}, field 'key_field': {key_field!r} is not a ServiceNow column name")
    if key_field in rule.fields:
        raise MappingError(
            f"rule {name!r}, field {key_field!r}: is the key_field; the key provides its value"
        )
    return CompiledRule(
        name=name,
        patterns=tuple(_compile_pattern(name, t) for t in rule.topics),
        sink=rule.sink,
        target=rule.target,
        key=_compile_expr(name, "field 'key'", rule.key),
        key_field=key_field,
        fields=tuple(_compile_field(name, n, s) for n, s in rule.fields.items()),
        on_transform_error=rule.on_transform_error,
    )


def compile_mapping(config: MappingConfig | None = None) -> Mapping:
    """Compile and check every rule; raises :class:`MappingError` naming the rule and the field."""
    config = config if config is not None else MappingConfig()
    rules: list[MappingRule] = list(config.rules) if config.rules is not None else default_rules()
    if config.rules is not None and config.include_defaults:
        rules += default_rules()
    names: set[str] = set()
    compiled: list[CompiledRule] = []
    for rule in rules:
        if rule.name in names and not config.include_defaults:
            raise MappingError(f"rule {rule.name!r}: the name is used twice")
        names.add(rule.name)
        compiled.append(_compile_rule(rule))
    if not compiled:
        raise MappingError("mapping: no rules (leave 'rules' out to use the built-in defaults)")
    return Mapping(tuple(compiled), config.max_row_bytes, config.truncation_marker)


# ---- events and outbox payloads --------------------------------------------------------------------------


def event_view(event: Event) -> EventView:
    return EventView(
        event.topic, event.body, event.metadata, event.version, event.dedup_key, event.received_at
    )


def wire_fields(event: Event) -> dict[str, Any]:
    """What an outbox payload holds of ``event``: the Genesys wire shape plus the bridge's own fields."""
    return {
        "topicName": event.topic,
        "version": event.version,
        "eventBody": event.body,
        "metadata": event.metadata,
        "dedupKey": event.dedup_key,
        "receivedAt": event.received_at,
        "channelId": event.channel_id,
    }


def payload_of(event: Event) -> bytes:
    """The outbox payload: :func:`wire_fields` as JSON."""
    return _json.dumps(wire_fields(event))


def view_from_payload(
    payload: bytes, topic: str = "", dedup_key: str = "", received_at: float = 0.0
) -> EventView:
    """Read an outbox payload (``topicName``/``topic``, ``eventBody``/``body``); raises ``ValueError``."""
    try:
        data: Any = _json.loads(payload)
    except _json.JSONDecodeError as exc:
        raise ValueError(f"payload is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"payload is a JSON {type(data).__name__}, not an object")
    topic = data.get("topicName") or data.get("topic") or topic
    if not isinstance(topic, str) or not topic:
        raise ValueError("payload has no topic")
    body = data.get("eventBody", data.get("body", MISSING))
    if body is MISSING:
        raise ValueError("payload has no eventBody/body")
    version = data.get("version")
    received = data.get("receivedAt", data.get("received_at", received_at))
    return EventView(
        topic=topic,
        body=body,
        metadata=data.get("metadata") or {},
        version=None if version is None else str(version),
        dedup_key=str(data.get("dedupKey") or data.get("dedup_key") or dedup_key),
        received_at=float(received) if isinstance(received, int | float) else received_at,
    )


def event_to_outbox_item(event: Event, mapping: Mapping) -> OutboxItem | None:
    """The outbox row for ``event``, or ``None`` when no rule takes its topic (count it as unrouted).

    ``order_key`` is the rule's key (conversation, user or queue id), so events of one record are delivered
    one at a time and in order. An event whose key is missing still gets a row (order key
    ``"unkeyed:<topic>"``) so that delivery rejects it to the dead-letter list with the reason: never a silent
    drop.
    """
    view = event_view(event)
    if mapping.rule_for(event.topic) is None:
        return None
    key = mapping.key_of(view)
    return OutboxItem(
        dedup_key=event.dedup_key,
        order_key=key if key is not None else f"unkeyed:{event.topic}",
        topic=event.topic,
        payload=payload_of(event),
        received_at=event.received_at,
    )


# ---- built-in defaults -----------------------------------------------------------------------------------

_MEDIA_ARRAYS: Final = ("calls", "callbacks", "chats", "emails", "messages", "videos", "screenshares")
_CUSTOMER: Final = "body.participants[?purpose=='customer']"
_AGENT: Final = "body.participants[?purpose=='agent']"

_CONVERSATION_STATES: Final = {
    "alerting": "work_in_progress",
    "dialing": "work_in_progress",
    "contacting": "work_in_progress",
    "offering": "work_in_progress",
    "connected": "work_in_progress",
    "disconnected": "closed_complete",
    "terminated": "closed_complete",
}
_DETAIL_STATES: Final = {
    "acd.start": "queued",
    "user.start": "work_in_progress",
    "acw": "work_in_progress",
    "customer.end": "closed_complete",
    "wrapup": "closed_complete",
}


def _media_alternatives(who: str, tail: str) -> list[str]:
    return [f"{{{who}.{media}[0].{tail}}}" for media in _MEDIA_ARRAYS]


def default_rules() -> list[MappingRule]:
    """The built-in rules, used when the config has no ``rules``.

    * ``conversations``: ``v2.routing.queues.*.conversations`` and ``v2.users.*.conversations`` into staging
      table ``u_genesys_interaction_import`` (coalesce ``u_conversation_id``): one interaction-like record per
      conversation, kept up to date through wrap-up; state from the customer's media state
      (alerting/connected -> ``work_in_progress``, disconnected/terminated -> ``closed_complete``).
    * ``conversation_details``: ``v2.detail.events.conversation.**`` into the same staging table (ANI, DNIS,
      direction, media type, queue, agent, wrap-up code/notes, state from the event type).
    * ``presence``: ``v2.users.*.presence`` and ``.routingStatus`` into ``u_genesys_presence_import``
      (coalesce ``u_user_id``).
    * ``queue_stats``: ``v2.analytics.queues.*.observations`` into ``u_genesys_queue_stats_import`` (coalesce
      ``u_queue_id``).
    """
    media_type = [f"{media[:-1]}{{{_CUSTOMER}.{media}|exists}}" for media in _MEDIA_ARRAYS]
    media_type[0] = f"voice{{{_CUSTOMER}.calls|exists}}"
    conversation = MappingRule(
        name="conversations",
        topics=["v2.routing.queues.*.conversations", "v2.users.*.conversations"],
        sink="import_set",
        target="u_genesys_interaction_import",
        key="{body.id}",
        key_field="u_conversation_id",
        fields={
            "u_short_description": FieldSpec(
                value=f"Genesys {{{_CUSTOMER}.address}} conversation {{body.id}}",
                default="Genesys conversation",
                max_length=160,
            ),
            "u_state": FieldSpec(value=_media_alternatives(_CUSTOMER, "state"), map=_CONVERSATION_STATES),
            "u_media_type": FieldSpec(value=media_type),
            "u_direction": FieldSpec(
                value=[*_media_alternatives(_CUSTOMER, "direction"), "{body.direction}"]
            ),
            "u_ani": f"{{{_CUSTOMER}.ani}}",
            "u_customer_address": f"{{{_CUSTOMER}.address}}",
            "u_dnis": FieldSpec(value=[f"{{{_CUSTOMER}.dnis}}", f"{{{_AGENT}.address}}"]),
            "u_queue_id": FieldSpec(value=[f"{{{_AGENT}.queueId}}", "{topic_parts[3]}"]),
            "u_agent_id": f"{{{_AGENT}.userId}}",
            "u_agent_name": f"{{{_AGENT}.name}}",
            "u_wrapup_code": f"{{{_AGENT}.wrapup.code}}",
            "u_wrapup_notes": FieldSpec(value=f"{{{_AGENT}.wrapup.notes}}", max_length=4000),
            "u_start_time": f"{{{_CUSTOMER}.connectedTime|datetime}}",
            "u_end_time": f"{{{_CUSTOMER}.endTime|datetime}}",
            "u_last_event": "{topic}",
            "u_received_at": "{received_at}",
        },
    )
    details = MappingRule(
        name="conversation_details",
        topics=["v2.detail.events.conversation.**"],
        sink="import_set",
        target="u_genesys_interaction_import",
        key="{body.conversationId}",
        key_field="u_conversation_id",
        fields={
            "u_state": FieldSpec(
                value=["{body.eventType}", "{topic_parts[5]}.{topic_parts[6]}", "{topic_parts[5]}"],
                map=_DETAIL_STATES,
            ),
            "u_media_type": "{body.mediaType|lower}",
            "u_direction": "{body.direction|lower}",
            "u_ani": "{body.ani}",
            "u_dnis": "{body.dnis}",
            "u_queue_id": "{body.queueId}",
            "u_agent_id": "{body.userId}",
            "u_wrapup_code": "{body.wrapupCode}",
            "u_wrapup_notes": FieldSpec(value="{body.wrapupNotes}", max_length=4000),
            "u_last_event": "{topic}",
            "u_event_time": "{body.eventTime|datetime}",
            "u_received_at": "{received_at}",
        },
    )
    presence = MappingRule(
        name="presence",
        topics=["v2.users.*.presence", "v2.users.*.routingStatus"],
        sink="import_set",
        target="u_genesys_presence_import",
        key="{topic_parts[2]}",
        key_field="u_user_id",
        fields={
            "u_presence": "{body.presenceDefinition.systemPresence}",
            "u_presence_id": "{body.presenceDefinition.id}",
            "u_presence_message": "{body.message}",
            "u_routing_status": "{body.routingStatus.status}",
            "u_changed_at": FieldSpec(
                value=["{body.modifiedDate|datetime}", "{body.routingStatus.startTime|datetime}"]
            ),
            "u_received_at": "{received_at}",
        },
    )
    metrics = ("oWaiting", "oInteracting", "oOnQueueUsers", "oOffQueueUsers", "oActiveUsers")
    queue_fields: dict[str, str | list[str] | FieldSpec] = {
        "u_media_type": "{body.group.mediaType}",
        "u_observed_at": "{received_at}",
    }
    for metric in metrics:
        column = (
            "u_" + re.sub(r"(?<!^)([A-Z])", r"_\1", metric[1:]).lower()
        )  # oOnQueueUsers -> u_on_queue_users
        queue_fields[column] = f"{{body.data[?metric=='{metric}'].stats.count}}"
    queues = MappingRule(
        name="queue_stats",
        topics=["v2.analytics.queues.*.observations"],
        sink="import_set",
        target="u_genesys_queue_stats_import",
        key="{topic_parts[3]}",
        key_field="u_queue_id",
        fields=queue_fields,
    )
    return [conversation, details, presence, queues]
