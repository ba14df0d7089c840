"""How many deliveries may be in flight: a bounded additive-increase, multiplicative-decrease window (pure).

Why: requests in flight = rows per second x response time (Little's law), so a fixed limit that carries
500 rows/s at 50 ms runs its slots at nine tenths busy and rows queue for a slot (bench/README.md, "Where the
p99 goes"). Raising the fixed limit is not safe either: ServiceNow answers 429 once its inbound REST pool is
full, and the pool's size is the instance's, not ours. So the window starts at the configured ``floor``
(the proven-safe fixed limit), grows by one slot per window's worth of deliveries that finished while rows
were waiting for a slot, never beyond ``ceiling``, and falls back by half (not below ``floor``) on a failed
attempt. Below ``floor`` nothing changes: a saturated instance is the outage logic's job
(:mod:`gcbridge.outbox.outage`), as it was with the fixed limit.

A burst of failures from requests that were all sent at the old size is one signal, not many: a failure
counts only if its request started after the last decrease (:attr:`AimdWindow.epoch` taken at the start).
"""

from __future__ import annotations

__all__ = ["AimdWindow"]


class AimdWindow:
    """``limit`` slots now; :meth:`grow` after a delivery while rows waited, :meth:`shrink` on a failure."""

    def __init__(self, floor: int, ceiling: int) -> None:
        if floor < 1 or ceiling < floor:
            raise ValueError("need 1 <= floor <= ceiling")
        self.floor = floor
        self.ceiling = ceiling
        self.limit = floor
        self._credit = 0  # deliveries counted towards the next slot
        self.epoch = 0  # decreases so far; a request remembers the epoch it started in

    def grow(self) -> None:
        """One delivery finished while rows waited for a slot: +1 slot per ``limit`` such deliveries."""
        if self.limit >= self.ceiling:
            return
        self._credit += 1
        if self._credit >= self.limit:
            self.limit += 1
            self._credit = 0

    def shrink(self, started_epoch: int) -> bool:
        """An attempt that started in ``started_epoch`` failed: halve (to ``floor`` at least), once per epoch.

        ``True`` if the window shrank. Failures of requests sent before the last decrease are ignored: they
        were sent at the old size and say nothing about the new one.
        """
        if started_epoch < self.epoch or self.limit <= self.floor:
            return False
        self.limit = max(self.floor, self.limit // 2)
        self._credit = 0
        self.epoch += 1
        return True
