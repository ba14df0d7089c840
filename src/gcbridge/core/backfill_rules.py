"""When a back-fill job runs, how long it waits after a failure, and what its outcome makes of it (pure).

A job is born ``pending`` and due at ``gap.end + delay`` (analytics data lags the live stream a little). A
runner takes a due job to ``running`` (one attempt counted); the run ends in one of:

* ``done``: every topic of the gap was back-filled and no request failed;
* ``partial``: the run finished, but some topic families could not be back-filled (a missing permission, a
  family the REST APIs do not cover) or some items failed: those stay open for a person;
* back to ``pending`` with a later ``next_at`` after an error, until ``max_attempts`` errors made it
  ``failed``.

A job ``running`` when its process died is ``pending`` again at the next start (its run is repeated; that is
harmless because the outbox de-duplicates events by key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "FINISHED",
    "JOB_STATES",
    "JobState",
    "RetryPolicy",
    "Settlement",
    "first_run_at",
    "settle_error",
    "settle_run",
]

JobState = Literal["pending", "running", "done", "partial", "failed"]
JOB_STATES: Final[tuple[JobState, ...]] = ("pending", "running", "done", "partial", "failed")
FINISHED: Final[frozenset[str]] = frozenset({"done", "partial", "failed"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays between attempts of a failing job: ``initial * 2**(n-1)`` after the n-th error, at most
    ``cap``; after ``max_attempts`` errors the job is ``failed``. Seconds."""

    initial: float = 60.0
    cap: float = 1800.0
    max_attempts: int = 6

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap < self.initial or self.max_attempts < 1:
            raise ValueError("RetryPolicy needs initial > 0, cap >= initial and max_attempts >= 1")

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt (1-based)."""
        return min(self.cap, self.initial * 2.0 ** max(0, min(attempts - 1, 60)))


@dataclass(frozen=True, slots=True)
class Settlement:
    """Where a job goes after an attempt: its state and, for ``pending``, when it is due again."""

    state: JobState
    next_at: float | None = None


def first_run_at(gap_end: float, delay: float) -> float:
    """When a new job for a gap that ended at ``gap_end`` is first due: ``delay`` after the gap's end (a gap
    found late is due at once, and older gaps go first)."""
    return gap_end + delay


def settle_run(unfillable: int, errors: int) -> Settlement:
    """A run that finished: ``done`` when everything was back-filled, else ``partial`` (never retried: what
    was missing will be missing again; the reasons are in the outcome for a person)."""
    return Settlement("partial" if unfillable or errors else "done")


def settle_error(attempts: int, now: float, policy: RetryPolicy) -> Settlement:
    """A run that raised after ``attempts`` attempts: retried later with backoff, or ``failed`` when the
    attempts are used up."""
    if attempts >= policy.max_attempts:
        return Settlement("failed")
    return Settlement("pending", now + policy.delay(attempts))
