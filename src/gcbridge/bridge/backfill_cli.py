"""``gcbridge backfill``: one back-fill job by hand, run here or by the running service.

The command (in :mod:`gcbridge.bridge.cli`) decides where the job runs; this module parses the times, runs a
job in this process when no service holds the outbox, and turns a job's document into lines for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gcbridge._logs import get_logger
from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.backfill_runner import Filler
from gcbridge.bridge.backfill_setup import open_backfill, single_topics
from gcbridge.bridge.config import BridgeConfig
from gcbridge.bridge.gaps import GapJournal, GapLog
from gcbridge.bridge.gaps_pg import PgGapJournal
from gcbridge.bridge.outbox_choice import open_outbox

__all__ = ["exit_code", "outcome_lines", "parse_when", "run_here"]

log = get_logger(__name__)


def parse_when(text: str, option: str) -> float:
    """UNIX seconds from an ISO-8601 time (``2026-12-04T10:00:00Z``; without a zone it is UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{option} {text!r} is not an ISO-8601 time; write it like 2026-12-04T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def run_here(
    config: BridgeConfig,
    start: float,
    end: float,
    topics: Sequence[str] | None,
    *,
    filler: Filler | None = None,
) -> dict[str, Any]:
    """Run one job in this process on the configured outbox (raises ``OutboxLockedError`` when a running
    service holds a SQLite outbox). The events stay in the outbox: the service delivers them when it runs."""
    from gcbridge.bridge.backfill_source import build_backfiller
    from gcbridge.bridge.ha import default_instance_id
    from gcbridge.bridge.mapping import compile_mapping

    outbox = await open_outbox(config.outbox)
    journal: GapLog = GapJournal(config.outbox.gap_log_path)
    try:
        if config.outbox.url is not None:  # the journal lives beside a PostgreSQL outbox
            journal = await PgGapJournal.open(
                config.outbox.url.get_secret_value(), recorded_by="gcbridge backfill", alive_name=None
            )
        runner = await open_backfill(
            config.backfill,
            outbox,
            filler if filler is not None else build_backfiller(config),
            compile_mapping(config.servicenow.mapping),
            journal,
            BackfillMetrics(_registry()),
            log,
            # an owner of its own: a service sharing the database never takes this run for one of its own
            owner=f"gcbridge backfill {default_instance_id()}",
        )
        try:
            chosen = single_topics(topics if topics else config.genesys.topics)
            job = await runner.run_by_hand(start, end, chosen, here=True)
        finally:
            await runner.close()
        return job.document()
    finally:
        if isinstance(journal, PgGapJournal):
            await journal.close()
        await outbox.close()


def _registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def _utc(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome_lines(doc: dict[str, Any], *, by_service: bool) -> list[str]:
    """What a person reads after ``gcbridge backfill`` (pure)."""
    lines = [
        f"back-fill job {doc.get('id')}: {doc.get('state')}  "
        f"({_utc(doc.get('start'))} .. {_utc(doc.get('end'))}, "
        f"{doc.get('topics')} topics, attempt {doc.get('attempts')})",
        f"events found {doc.get('events_found', 0)}   written {doc.get('events_written', 0)}   "
        f"skipped {doc.get('events_skipped', 0)} (already in the outbox, or older than a live event)   "
        f"unrouted {doc.get('events_unrouted', 0)}   REST requests {doc.get('requests', 0)}",
    ]
    for u in doc.get("unfillable") or []:
        sample = ", ".join(u.get("topics", [])[:3])
        lines.append(f"not repaired: {u.get('count')} topics ({sample}, ...): {u.get('reason')}")
    for error in doc.get("errors") or []:
        lines.append(f"error: {error}")
    if doc.get("last_error"):
        lines.append(f"failed: {doc['last_error']}")
    state = doc.get("state")
    if state == "pending":
        lines.append(
            f"the job is retried at {_utc(doc.get('next_at'))}" + ("" if by_service else " by the service")
        )
    written = doc.get("events_written", 0)
    if written and not by_service:
        lines.append(f"{written} events wait in the outbox; the service delivers them when it runs")
    return lines


def exit_code(doc: dict[str, Any]) -> int:
    """0 when the job is done, 1 otherwise (partial, failed, or waiting for a retry)."""
    return 0 if doc.get("state") == "done" else 1
