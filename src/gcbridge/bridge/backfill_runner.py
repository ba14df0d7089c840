"""Back-fill in the service: every gap becomes a durable job; one job at a time repairs it into the outbox.

::

    gap (client, downtime, failover, by hand) --enqueue_gap--> backfill_jobs (outbox database)
         --due after gap.end + delay--> filler.fill(gap) --events--> mapping --put_unless_newer--> outbox

The decisions (when a job is due, the backoff after a failure, which state an outcome makes) are pure, in
:mod:`gcbridge.core.backfill_rules`; this module is the shell that runs them. A job is started (``running``,
one attempt counted) before its first request; a process that dies meanwhile leaves it ``running``, and
:meth:`BackfillRunner.start` makes it pending again: the repeated run is harmless, since synthesised events
de-duplicate by key in the outbox.

Several instances on one PostgreSQL outbox each run such a loop over the shared table. A job is claimed
atomically (one runner gets it) and held under a lease that the runner renews while it runs; a running job
is taken back only when its lease lapsed (its owner died; every loop looks, every half lease) or by its own
owner at start. A run whose lease was taken over meanwhile stops at its next renewal and leaves the job to
the instance that took it.

Synthesised events take the same path as live ones (the mapping's order key: the conversation, user or queue
id), but through :meth:`put_unless_newer`: a back-filled state read at ``T`` is not stored when a row of its
record was received after ``T``, so it never overwrites a newer live state.

Each finished attempt is recorded in the gap journal (a ``backfill`` line naming the gap), counted in the
metrics, logged in one line (with ``what_to_do`` when partial, retried or failed), and shown on ``/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.gaps import GapLog
from gcbridge.bridge.mapping import Mapping, event_to_outbox_item
from gcbridge.core.backfill_rules import RetryPolicy, first_run_at, settle_error, settle_run
from gcbridge.genesys.events import Event, Gap
from gcbridge.outbox.backfill_jobs import (
    MANUAL,
    BackfillJob,
    BackfillJobStore,
    GuardedPut,
    JobGap,
    JobOutcome,
    Unfilled,
)
from gcbridge.outbox.base import OutboxItem

__all__ = ["BackfillRunner", "BackfillSettings", "FillRun", "Filler", "job_gap"]

WRITE_BATCH: Final = 200
"""Synthesised events per outbox write (one transaction each)."""
IDLE_WAKE: Final = 5.0
"""Seconds the idle loop sleeps at most between looks at the job table (a job enqueued elsewhere, a clock
that jumped)."""
RECENT_SHOWN: Final = 10
KEEP_FINISHED: Final = 30 * 86400.0
"""Seconds a finished job stays in the job table (its outcome is in the gap journal for good)."""
FORGET_EVERY: Final = 3600.0
RENEW_FRACTION: Final = 1 / 3
"""A running job's lease is renewed every third of it: two renewals may fail (a slow database) before it
lapses."""
READ_SLACK: Final = 1.0
"""Seconds a back-filled state counts as read *before* its ``read_at``. The library stamps ``read_at`` when
it sent the request (the server read the state then or later), and a live row received after that may be
newer than the answer, so the guarded put drops the back-filled state instead; dropping is safe while the
live stream runs (anything newer arrives live too; a new gap gets its own job). The second covers a
wall-clock step between the two stamps."""


class FillRun(Protocol):
    """One back-fill of one gap: an async iterator of events and unfillable topic families, with a report
    complete when the iteration ends (``gcbridge.genesys.BackfillRun``)."""

    report: Any

    def __aiter__(self) -> AsyncIterator[Any]: ...


class Filler(Protocol):
    """What repairs a gap (``gcbridge.genesys.Backfiller``)."""

    def fill(self, gap: Gap) -> FillRun: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BackfillSettings:
    enabled: bool = True
    delay: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def job_gap(gap: Gap) -> JobGap:
    return JobGap(gap.start, gap.end, tuple(gap.topics), gap.reason, gap.detail)


def _gap_of(job: BackfillJob) -> Gap:
    g = job.gap
    return Gap(start=g.start, end=g.end, topics=g.topics, reason=g.reason, detail=g.detail)


async def _close_run(run: FillRun) -> None:
    close = getattr(run, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def record_state(topic: str) -> str:
    """Which state of a ServiceNow record ``topic`` carries, for the guarded put. Every topic of a
    conversation (queue, user, detail events) carries the conversation, so a newer live one blocks an older
    back-filled one whatever its topic; a user's presence and routing status are different fields of one
    record (one order key), so a live routing status must not block a back-filled presence."""
    if ".conversations" in topic or topic.startswith("v2.detail.events."):
        return "conversation"
    return topic.rsplit(".", 1)[-1]


class BackfillRunner:
    """Runs the back-fill jobs of one outbox database. ``await start()`` (recovers and starts the loop),
    :meth:`enqueue_gap` for every gap, ``await stop()`` at the end."""

    def __init__(
        self,
        jobs: BackfillJobStore,
        outbox: GuardedPut,
        filler: Filler,
        mapping: Mapping,
        journal: GapLog,
        metrics: BackfillMetrics,
        log: Any,
        *,
        settings: BackfillSettings = BackfillSettings(),
        clock: Callable[[], float] = time.time,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.jobs = jobs
        self._outbox = outbox
        self._filler = filler
        self._mapping = mapping
        self._journal = journal
        self.metrics = metrics
        self._log = log
        self.settings = settings
        self._clock = clock
        self._on_written = on_written
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._finished: dict[int, asyncio.Event] = {}
        self.running_job: int | None = None
        self._counts: dict[str, int] = {}
        self._recent: list[dict[str, Any]] = []
        self.recovered = 0
        self._forgotten_at = float("-inf")
        self._recovered_at = float("-inf")
        self._failing_since: float | None = None

    # -- entry points --------------------------------------------------------------------------------------

    async def enqueue_gap(self, gap: Gap) -> BackfillJob | None:
        """A durable job for ``gap`` (once per gap; socket gaps, downtime, failovers and by-hand requests
        all come through here). ``None`` when back-fill is off or the gap names no topic."""
        if not self.settings.enabled or not gap.topics:
            return None
        now = self._clock()
        job, new = await self.jobs.enqueue(job_gap(gap), first_run_at(gap.end, self.settings.delay), now)
        if new:
            self._log.info(
                "back-fill job queued",
                job=job.id,
                reason=gap.reason,
                start=gap.start,
                end=gap.end,
                topics=len(gap.topics),
                due_in=round(max(0.0, job.next_at - now), 1),
            )
        self._wake.set()
        return job

    async def run_by_hand(
        self, start: float, end: float, topics: Sequence[str], *, here: bool = False
    ) -> BackfillJob:
        """Queue a job for ``start``..``end`` on ``topics``, due at once; wait for its first attempt to end.
        In a running service the loop runs it (so the one-at-a-time rule holds); ``here``: run it in this
        call (``gcbridge backfill`` without a running service, where no loop runs)."""
        now = self._clock()
        request = uuid.uuid4().hex[:8]  # each request is a job of its own, even two in one millisecond
        gap = JobGap(start, end, tuple(topics), MANUAL, f"asked for by hand at {now:.3f} ({request})")
        job, _ = await self.jobs.enqueue(gap, now, now)
        if here:
            await self.attempt(job)
            final = await self.jobs.get(job.id)
            assert final is not None
            return final
        done = self._finished.setdefault(job.id, asyncio.Event())
        self._wake.set()
        await done.wait()
        self._finished.pop(job.id, None)
        final = await self.jobs.get(job.id)
        assert final is not None
        return final

    async def start(self) -> None:
        """Take back jobs a dead process left running (this owner's, and any whose lease lapsed), then run
        due jobs until :meth:`stop` (and forget jobs finished long ago, at start and hourly)."""
        self.recovered = await self.jobs.recover(self._clock())
        self._recovered_at = asyncio.get_running_loop().time()
        if self.recovered:
            self._log.warning(
                "back-fill jobs left running by the previous run are queued again",
                jobs=self.recovered,
                owner=self.jobs.owner,
                what_to_do="nothing: they run again, and the outbox drops events it already has",
            )
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="gcbridge-backfill")

    async def stop(self) -> None:
        """Stop the loop. A job interrupted here stays ``running`` and runs again at the next start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """:meth:`stop`, then close the filler (its token manager and session)."""
        await self.stop()
        with contextlib.suppress(Exception):
            await self._filler.aclose()

    def wake(self) -> None:
        self._wake.set()

    # -- status --------------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read job counts and the recent jobs for ``/status`` and the gauges (the last figures stay when the
        database does not answer: the outbox's own status says why)."""
        with contextlib.suppress(Exception):
            self._counts = await self.jobs.counts()
            self._recent = [j.document() for j in await self.jobs.recent(RECENT_SHOWN)]
            self.metrics.set_jobs(self._counts)

    def status_doc(self) -> dict[str, Any]:
        return {
            "enabled": self.settings.enabled,
            "delay": self.settings.delay,
            "jobs": dict(self._counts),
            "running": self.running_job,
            "recent": list(self._recent),
        }

    # -- the loop ------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self._clock()
            try:
                if now - self._forgotten_at >= FORGET_EVERY:
                    self._forgotten_at = now
                    await self.jobs.forget_finished(now - KEEP_FINISHED)
                # leases lapse in real time (the database clock), whatever the injected clock says
                if loop.time() - self._recovered_at >= self.jobs.lease / 2:
                    self._recovered_at = loop.time()
                    await self._recover_lapsed(now)
                claimed = await self.jobs.claim(now)
                if claimed is not None:
                    await self._run(claimed)
                    continue
                next_at = await self.jobs.next_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # one line per outage (a database restart fails every pass until it is back)
                if self._failing_since is None:
                    self._failing_since = loop.time()
                    self._log.error(
                        "back-fill could not read or update its jobs",
                        error=_one_line(exc),
                        what_to_do="check the outbox database (disk, PostgreSQL); back-fill resumes by "
                        "itself, and a job left running is taken up again",
                    )
                else:
                    self._log.debug("back-fill could not read or update its jobs", error=_one_line(exc))
                next_at = None
            else:
                if self._failing_since is not None:
                    self._log.info(
                        "back-fill reads and updates its jobs again",
                        after=round(loop.time() - self._failing_since, 1),
                    )
                    self._failing_since = None
            wait = IDLE_WAKE if next_at is None else min(IDLE_WAKE, max(0.0, next_at - now))
            # wake for the next look at lapsed leases too (a short [ha] lease_ttl)
            wait = min(wait, max(0.0, self._recovered_at + self.jobs.lease / 2 - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _recover_lapsed(self, now: float) -> None:
        """Between jobs: take back running jobs whose owner stopped renewing them (it died, or lost the
        database for longer than the lease)."""
        taken = await self.jobs.recover(now)
        if taken:
            self._log.warning(
                "back-fill jobs whose runner stopped renewing them are queued again",
                jobs=taken,
                what_to_do="nothing: an instance died or lost the database while running them; they run "
                "again here or on another instance, and the outbox drops events it already has",
            )
            await self.refresh()

    async def attempt(self, job: BackfillJob) -> BackfillJob | None:
        """One attempt of ``job`` (pending and due): run the filler, write what it found, settle the job.
        ``None`` when another runner took the job first."""
        started = await self.jobs.start(job.id, self._clock())
        if started is None:
            return None
        return await self._run(started)

    async def _run(self, started: BackfillJob) -> BackfillJob | None:
        """Run a job this runner started, renewing its lease meanwhile, and settle it; ``None`` when its
        lease was taken over meanwhile (the job is then another runner's)."""
        job = started
        self.running_job = job.id
        self._log.info(
            "back-fill job running",
            job=job.id,
            reason=job.gap.reason,
            attempt=started.attempts,
            topics=len(job.gap.topics),
        )
        lost = asyncio.Event()
        fill = asyncio.create_task(self._fill(started), name=f"gcbridge-backfill-{job.id}")
        keeper = asyncio.create_task(self._keep_lease(job.id, fill, lost), name="gcbridge-backfill-lease")
        try:
            outcome, error = await fill
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not lost.is_set() or (current is not None and current.cancelling()):
                raise  # stopped from outside (the service stops): the job stays running, for a recovery
            return await self._given_up(job.id, "its lease was taken over while it ran")
        finally:
            self.running_job = None
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        now = self._clock()
        if error is None:
            settlement = settle_run(len(outcome.unfillable), len(outcome.errors))
        else:
            settlement = settle_error(started.attempts, now, self.settings.retry)
        if not await self.jobs.finish(job.id, settlement.state, outcome, now, settlement.next_at):
            return await self._given_up(job.id, "its lease was taken over before it finished")
        final = await self.jobs.get(job.id)
        assert final is not None
        await self._report(final, retried=error is not None and settlement.state == "pending")
        self._signal_finished(job.id)
        return final

    async def _keep_lease(self, job_id: int, fill: asyncio.Task[Any], lost: asyncio.Event) -> None:
        """Renew the running job's lease; when a renewal finds it another runner's, stop the run. A renewal
        that fails (the database is away) is tried again: the run goes on meanwhile."""
        every = self.jobs.lease * RENEW_FRACTION
        while True:
            await asyncio.sleep(every)
            try:
                held = await self.jobs.renew(job_id)
            except Exception:  # noqa: S112 - the run goes on; if the lease lapses, a renewal says so later
                continue
            if not held:
                lost.set()
                fill.cancel()
                return

    async def _given_up(self, job_id: int, why: str) -> BackfillJob | None:
        """A run that is no longer this runner's: another one took the job back after its lease lapsed and
        runs it, counts it and reports its outcome; this run's events stay (the outbox de-duplicates)."""
        self._log.warning(
            "back-fill run stopped: another instance runs this job now",
            job=job_id,
            why=why,
            owner=self.jobs.owner,
            what_to_do="nothing, if this instance lost the database for a while: the job runs once more "
            "elsewhere; if it recurs without a database outage, raise [ha] lease_ttl",
        )
        self._signal_finished(job_id)
        await self.refresh()
        return None

    def _signal_finished(self, job_id: int) -> None:
        event = self._finished.get(job_id)
        if event is not None:
            event.set()

    async def _fill(self, job: BackfillJob) -> tuple[JobOutcome, str | None]:
        found = written = unrouted = unmapped = 0
        unfillable: list[Unfilled] = []
        errors: list[str] = []
        batch: list[OutboxItem] = []
        # every row received after a state was read is stored after this id: the guarded put scans only those
        floor = await self._outbox.last_id()
        run = self._filler.fill(_gap_of(job))

        async def flush() -> None:
            nonlocal written
            if batch:
                written += await self._outbox.put_unless_newer(batch, after_id=floor, state_of=record_state)
                batch.clear()
                self._on_written()

        error: str | None = None
        try:
            async for item in run:
                if isinstance(item, Event):
                    found += 1
                    try:
                        row = event_to_outbox_item(item, self._mapping)
                    except Exception as exc:
                        errors.append(f"{item.topic}: mapping failed: {_one_line(exc)}")
                        unmapped += 1
                        continue
                    if row is None:
                        unrouted += 1
                        continue
                    batch.append(dataclasses.replace(row, received_at=row.received_at - READ_SLACK))
                    if len(batch) >= WRITE_BATCH:
                        await flush()
                else:
                    unfillable.append(Unfilled(tuple(item.topics), str(item.reason)))
            await flush()
        except asyncio.CancelledError:
            await _close_run(run)  # its open request and generator go with it (the job stays running)
            raise
        except Exception as exc:
            error = _one_line(exc)
            with contextlib.suppress(Exception):
                await flush()  # what was found before the failure is as good as after a retry
        report = getattr(run, "report", None)
        errors.extend(str(e) for e in (getattr(report, "errors", None) or ()))
        mapped = found - unrouted - unmapped
        outcome = JobOutcome(
            events_found=found,
            events_written=written,
            events_skipped=max(0, mapped - written),
            events_unrouted=unrouted,
            requests=int(getattr(report, "requests", 0) or 0),
            conversations=int(getattr(report, "conversations", 0) or 0),
            unfillable=tuple(unfillable),
            errors=tuple(errors),
            last_error=error,
        )
        return outcome, error

    async def _report(self, job: BackfillJob, *, retried: bool) -> None:
        o = job.outcome
        m = self.metrics
        m.events.labels(result="found").inc(o.events_found)
        m.events.labels(result="written").inc(o.events_written)
        m.events.labels(result="skipped").inc(o.events_skipped)
        m.events.labels(result="unrouted").inc(o.events_unrouted)
        m.requests.inc(o.requests)
        m.unfillable.inc(sum(len(u.topics) for u in o.unfillable))
        m.attempts.labels(outcome="retry" if retried else job.state).inc()
        doc = job.document()
        gap = {"start": job.gap.start, "end": job.gap.end, "reason": job.gap.reason}
        try:
            await self._journal.record_backfill(gap, doc, self._clock())
        except OSError as exc:
            self._log.warning(
                "back-fill outcome not written to the gap journal",
                job=job.id,
                error=_one_line(exc),
                what_to_do="check the disk that holds the gap journal; /status still shows the job",
            )
        fields: dict[str, Any] = {
            "job": job.id,
            "state": job.state,
            "reason": job.gap.reason,
            "start": job.gap.start,
            "end": job.gap.end,
            "attempts": job.attempts,
            "events_found": o.events_found,
            "events_written": o.events_written,
            "events_skipped": o.events_skipped,
            "requests": o.requests,
        }
        if job.state == "done":
            self._log.info("back-fill job done", **fields)
        elif job.state == "partial":
            self._log.warning(
                "back-fill job partial: some topics could not be repaired",
                **fields,
                unfillable=[{"topics": len(u.topics), "reason": u.reason} for u in o.unfillable],
                errors=list(o.errors[:5]),
                what_to_do="grant the missing permissions (`gcbridge check` lists them) and run "
                "`gcbridge backfill --from ... --to ...` for this interval, or repair these records by hand",
            )
        elif retried:
            self._log.warning(
                "back-fill attempt failed; retrying later",
                **fields,
                error=o.last_error,
                retry_at=job.next_at,
                what_to_do="nothing if it passes on a later attempt; if it keeps failing, check that the "
                "Genesys Cloud REST API answers (`gcbridge check`)",
            )
        else:
            self._log.error(
                "back-fill job failed",
                **fields,
                error=o.last_error,
                what_to_do="the gap stays unrepaired: fix the cause (`gcbridge check`), then run "
                "`gcbridge backfill --from ... --to ...` for this interval",
            )
        await self.refresh()
