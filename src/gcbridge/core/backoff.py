"""Capped exponential backoff with full jitter, and ``Retry-After`` parsing.

Pure: no clock and no sleeping. The caller asks :meth:`Backoff.next_delay` how long to wait, waits however
it likes (``asyncio.sleep``, a stored ``next_attempt_at`` in the outbox, a timer in a state machine), and
tells the backoff when things went well for long enough (:meth:`Backoff.healthy_for`).

Why full jitter: many clients that failed together (a region blip, a revoked token) must not retry together.
Why reset only after a healthy period: a server that accepts a connection and drops it at once would otherwise
reset the backoff on every "success" and cause a tight loop.

Example::

    backoff = Backoff(BackoffPolicy(initial=1.0, cap=60.0), rng=random.Random(7))
    delay = backoff.next_delay(retry_after=parse_retry_after(headers.get("Retry-After"), now=time.time()))
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from gcbridge.core.errors import GenesysUsageError

__all__ = ["Backoff", "BackoffPolicy", "parse_retry_after"]

Jitter = Literal["full", "equal", "none"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How delays grow.

    Attempt ``n`` (0-based) has the ceiling ``min(cap, initial * factor**n)``; the delay is drawn from that
    ceiling according to ``jitter``:

    * ``"full"`` (default): uniform in ``[0, ceiling)``, the AWS "full jitter" scheme.
    * ``"equal"``: ``ceiling/2 + uniform(0, ceiling/2)``, never shorter than half the ceiling.
    * ``"none"``: exactly the ceiling (deterministic; for tests and single clients).

    ``retry_after_cap`` bounds a server's ``Retry-After`` (default 1 h) so that a bogus header cannot park a
    client for days. All values are seconds.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: Jitter = "full"
    retry_after_cap: float = 3600.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or not math.isfinite(self.initial):
            raise GenesysUsageError(
                f"BackoffPolicy.initial must be a positive number of seconds, got {self.initial!r}"
            )
        if self.factor < 1 or not math.isfinite(self.factor):
            raise GenesysUsageError(f"BackoffPolicy.factor must be >= 1, got {self.factor!r}")
        if self.cap < self.initial:
            raise GenesysUsageError(f"BackoffPolicy.cap ({self.cap!r}) must be >= initial ({self.initial!r})")
        if self.jitter not in ("full", "equal", "none"):
            raise GenesysUsageError(
                f"BackoffPolicy.jitter must be 'full', 'equal' or 'none', got {self.jitter!r}"
            )
        if self.retry_after_cap < 0:
            raise GenesysUsageError(
                f"BackoffPolicy.retry_after_cap must be >= 0, got {self.retry_after_cap!r}"
            )

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` (0-based) may draw."""
        try:
            raw = self.initial * self.factor**attempt
        except OverflowError:  # factor**attempt after weeks of failures: the cap applies anyway
            return self.cap
        return min(self.cap, raw)


class Backoff:
    """Retry delays for one retrying activity (one socket, one token endpoint, one outbox row...).

    ``rng`` is a :class:`random.Random` or any zero-argument callable returning a float in ``[0, 1)``; pass a
    seeded one in tests. ``attempts`` counts the delays handed out since the last reset.
    """

    __slots__ = ("_draw", "attempts", "policy")

    def __init__(
        self, policy: BackoffPolicy | None = None, rng: random.Random | Callable[[], float] | None = None
    ):
        self.policy = policy if policy is not None else BackoffPolicy()
        if rng is None:
            rng = random.Random()
        self._draw: Callable[[], float] = rng.random if isinstance(rng, random.Random) else rng
        self.attempts = 0

    def peek_ceiling(self) -> float:
        """The ceiling the next :meth:`next_delay` draws from (for logs and status pages)."""
        return self.policy.ceiling(self.attempts)

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt, and count the attempt.

        Never below ``retry_after`` (the server's ``Retry-After``, capped at ``policy.retry_after_cap``).
        """
        ceiling = self.policy.ceiling(self.attempts)
        self.attempts += 1
        jitter = self.policy.jitter
        if jitter == "full":
            delay = ceiling * self._unit()
        elif jitter == "equal":
            delay = ceiling / 2 + (ceiling / 2) * self._unit()
        else:
            delay = ceiling
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            delay = max(delay, min(retry_after, self.policy.retry_after_cap))
        return delay

    def healthy_for(self, seconds: float, threshold: float) -> None:
        """Report that things have gone well for ``seconds``; reset once that reaches ``threshold``."""
        if seconds >= threshold:
            self.reset()

    def reset(self) -> None:
        """Start again from ``policy.initial``."""
        self.attempts = 0

    def _unit(self) -> float:
        u = self._draw()
        if not 0.0 <= u < 1.0:
            raise ValueError(f"Backoff rng must return a float in [0, 1), got {u!r}")
        return u

    def __repr__(self) -> str:
        return f"Backoff(attempts={self.attempts}, policy={self.policy!r})"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse an HTTP ``Retry-After`` header into seconds from now, or ``None`` when absent or unreadable.

    Accepts delta-seconds (``"2"``, and, tolerantly, ``"1.5"``) and HTTP-dates; a date needs ``now``
    (wall-clock UNIX seconds) to turn into a delay. Negative results become 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return max(0.0, seconds)
    if not math.isnan(seconds) or now is None:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
