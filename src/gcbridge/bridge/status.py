"""The ``/status`` document, assembled from snapshots (pure: no I/O, no clock; ``now`` is passed in).

It carries states, counts and times only: never a secret, never a payload.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gcbridge.bridge.admin import readiness
from gcbridge.bridge.history import MINUTE
from gcbridge.core.topics import expand_topic
from gcbridge.outbox.base import OutboxStats

# Client channel states that mean "events flow on this shard".
LIVE_STATES = frozenset({"live", "connected", "subscribed", "open"})


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _state_name(value: Any) -> str:
    value = getattr(value, "value", value)
    return str(value).lower() if value is not None else "unknown"


def channel_rows(client_stats: Any) -> list[dict[str, Any]]:
    """One row per channel held by the client (see :meth:`NotificationClient.stats`)."""
    rows = []
    channels = _get(client_stats, "paths", None) or _get(client_stats, "channels", ()) or ()
    for ch in channels:
        state = _state_name(_get(ch, "state"))
        rows.append(
            {
                "id": _get(ch, "channel_id") or _get(ch, "id") or "",
                "shard": _get(ch, "shard", 0),
                "path": _get(ch, "path", None),
                "state": "live" if state in LIVE_STATES else state,
                "topics": _get(ch, "topic_count", None)
                if _get(ch, "topic_count", None) is not None
                else _get(ch, "topics", 0),
                "connected_since": _get(ch, "connected_since"),
                "last_frame_at": _get(ch, "last_frame_at"),
                "expires_at": _get(ch, "expires_at"),
            }
        )
    for row in rows:
        if isinstance(row["topics"], Sequence) and not isinstance(row["topics"], str):
            row["topics"] = len(row["topics"])
    return rows


def topic_count(topics: Iterable[str]) -> int:
    """How many topics ``topics`` names: a combined ``prefix?a&b`` counts as each topic it combines, as the
    client counts them on its channels, and a topic named twice counts once."""
    return len({topic for raw in topics for topic in expand_topic(raw)})


def _counts(value: Any) -> dict[str, int]:
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    return {}


def _shard_count(client_stats: Any, channels: Iterable[Mapping[str, Any]]) -> int:
    shards = _get(client_stats, "shards", None)
    if isinstance(shards, int):
        return shards
    if isinstance(shards, Sequence):
        return len(shards)
    seen = {c["shard"] for c in channels}
    return max(1, len(seen))


def build_status(
    *,
    now: float,
    state: str,
    started_at: float,
    version: str,
    endpoint: str,
    topics: int,
    client_stats: Any,
    outbox: OutboxStats | None,
    received: int,
    unrouted: int,
    gaps_count: int,
    gaps_seconds: float,
    recent_gaps: Sequence[Mapping[str, Any]],
    deliveries: Mapping[str, int],
    servicenow_reachable: bool | None,
    servicenow_last_error: str | None,
    servicenow_instance: str,
    last_event_at: float | None,
    history: Sequence[Mapping[str, Any]] = (),
    servicenow_condition: Mapping[str, Any] | None = None,
    delivery_problems: Sequence[str] = (),
) -> dict[str, Any]:
    channels = channel_rows(client_stats)
    shards = _shard_count(client_stats, channels)
    ready = readiness(channels, shards, servicenow_reachable, state, delivery_problems)
    outbox_doc = dataclasses.asdict(outbox) if outbox is not None else {}
    return {
        "state": state,
        "version": version,
        "started_at": started_at,
        "uptime": max(0.0, now - started_at),
        "now": now,
        "readiness": {"ready": ready.ready, "reasons": list(ready.reasons)},
        "genesys": {
            "endpoint": endpoint,
            "topics": topics,
            "shards": shards,
            "channels": channels,
            "events_received": _get(client_stats, "events_received", 0),
            "duplicates_dropped": _get(client_stats, "duplicates_dropped", 0),
            "loop_lag": round(float(_get(client_stats, "loop_lag", 0.0) or 0.0), 3),
            "reconnects": _counts(_get(client_stats, "reconnects_by_reason", {})),
            "rotations": _counts(_get(client_stats, "rotations_by_reason", {})),
            "token_refreshes": _get(client_stats, "token_refreshes", 0),
            "channels_created": _get(client_stats, "channels_created", 0),
            "rejected_topics": sorted(_get(client_stats, "rejected_topics", ()) or ()),
        },
        "events": {"received": received, "unrouted": unrouted, "last_at": last_event_at},
        "gaps": {
            "count": gaps_count,
            "seconds": round(gaps_seconds, 3),
            "recent": list(recent_gaps)[-20:][::-1],
        },
        "outbox": outbox_doc,
        "deliveries": dict(deliveries),
        "servicenow": {
            "instance": servicenow_instance,
            "reachable": servicenow_reachable,
            "last_error": servicenow_last_error,
            "condition": servicenow_condition,
        },
        "history": {"minute_seconds": MINUTE, "minutes": list(history)},
    }
