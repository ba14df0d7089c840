"""Is the sink failing as a whole? The pure state machine that turns sink-wide failures into one outage.

The dispatcher feeds it every delivery outcome (:meth:`SinkHealth.observe`) and asks it whether to deliver
normally, send one probe row, or wait (:meth:`SinkHealth.may_claim`). A failure that carries a
:class:`~gcbridge.outbox.base.SinkCondition` (wrong credentials, a missing table, a hibernating instance, a
run of 5xx) pauses deliveries: rows already in flight come back without an attempt counted, one row at a time
probes the sink with backoff, and the first outcome without a condition ends the outage. Row-level failures
(one bad row, a transform error, a 429) never start an outage and end one (ServiceNow answered properly).

States and transitions (``soft`` is a condition with ``threshold > 1``, counted until it is reached)::

    state      outcome: clean      hard condition     soft condition
    healthy    healthy             outage (Paused)    suspect (or outage at threshold)
    suspect    healthy             outage (Paused)    suspect (or outage at threshold)
    outage     healthy (Resumed)   outage (backoff)   outage (backoff)

No clock, no I/O: ``now`` is passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gcbridge.core.backoff import Backoff, BackoffPolicy
from gcbridge.outbox.base import Outcome, Retry, SinkCondition

__all__ = ["PROBE_BACKOFF", "Paused", "Resumed", "SinkHealth", "Transition", "probe_policy"]

PROBE_BACKOFF = BackoffPolicy(initial=1.0, factor=2.0, cap=60.0, jitter="none")
"""Probes of a failing sink: 1 s, 2 s, 4 s ... at most a minute apart, so recovery is noticed within a
minute and a dead sink costs one request a minute."""


def probe_policy(rows: BackoffPolicy) -> BackoffPolicy:
    """Probe timing that follows the rows' backoff (its start and growth) but never waits longer than
    :data:`PROBE_BACKOFF` does, and without jitter (there is one prober, nobody to spread out from)."""
    return BackoffPolicy(
        initial=min(rows.initial, PROBE_BACKOFF.cap),
        factor=rows.factor,
        cap=min(rows.cap, PROBE_BACKOFF.cap),
        jitter="none",
    )


State = Literal["healthy", "suspect", "outage"]
_Kind = Literal["clean", "hard", "soft"]


@dataclass(frozen=True, slots=True)
class Paused:
    """Deliveries stop: log one error naming ``condition`` and what to do."""

    condition: SinkCondition


@dataclass(frozen=True, slots=True)
class Resumed:
    """The sink works again after ``seconds`` of outage: make held rows due now and deliver them."""

    condition: SinkCondition
    seconds: float


Transition = Paused | Resumed


def _kind(outcome: Outcome) -> tuple[_Kind, SinkCondition | None]:
    if isinstance(outcome, Retry) and outcome.condition is not None:
        return ("hard" if outcome.condition.threshold <= 1 else "soft"), outcome.condition
    return "clean", None


class SinkHealth:
    """One sink's health: ``healthy``, ``suspect`` (soft failures below their threshold) or ``outage``."""

    def __init__(
        self,
        probe_backoff: BackoffPolicy = PROBE_BACKOFF,
        rng: random.Random | Callable[[], float] | None = None,
    ) -> None:
        self._backoff = Backoff(probe_backoff, rng)
        self.state: State = "healthy"
        self.condition: SinkCondition | None = None  # the current outage's (or suspicion's) condition
        self.since: float | None = None  # when the outage began
        self.next_probe_at = 0.0
        self._run = 0  # soft failures in a row
        self._retry_after: float | None = None  # the last outcome's Retry-After: a floor for the next probe
        self._probing = False

    @property
    def paused(self) -> bool:
        return self.state == "outage"

    def holds(self, outcome: Outcome) -> bool:
        """Should this failed row go back without an attempt counted (the sink's fault, not the row's)?

        A definite condition always; a soft one (a 5xx) only once it is an outage, so that before then a
        row keeps its own backoff like any retry.
        """
        kind, _ = _kind(outcome)
        return kind == "hard" or (kind == "soft" and self.paused)

    def may_claim(self, now: float) -> int | None:
        """How many rows the dispatcher may claim now: ``None`` no limit, ``1`` a probe, ``0`` none."""
        if not self.paused:
            return None
        if self._probing or now < self.next_probe_at:
            return 0
        self._probing = True
        return 1

    def probe_unused(self) -> None:
        """The probe :meth:`may_claim` allowed found no row to deliver: allow another one later."""
        self._probing = False

    def observe(self, outcome: Outcome, now: float) -> Transition | None:
        """Feed one delivery outcome; returns the transition to act on, if any."""
        kind, condition = _kind(outcome)
        self._retry_after = outcome.after if isinstance(outcome, Retry) else None
        return _TABLE[(self.state, kind)](self, condition, now)

    # -- transitions (the table below says which applies) ------------------------------------------------

    def _recover(self, _condition: SinkCondition | None, now: float) -> Transition | None:
        was, since = self.condition, self.since
        self.state, self.condition, self.since, self._run = "healthy", None, None, 0
        self._probing = False
        self._backoff.reset()
        if was is None or since is None:
            return None
        return Resumed(was, max(0.0, now - since))

    def _settle(self, _condition: SinkCondition | None, _now: float) -> Transition | None:
        self.state, self.condition, self._run = "healthy", None, 0
        return None

    def _count_soft(self, condition: SinkCondition | None, now: float) -> Transition | None:
        assert condition is not None
        self._run += 1
        self.condition = condition
        if self._run >= condition.threshold:
            return self._pause(condition, now)
        self.state = "suspect"
        return None

    def _pause(self, condition: SinkCondition | None, now: float) -> Transition | None:
        assert condition is not None
        self.state, self.condition, self.since = "outage", condition, now
        self._backoff.reset()
        self.next_probe_at = now + self._backoff.next_delay(retry_after=self._retry_after)
        self._probing = False
        return Paused(condition)

    def _probe_failed(self, condition: SinkCondition | None, now: float) -> Transition | None:
        self.condition = condition or self.condition
        if not self._probing:
            # a row that was in flight when the outage began: it says nothing new about the sink. Only a
            # failed probe grows the gap, else with many rows in flight (concurrency 32) the first probe
            # would wait the full cap and a 10 s storm would hold deliveries for a minute.
            if self._retry_after is not None:
                self.next_probe_at = max(self.next_probe_at, now + self._retry_after)
            return None
        self.next_probe_at = now + self._backoff.next_delay(retry_after=self._retry_after)
        self._probing = False
        return None


_Handler = Callable[[SinkHealth, SinkCondition | None, float], Transition | None]
_TABLE: dict[tuple[State, _Kind], _Handler] = {
    ("healthy", "clean"): SinkHealth._settle,
    ("healthy", "hard"): SinkHealth._pause,
    ("healthy", "soft"): SinkHealth._count_soft,
    ("suspect", "clean"): SinkHealth._settle,
    ("suspect", "hard"): SinkHealth._pause,
    ("suspect", "soft"): SinkHealth._count_soft,
    ("outage", "clean"): SinkHealth._recover,
    ("outage", "hard"): SinkHealth._probe_failed,
    ("outage", "soft"): SinkHealth._probe_failed,
}
