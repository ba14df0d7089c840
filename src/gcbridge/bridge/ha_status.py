"""The ``ha`` part of ``/status`` (pure: snapshots in, a JSON-ready dict out; no I/O, no clock).

For an instance with ``[ha]``: this instance (id, role ``owner`` or ``standby``, the shards it holds at which
epoch), the live instances (heartbeat age, channels), every shard's owner, epoch and seconds until its lease
expires (by the database clock of the last snapshot), the hot standby paths (live since, last frame read,
whether they still publish), and the last failovers (shards taken over from an instance that stopped
renewing, or released on a drain without a taker) with the gap each left, if any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gcbridge.core.standby_cover import CoverSpan

__all__ = ["Failover", "ha_document"]

RECENT_FAILOVERS = 20


@dataclass(frozen=True, slots=True)
class Failover:
    """A shard taken over without a handoff (its owner stopped renewing, or released it)."""

    at: float
    shard: int
    previous_owner: str | None
    epoch: int
    gap_seconds: float | None  # None: no gap journalled when taken (none, or a standby may cover it)


def ha_document(
    *,
    instance_id: str,
    standby: bool,
    owned: Mapping[int, int],
    snapshot: Any,
    failovers: Iterable[Failover],
    standby_spans: Sequence[CoverSpan],
    standby_now: float | None,
    standby_fresh: float,
) -> dict[str, Any]:
    """``snapshot``: the coordinator's last :class:`~gcbridge.outbox.pg_leases.Snapshot` (or ``None``);
    ``standby_now``: the database time ``standby_spans`` were read at."""
    now = getattr(snapshot, "now", None)
    leases = getattr(snapshot, "leases", {}) or {}
    members = getattr(snapshot, "members", []) or []
    latest: dict[str, CoverSpan] = {}
    for span in standby_spans:
        if span.instance not in latest or span.since >= latest[span.instance].since:
            latest[span.instance] = span
    return {
        "instance_id": instance_id,
        "role": "standby" if standby else "owner",
        "owned": {str(s): e for s, e in sorted(owned.items())},
        "snapshot_at": now,
        "instances": [
            {
                "id": m.id,
                "state": m.state,
                "heartbeat_age": None if now is None else round(max(0.0, now - m.heartbeat_at), 3),
                "channel_budget": m.channel_budget,
                "channels_in_use": m.channels_in_use,
                "shards": sorted(s for s, lease in leases.items() if lease.owner == m.id),
            }
            for m in members
        ],
        "shards": [
            {
                "shard": s,
                "owner": lease.owner if now is None or lease.held(now) else None,
                "epoch": lease.epoch,
                "expires_in": None if now is None else round(lease.expires_at - now, 3),
                "handoff_to": lease.handoff_to,
            }
            for s, lease in sorted(leases.items())
        ],
        "standby_paths": [
            {
                "instance": span.instance,
                "since": span.since,
                "seen": span.seen,
                "live": standby_now is not None and span.updated_at >= standby_now - standby_fresh,
                "topics": len(span.topics),
            }
            for span in sorted(latest.values(), key=lambda s: s.instance)
        ],
        "failovers": [
            {
                "at": f.at,
                "shard": f.shard,
                "previous_owner": f.previous_owner,
                "epoch": f.epoch,
                "gap_seconds": f.gap_seconds,
            }
            for f in list(failovers)[-RECENT_FAILOVERS:][::-1]
        ],
    }
