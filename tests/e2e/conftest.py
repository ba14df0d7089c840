"""Shared helpers of the service end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gcbridge.genesys.events import Event
from gcbridge.servicenow.mapping import compile_mapping, event_view

SN_USER = "bridge-user"
# Distinctive strings: a test greps every output of the service for them.
GENESYS_SECRET = "GSECRET-7f3a9c1e-do-not-print"
SN_PASSWORD = "SNPASS-2b8d4e6f-do-not-print"

_MAPPING = compile_mapping(None)


async def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1,
                   what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; fail with ``what`` after ``timeout`` seconds (loaded CI)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def expected_interactions(events: list[Event]) -> dict[str, dict[str, str]]:
    """Fold the mapped fields of conversation events, in order, into the state ServiceNow should hold
    (per conversation id; the transform map strips the ``u_`` prefix and maps the key to correlation_id)."""
    state: dict[str, dict[str, str]] = {}
    for event in events:
        rule = _MAPPING.rule_for(event.topic)
        if rule is None or rule.name != "conversations":
            continue
        record = _MAPPING.map_event(event_view(event))
        fields = getattr(record, "fields", None)
        if fields is None:
            continue
        target = state.setdefault(record.key, {})  # type: ignore[union-attr]
        for name, value in fields.items():
            column = "correlation_id" if name == "u_conversation_id" else name.removeprefix("u_")
            target[column] = value
    return state


def check_interactions(records: list[dict[str, str]], expected: dict[str, dict[str, str]]) -> None:
    """No missing, no duplicate records; each record's fields are the folded last state."""
    by_conversation: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_conversation.setdefault(record.get("correlation_id", ""), []).append(record)
    duplicates = {k: len(v) for k, v in by_conversation.items() if len(v) > 1}
    assert not duplicates, f"duplicate records per conversation: {duplicates}"
    missing = sorted(set(expected) - set(by_conversation))
    assert not missing, f"{len(missing)} conversations have no record, e.g. {missing[:3]}"
    unexpected = sorted(set(by_conversation) - set(expected))
    assert not unexpected, f"records for conversations never sent: {unexpected[:3]}"
    wrong = []
    for conversation, fields in expected.items():
        record = by_conversation[conversation][0]
        for column, value in fields.items():
            if column in record and record[column] != value:
                wrong.append((conversation, column, record[column], value))
    assert not wrong, f"{len(wrong)} fields differ from the last event's, e.g. {wrong[:3]}"
