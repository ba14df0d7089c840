"""What to do with a row after its delivery attempt: the pure decision behind the dispatcher.

``decide(outcome, attempts=..., now=...)`` turns a sink's :data:`~gcbridge.outbox.base.Outcome` into one
store action: :class:`Ack`, :class:`Reschedule` (with the absolute time of the next attempt) or :class:`Bury`
(dead-letter with a reason). The delay comes from :class:`gcbridge.core.backoff.Backoff`, seeded with the
attempts already stored for the row, so the backoff survives restarts and never lives in memory.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from gcbridge.core.backoff import Backoff, BackoffPolicy
from gcbridge.outbox.base import Delivered, Outcome, Reject, Retry

__all__ = ["DEFAULT_BACKOFF", "DEFAULT_MAX_ATTEMPTS", "Ack", "Action", "Bury", "Reschedule", "decide"]

DEFAULT_BACKOFF = BackoffPolicy(initial=1.0, factor=2.0, cap=300.0, jitter="full")
"""1 s, 2 s, 4 s ... up to 5 min ceilings with full jitter; ``Retry-After`` is a floor (capped at 1 h)."""

DEFAULT_MAX_ATTEMPTS = 100
"""With :data:`DEFAULT_BACKOFF` about 4 hours of failures before a row is dead-lettered (then replayable)."""


@dataclass(frozen=True, slots=True)
class Ack:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reschedule:
    at: float  # UNIX seconds of the next attempt
    error: str


@dataclass(frozen=True, slots=True)
class Bury:
    reason: str


Action = Ack | Reschedule | Bury


def decide(
    outcome: Outcome,
    *,
    attempts: int,
    now: float,
    policy: BackoffPolicy = DEFAULT_BACKOFF,
    max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
    rng: random.Random | Callable[[], float] | None = None,
) -> Action:
    """The store action for ``outcome`` of a row that had ``attempts`` failed attempts before this one.

    ``Retry`` becomes ``Reschedule`` at ``now + delay`` (delay drawn for attempt number ``attempts``, never
    below ``Retry.after``), or ``Bury`` once ``max_attempts`` attempts have failed (``None``: never give up).
    ``Reject`` is buried at once with its reason.
    """
    if isinstance(outcome, Delivered):
        return Ack(outcome.detail)
    if isinstance(outcome, Reject):
        return Bury(f"rejected: {outcome.reason}")
    if isinstance(outcome, Retry):
        failed = attempts + 1
        if max_attempts is not None and failed >= max_attempts:
            return Bury(f"gave up after {failed} attempts; last error: {outcome.reason}")
        backoff = Backoff(policy, rng)
        backoff.attempts = attempts
        return Reschedule(now + backoff.next_delay(retry_after=outcome.after), outcome.reason)
    raise TypeError(f"a sink must return Delivered, Retry or Reject, got {type(outcome).__name__}")
