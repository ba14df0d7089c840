"""A fixed-window request counter per key (pure: the caller passes ``now``)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    count: int
    reset_after: float
    """Seconds until the window resets (``inin-ratelimit-reset`` and ``Retry-After``)."""

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_after))


class FixedWindowLimiter:
    """At most ``limit`` requests per ``window`` seconds per key; a window starts at its first request."""

    def __init__(self, limit: int | None, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float) -> RateDecision:
        """Count one request for ``key`` and say whether it is allowed."""
        start, count = self._windows.get(key, (now, 0))
        elapsed = now - start
        if elapsed >= self.window:
            start, count, elapsed = now, 0, 0.0
        # From the elapsed time, not ``start + window - now``: that sum rounds at a binade boundary of the
        # loop clock (60.000000000007 s at 65520.73), and the ceiling made ``inin-ratelimit-reset`` 61 for a
        # 60 s window. Clamped too, for a clock that steps back.
        reset_after = min(self.window, max(0.0, self.window - elapsed))
        if self.limit is None:
            self._windows[key] = (start, count + 1)
            return RateDecision(True, 0, count + 1, reset_after)
        if count >= self.limit:
            return RateDecision(False, self.limit, count, reset_after)
        self._windows[key] = (start, count + 1)
        return RateDecision(True, self.limit, count + 1, reset_after)

    def forget(self, key: str) -> None:
        self._windows.pop(key, None)

    def __len__(self) -> int:
        """Number of keys with a window (for tests of long runs)."""
        return len(self._windows)
