"""One info line a minute about deliveries being retried, instead of one line per retry (pure: ``now`` is
passed in; no I/O).

Each retry is logged at debug by the dispatcher; operators read this summary instead. It only reads counts
(the sink's retry total, the outbox's depth and oldest row), so it does not depend on how the dispatcher
schedules retries. Two states, as a table: *quiet* (nothing retried in the last period) and *retrying*.
Entering *retrying* and every period in it gives a summary line; leaving it gives one line saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from gcbridge.outbox.base import OutboxStats

DEFAULT_PERIOD: Final = 60.0
"""Seconds between two summaries while deliveries are being retried."""

State = Literal["quiet", "retrying"]
Line = Literal["retrying", "recovered"]

# (state, retried in the period just ended) -> (next state, the line to log, if any)
TRANSITIONS: Final[dict[tuple[State, bool], tuple[State, Line | None]]] = {
    ("quiet", False): ("quiet", None),
    ("quiet", True): ("retrying", "retrying"),
    ("retrying", True): ("retrying", "retrying"),
    ("retrying", False): ("quiet", "recovered"),
}

RETRYING_MESSAGE: Final = "deliveries to ServiceNow are being retried"
RETRYING_ADVICE: Final = (
    "nothing while it recovers by itself; if oldest_pending_seconds keeps growing, fix what last_reason "
    "names (ServiceNow down, credentials, rate limit); rows that run out of attempts are listed by "
    "`gcbridge outbox list`"
)
RECOVERED_MESSAGE: Final = "deliveries to ServiceNow no longer need retries"


@dataclass(frozen=True, slots=True)
class Summary:
    """The fields of one summary line."""

    line: Line
    retries: int  # retries in the period
    period_seconds: float
    pending: int
    oldest_pending_seconds: float
    last_reason: str | None

    @property
    def message(self) -> str:
        return RETRYING_MESSAGE if self.line == "retrying" else RECOVERED_MESSAGE

    def fields(self) -> dict[str, object]:
        """Keyword arguments for the log call."""
        out: dict[str, object] = {
            "retries": self.retries,
            "period_seconds": round(self.period_seconds, 1),
            "pending": self.pending,
            "oldest_pending_seconds": round(self.oldest_pending_seconds, 1),
        }
        if self.line == "retrying":
            out["last_reason"] = self.last_reason
            out["what_to_do"] = RETRYING_ADVICE
        return out


class RetrySummary:
    """Feed :meth:`observe` often (every second is fine); it answers a :class:`Summary` at most once a
    ``period``."""

    def __init__(self, period: float = DEFAULT_PERIOD) -> None:
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.period = period
        self.state: State = "quiet"
        self.period_start: float | None = None
        """When the current period began (``None`` until the first :meth:`observe`)."""
        self._retries_at_start = 0

    def observe(
        self, now: float, retries_total: int, outbox: OutboxStats | None, last_reason: str | None
    ) -> Summary | None:
        """``retries_total``: retries since the service started (from zero; it only grows). The first call
        starts the first period, which counts every retry of the run so far."""
        if retries_total < self._retries_at_start:  # the total was reset: it counts from zero again
            self._retries_at_start = 0
        if self.period_start is None:
            self.period_start = now
            return None
        elapsed = now - self.period_start
        if elapsed < self.period:
            return None
        retries = retries_total - self._retries_at_start
        self.period_start, self._retries_at_start = now, retries_total
        self.state, line = TRANSITIONS[(self.state, retries > 0)]
        if line is None:
            return None
        return Summary(
            line=line,
            retries=retries,
            period_seconds=elapsed,
            pending=outbox.pending if outbox else 0,
            oldest_pending_seconds=outbox.oldest_pending_age if outbox else 0.0,
            last_reason=last_reason,
        )
