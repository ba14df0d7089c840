"""Event Management ``/api/global/em/jsonv2``: events into ``em_event``, de-duplicated by ``message_key``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from .store import RecordStore, to_field_string

EM_TABLE: Final = "em_event"
_DEFAULT_KEY_PARTS: Final = ("source", "node", "type", "resource", "metric_name")


def message_key(event: Mapping[str, str]) -> str:
    """The event's ``message_key``, or the documented default ``source+node+type+resource+metric_name``."""
    return event.get("message_key") or "".join(event.get(part, "") for part in _DEFAULT_KEY_PARTS)


def ingest_events(store: RecordStore, events: Sequence[Mapping[str, Any]], user: str, now: float) -> int:
    """Insert each event, or update the ``em_event`` row with the same ``message_key``; returns the count."""
    for raw in events:
        event = {k: to_field_string(v) for k, v in raw.items()}
        event["message_key"] = message_key(event)
        event.setdefault("state", "Ready")
        key = event["message_key"]
        existing = next(
            (r for r in store.find_casefolded(EM_TABLE, "message_key", key) if r["message_key"] == key), None
        )
        if existing is None:
            store.insert(EM_TABLE, event, user, now)
        else:
            store.update(EM_TABLE, existing["sys_id"], event, user, now)
    return len(events)


def em_response(count: int) -> dict[str, Any]:
    return {"result": {"Default Bulk Endpoint": f"{count} events were inserted"}}
