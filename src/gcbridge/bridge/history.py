"""The last hour, minute by minute, for the status page's charts (pure: no I/O, no clock; times passed in).

The service samples its running totals (events made durable, records written, the outbox depth, the summed
time of ServiceNow requests) about once a second; :class:`MinuteHistory` turns consecutive samples into
per-minute figures and keeps a bounded ring of them, so its memory never grows with uptime.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

MINUTE: Final = 60.0
DEFAULT_MINUTES: Final = 60


@dataclass(frozen=True, slots=True)
class Sample:
    """This run's totals at one moment (``at``: UNIX seconds); they start at zero and only grow (a total
    that shrinks was reset, and counts afresh)."""

    at: float
    received: int
    written: int
    outbox_depth: int
    latency_seconds: float
    requests: int


@dataclass(slots=True)
class Minute:
    """What happened in the minute starting at ``start`` (a multiple of 60 UNIX seconds)."""

    start: float
    events_in: int = 0
    records_written: int = 0
    outbox_depth: int = 0  # the highest depth sampled in the minute
    latency_seconds: float = 0.0
    requests: int = 0

    def document(self) -> dict[str, Any]:
        """The JSON shape ``/status`` serves under ``history.minutes``."""
        latency_ms = round(1000.0 * self.latency_seconds / self.requests, 1) if self.requests else None
        return {
            "start": self.start,
            "events_in": self.events_in,
            "records_written": self.records_written,
            "outbox_depth": self.outbox_depth,
            "servicenow_latency_ms": latency_ms,
        }


def _growth(new: float, old: float) -> float:
    # A total that went down was reset (a restarted counter): everything it holds now is new.
    return new - old if new >= old else new


class MinuteHistory:
    """A ring of the last ``minutes`` minutes. Feed it with :meth:`record`; read it with :meth:`documents`."""

    def __init__(self, minutes: int = DEFAULT_MINUTES) -> None:
        if minutes < 1:
            raise ValueError(f"minutes must be at least 1, got {minutes}")
        self._ring: deque[Minute] = deque(maxlen=minutes)
        # The totals are this run's, so they start from zero: the first sample counts all it holds.
        self._last = Sample(at=0.0, received=0, written=0, outbox_depth=0, latency_seconds=0.0, requests=0)

    def record(self, sample: Sample) -> None:
        """Add what changed since the previous sample (or since zero, for the first) to the minute
        ``sample.at`` falls in. A sample older than the newest minute (a clock stepped back) counts in the
        newest minute, so that the ring stays in time order."""
        minute = self._minute_at(sample.at)
        previous, self._last = self._last, sample
        minute.outbox_depth = max(minute.outbox_depth, sample.outbox_depth)
        minute.events_in += int(_growth(sample.received, previous.received))
        minute.records_written += int(_growth(sample.written, previous.written))
        minute.requests += int(_growth(sample.requests, previous.requests))
        minute.latency_seconds += _growth(sample.latency_seconds, previous.latency_seconds)

    def documents(self) -> list[dict[str, Any]]:
        """Oldest first; minutes without any sample (the service was down) are absent."""
        return [m.document() for m in self._ring]

    def _minute_at(self, at: float) -> Minute:
        start = at - at % MINUTE
        if self._ring and start <= self._ring[-1].start:
            return self._ring[-1]
        self._ring.append(Minute(start=start))
        return self._ring[-1]
