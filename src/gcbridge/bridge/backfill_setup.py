"""Back-fill as the service and ``gcbridge backfill`` set it up: the job store of the configured outbox, the
runner's settings from ``[backfill]``, and the topics a by-hand request covers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.backfill_runner import BackfillRunner, BackfillSettings, Filler
from gcbridge.bridge.config import BackfillConfig
from gcbridge.bridge.gaps import GapLog
from gcbridge.bridge.mapping import Mapping
from gcbridge.bridge.outbox_choice import OpenOutbox
from gcbridge.core.backfill_rules import RetryPolicy
from gcbridge.core.topics import expand_topic
from gcbridge.outbox.backfill_jobs import BackfillJobStore
from gcbridge.outbox.backfill_postgres import DEFAULT_LEASE, PostgresBackfillJobs
from gcbridge.outbox.backfill_sqlite import SqliteBackfillJobs
from gcbridge.outbox.sqlite import SqliteOutbox

__all__ = ["backfill_settings", "open_backfill", "open_jobs", "single_topics"]


def backfill_settings(cfg: BackfillConfig) -> BackfillSettings:
    return BackfillSettings(
        enabled=cfg.enabled,
        delay=cfg.delay,
        retry=RetryPolicy(
            initial=cfg.retry_initial,
            cap=max(cfg.retry_max, cfg.retry_initial),
            max_attempts=cfg.max_attempts,
        ),
    )


async def open_jobs(
    outbox: OpenOutbox, *, owner: str = "single", lease: float = DEFAULT_LEASE
) -> BackfillJobStore:
    """The job table in ``outbox``'s database, run as ``owner`` (each instance sharing a PostgreSQL outbox
    needs its own: its instance id) holding a running job for ``lease`` seconds between renewals."""
    if isinstance(outbox, SqliteOutbox):
        return await SqliteBackfillJobs.open(outbox, owner=owner)
    return await PostgresBackfillJobs.open(outbox, owner=owner, lease=lease)


def single_topics(topics: Sequence[str]) -> tuple[str, ...]:
    """The single topics ``topics`` names (a combined ``prefix?a&b`` is each of them), without repeats."""
    return tuple(dict.fromkeys(t for raw in topics for t in expand_topic(raw)))


async def open_backfill(
    cfg: BackfillConfig,
    outbox: OpenOutbox,
    filler: Filler,
    mapping: Mapping,
    journal: GapLog,
    metrics: BackfillMetrics,
    log: Any,
    *,
    clock: Callable[[], float] = time.time,
    on_written: Callable[[], None] = lambda: None,
    owner: str = "single",
    lease: float = DEFAULT_LEASE,
) -> BackfillRunner:
    """A runner for ``outbox``'s jobs (not started: call ``start()``) as ``owner``; see :func:`open_jobs`."""
    return BackfillRunner(
        await open_jobs(outbox, owner=owner, lease=lease),
        outbox,
        filler,
        mapping,
        journal,
        metrics,
        log,
        settings=backfill_settings(cfg),
        clock=clock,
        on_written=on_written,
    )
