"""From Genesys events to flat ServiceNow rows: rules chosen by topic pattern, fields from expressions.

A rule (:class:`~gcbridge.bridge.mapping_rules.MappingRule`) says which topics it takes (``*`` is one topic
segment, a final ``#`` any number of them: the notification client's pattern syntax; the older final ``**``
still works and logs a deprecation warning), which sink writes them (``import_set``, ``table``, ``event``),
the key that identifies the record (a conversation, user or queue id) and how each target field is computed
(see :mod:`gcbridge.bridge.expressions`). Rules are tried in order; the first whose pattern matches wins. The
result is a :class:`~gcbridge.servicenow.rows.Row`, which is all the ServiceNow writer sees.

Everything that can be wrong with a mapping is found when :class:`MappingConfig` is validated (at start-up,
once) and raised as one :class:`MappingError` naming the rule and the field; the compiled form is
:attr:`MappingConfig.compiled`. At runtime, per event:

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

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from gcbridge import _json
from gcbridge.bridge.expressions import (
    MISSING,
    EventView,
    Expression,
    ExpressionError,
    Memo,
    Unconvertible,
    compile_expression,
    first_present,
)
from gcbridge.bridge.mapping_rules import FieldSpec, MappingRule, default_rules
from gcbridge.core.topics import segments_match
from gcbridge.genesys.events import Event
from gcbridge.outbox.base import OutboxItem
from gcbridge.servicenow.rows import SINKS, Row

__all__ = [
    "SINKS",
    "CompiledField",
    "CompiledRule",
    "FieldSpec",
    "Mapping",
    "MappingConfig",
    "MappingError",
    "MappingRule",
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

log = logging.getLogger(__name__)

_DEFAULT_KEY_FIELD: Final = {"table": "correlation_id", "event": "message_key"}
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
_TOPIC_CACHE_LIMIT: Final = 10_000


class MappingError(ValueError):
    """A mapping that cannot work; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A topic pattern as written (``source``) and in the client's syntax (``pattern``, ``#`` not ``**``)."""

    source: str
    pattern: str
    parts: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.pattern.split(".")))

    def matches(self, topic_parts: Sequence[str]) -> bool:
        """Does the topic (split at the dots) match? The client's own matcher decides."""
        return segments_match(self.parts, topic_parts)


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
    """What one event maps to: the :class:`~gcbridge.servicenow.rows.Row` for the writer, the rule that
    made it and notes for the delivery detail (fields left out or truncated)."""

    rule: CompiledRule = field(repr=False)
    row: Row
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.row.key

    @property
    def fields(self) -> dict[str, str]:
        return self.row.fields


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
        # One memo for this event: the rule's fields share sub-paths (the customer participant, found by a
        # filter, is the head of most conversation fields), each walked once per event instead of per field.
        memo: Memo = {}
        key = rule.key.evaluate(view, memo)
        if isinstance(key, Unconvertible):
            return Unmappable(f"rule {rule.name!r}: key {rule.key.source!r} cannot be computed: {key.reason}")
        if not isinstance(key, str) or not key:
            why = "is empty" if key == "" else "is missing"
            return Unmappable(f"rule {rule.name!r}: key {rule.key.source!r} {why} in this event")
        fields: dict[str, str] = {}
        notes: list[str] = []
        for spec in rule.fields:
            value, problems = first_present(spec.alternatives, view, memo)
            if problems:
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
        row = Row(rule.sink, rule.target, key, rule.key_field, fields, rule.on_transform_error)
        return Record(rule, row, tuple(notes))


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
    segments = source.split(".")
    if not source or any(not s for s in segments):
        raise MappingError(f"rule {rule!r}: topic pattern {source!r} has an empty segment")
    for i, segment in enumerate(segments):
        if segment in ("#", "**") and i != len(segments) - 1:
            raise MappingError(
                f"rule {rule!r}: topic pattern {source!r}: {segment!r} may only be the last segment"
            )
        if segment not in ("*", "#", "**") and any(c in segment for c in "*?#"):
            raise MappingError(
                f"rule {rule!r}: topic pattern {source!r}: a wildcard must be a whole segment"
                " ('*' or a final '#')"
            )
    if segments[-1] == "**":
        # The mapping's own spelling until the client's '#' became the one syntax. '**' takes one or more
        # segments and '#' any number, so '**' becomes '*.#' (the same topics as before).
        segments[-1:] = ["*", "#"]
        log.warning(
            "mapping rule %r: topic pattern %r: a final '**' is deprecated; write '%s' instead",
            rule,
            source,
            ".".join([*segments[:-2], "#"]),
        )
    return TopicPattern(source, ".".join(segments))


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


def _compile(config: MappingConfig) -> Mapping:
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


class MappingConfig(BaseModel):
    """The ordered rule list (first matching rule wins) and the row limits.

    ``rules`` defaults to :func:`~gcbridge.bridge.mapping_rules.default_rules` (``default_mapping.toml``:
    conversations, detail events, presence/routing status, queue observations into the ``u_genesys_*_import``
    staging tables);
    ``include_defaults = true`` appends the defaults after your own rules.
    ``max_row_bytes``: ServiceNow skips Import Set rows above 8126 bytes; longer rows have their longest
    non-key fields truncated with ``truncation_marker`` until they fit (the key is never truncated; a row
    whose key fields alone do not fit is rejected with the reason).

    Validating the model compiles the mapping, once: a bad rule fails at start-up with a :class:`MappingError`
    (a ``ValueError``) naming the rule and the field; :attr:`compiled` is the result that everything uses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[MappingRule] | None = None
    include_defaults: bool = False
    max_row_bytes: int = Field(default=8126, ge=256)
    truncation_marker: str = " [truncated]"
    _compiled: Mapping | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compiles(self) -> MappingConfig:
        self._compiled = _compile(self)
        return self

    @property
    def compiled(self) -> Mapping:
        """The compiled rules (compiled when the model was validated)."""
        if self._compiled is None:  # only a model built with model_construct() skips validation
            self._compiled = _compile(self)
        return self._compiled


def compile_mapping(config: MappingConfig | None = None) -> Mapping:
    """The compiled form of ``config`` (default: the built-in rules); see :attr:`MappingConfig.compiled`."""
    return (config if config is not None else MappingConfig()).compiled


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
