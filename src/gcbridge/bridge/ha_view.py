"""What the service shows about several instances: the ``ha`` part of ``/status`` and the ``gcbridge_ha_*``
metrics, refreshed with the service's other gauges (a thin shell over :func:`ha_status.ha_document`)."""

from __future__ import annotations

import contextlib
from typing import Any, Final

from gcbridge.bridge.ha import HaCoordinator
from gcbridge.bridge.ha_status import ha_document
from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.bridge.standby import StandbyPublisher
from gcbridge.core.standby_cover import CoverSpan
from gcbridge.outbox.pg_standby import STANDBY_FRESH, StandbyCoverageStore

__all__ = ["HaView"]

SPANS_EVERY: Final = 2.0
"""Seconds between two reads of the standby coverage table (one small query)."""


class HaView:
    def __init__(
        self,
        metrics: BridgeMetrics,
        *,
        instance_id: str,
        coordinator: HaCoordinator | None,
        standby: StandbyPublisher | None,
        coverage: StandbyCoverageStore,
    ) -> None:
        self.instance_id = instance_id
        self._metrics = metrics
        self._ha = coordinator
        self._standby = standby
        self._coverage = coverage
        self._spans: list[CoverSpan] = []
        self._spans_now: float | None = None
        self._next_spans = 0.0
        self._counted = {"failovers": 0, "round_failures": 0}
        metrics.add_ha()

    async def refresh(self, now: float) -> None:
        """Gauges and counters from the coordinator; the standby table every :data:`SPANS_EVERY` seconds.
        A database that does not answer leaves the last values (the outbox outage is said elsewhere)."""
        ha, m = self._ha, self._metrics
        if ha is not None:
            m.ha_shards_owned.set(len(ha.owned))
            snap = ha.last_snapshot
            if snap is not None:
                m.ha_instances.set(len(snap.members))
            for name, counter in (
                ("failovers", m.ha_failovers),
                ("round_failures", m.ha_lease_renew_failures),
            ):
                value = ha.failover_count if name == "failovers" else ha.round_failures
                if value > self._counted[name]:
                    counter.inc(value - self._counted[name])
                    self._counted[name] = value
        if now >= self._next_spans:
            self._next_spans = now + SPANS_EVERY
            with contextlib.suppress(Exception):  # shown stale until the database answers again
                self._spans_now, self._spans = await self._coverage.spans()
            live = {
                s.instance
                for s in self._spans
                if self._spans_now and s.updated_at >= self._spans_now - STANDBY_FRESH
            }
            m.ha_standby_paths_live.set(len(live))

    def document(self) -> dict[str, Any]:
        ha = self._ha
        return ha_document(
            instance_id=self.instance_id,
            standby=self._standby is not None,
            owned=dict(ha.owned) if ha is not None else {},
            snapshot=ha.last_snapshot if ha is not None else None,
            failovers=list(ha.failovers) if ha is not None else [],
            standby_spans=self._spans,
            standby_now=self._spans_now,
            standby_fresh=STANDBY_FRESH,
        )
