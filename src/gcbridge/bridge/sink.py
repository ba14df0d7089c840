"""A sink wrapper that measures deliveries: outcome counts, latency, and whether ServiceNow answers.

Reachability is judged from outcomes: a delivery or a rejection means ServiceNow answered; a retry whose
reason points at the transport or an unavailable node (connection errors, timeouts, 502/503/504, a 202
queue overflow) counts as unreachable until the next answer. A 429 is an answer (ServiceNow is there,
just busy), and so is a sink-wide condition such as rejected credentials or a missing table.

It also notices when deliveries fail wholesale row by row: :meth:`MeasuredSink.wholesale_rejection` says so
when every one of the recent outcomes was a rejection (dead-lettered), which makes ``/readyz`` not ready.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.outbox.base import Delivered, OutboxRow, Outcome, Reject, Retry, Sink

_UNREACHABLE: Final = re.compile(
    r"timeout|timed out|connect|refused|reset|unreachable|dns|resolve|cancel|\b50[234]\b|\b202\b|"
    r"disconnect|hibernat",
    re.I,
)
# conditions that come from an instance that answered: it is reachable, just refusing
_ANSWERED_CONDITIONS: Final = frozenset({"credentials", "access", "missing_table"})
RECENT_OUTCOMES: Final = 20
"""Deliveries or rejections remembered for :meth:`MeasuredSink.wholesale_rejection`."""
MIN_REJECTIONS: Final = 5
"""Rejections in a row, with no delivery among the recent outcomes, before deliveries count as failing."""


def answered(outcome: Outcome) -> bool:
    """Did this outcome come from a ServiceNow that answered (pure)?"""
    if isinstance(outcome, Delivered | Reject):
        return True
    if outcome.condition is not None:
        return outcome.condition.kind in _ANSWERED_CONDITIONS
    return not _UNREACHABLE.search(outcome.reason)


def probe_answered(status: int, content_type: str) -> bool:
    """Did a probe request reach ServiceNow's REST API (pure)? Any JSON answer does, a 401 included (the
    probe sends no credentials). An HTML page does not, whatever its status: a hibernating instance answers
    200 with one, a load balancer or proxy answers 502/503/504 or 404 with one."""
    return status not in (502, 503, 504) and "json" in content_type.lower()


class MeasuredSink:
    """Wraps the ServiceNow router; satisfies :class:`gcbridge.outbox.base.Sink`."""

    def __init__(
        self,
        inner: Sink,
        metrics: BridgeMetrics,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._clock = clock
        self._timer = timer
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self.last_outcome_at: float | None = None
        self.delivered = 0
        self.retried = 0
        self.rejected = 0
        self._recent: deque[bool] = deque(maxlen=RECENT_OUTCOMES)  # True: rejected, False: delivered

    async def deliver(self, row: OutboxRow) -> Outcome:
        started = self._timer()
        try:
            outcome = await self._inner.deliver(row)
        except Exception as exc:
            # The dispatcher turns this into a retry as well; count it here so the page shows it.
            # last_error is shown on /status: the class name only (an exception's text may quote a header)
            self._observe(Retry(reason=type(exc).__name__), started)
            raise
        self._observe(outcome, started)
        return outcome

    def _observe(self, outcome: Outcome, started: float) -> None:
        self._metrics.servicenow_latency.observe(max(0.0, self._timer() - started))
        self.last_outcome_at = self._clock()
        if isinstance(outcome, Delivered):
            self.delivered += 1
            self._metrics.deliveries.labels(result="delivered").inc()
            self.last_success_at = self._clock()
            self._recent.append(False)
        elif isinstance(outcome, Retry):
            self.retried += 1
            self._metrics.deliveries.labels(result="retry").inc()
            self.last_error = outcome.reason[:300]
        else:
            self.rejected += 1
            self._metrics.deliveries.labels(result="rejected").inc()
            self.last_error = outcome.reason[:300]
            self._recent.append(True)
        self.note_reachable(answered(outcome))

    def wholesale_rejection(self) -> str | None:
        """A readiness reason when every recent outcome (at least :data:`MIN_REJECTIONS`) was a rejection."""
        if len(self._recent) < MIN_REJECTIONS or not all(self._recent):
            return None
        return (
            f"every one of the last {len(self._recent)} deliveries was dead-lettered "
            f"(last reason: {(self.last_error or '?')[:200]})"
        )

    def note_reachable(self, reachable: bool) -> None:
        self.reachable = reachable
        self._metrics.servicenow_up.set(1 if reachable else 0)
