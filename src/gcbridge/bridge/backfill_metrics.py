"""Prometheus metrics of back-fill, on the service's registry (see :mod:`gcbridge.bridge.metrics`)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from gcbridge.core.backfill_rules import JOB_STATES


class BackfillMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs = Gauge(
            "gcbridge_backfill_jobs",
            "Back-fill jobs in the outbox database, by state.",
            ["state"],
            registry=registry,
        )
        self.events = Counter(
            "gcbridge_backfill_events",
            "Events back-fill synthesised, by result: found, written (new outbox rows), skipped (already "
            "there or older than a live row of their record), unrouted (no mapping rule).",
            ["result"],
            registry=registry,
        )
        self.attempts = Counter(
            "gcbridge_backfill_attempts",
            "Attempts of back-fill jobs, by how they ended: done, partial, retry, failed.",
            ["outcome"],
            registry=registry,
        )
        self.requests = Counter(
            "gcbridge_backfill_requests", "Genesys Cloud REST requests made by back-fill.", registry=registry
        )
        self.unfillable = Counter(
            "gcbridge_backfill_unfillable_topics",
            "Topics a back-fill could not repair (missing permission, not covered by the REST APIs).",
            registry=registry,
        )
        for state in JOB_STATES:
            self.jobs.labels(state=state).set(0)

    def set_jobs(self, counts: Mapping[str, int]) -> None:
        for state in JOB_STATES:
            self.jobs.labels(state=state).set(counts.get(state, 0))
