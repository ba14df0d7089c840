"""Which lifecycle notices of a path become log lines, and at what level (pure; no logging, no clock).

The aim is one line per change a reader cares about: a path connected, lost its connection, is back, rotated.
The retries in between are at DEBUG, with an INFO summary every ``summary_every`` attempts so that a long
outage still shows in the logs. Every WARNING says what happens next and what, if anything, to do.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

__all__ = ["LifecycleLine", "LifecycleLog", "failure_streak_level"]

DEBUG: Final = logging.DEBUG
INFO: Final = logging.INFO
WARNING: Final = logging.WARNING


@dataclass(frozen=True, slots=True)
class LifecycleLine:
    """One log line to write: its level, its text and its context."""

    level: int
    event: str
    fields: dict[str, object]


# (notice kind, situation) -> (level, text). The situation comes from the path's outage streak, see
# LifecycleLog._situation.
_TABLE: Final[dict[tuple[str, str], tuple[int, str]]] = {
    ("connected", "first"): (INFO, "notification path connected"),
    ("connected", "after_outage"): (INFO, "notification path reconnected"),
    ("connected", "again"): (DEBUG, "notification path connected"),  # after a rotation: "rotated" says it
    ("reconnecting", "first"): (
        WARNING,
        "notification path lost its connection; reconnecting with backoff (nothing to do unless it "
        "persists: events missed meanwhile are reported as a Gap)",
    ),
    ("reconnecting", "first_connect"): (
        WARNING,
        "notification path could not connect; retrying with backoff (if this persists, check the OAuth "
        "client's permissions and that Genesys Cloud is reachable)",
    ),
    ("reconnecting", "repeat"): (DEBUG, "notification path reconnect attempt failed; retrying"),
    ("reconnecting", "summary"): (
        INFO,
        "notification path still reconnecting; check the network and Genesys Cloud status if this persists",
    ),
    ("rotating", "any"): (DEBUG, "notification path rotating its channel"),
    ("rotating", "failed"): (
        INFO,
        "notification path could not rotate its channel yet; the old one still serves, retrying",
    ),
    ("rotated", "any"): (INFO, "notification path rotated its channel"),
    ("channel_created", "any"): (DEBUG, "notification channel created"),
}


@dataclass(slots=True)
class _Streak:
    ever_connected: bool = False
    failed_attempts: int = 0  # reconnect notices since the path was last live
    down_since: float | None = None


class LifecycleLog:
    """Turns a path's lifecycle notices (``connected``, ``reconnecting``, ``rotating``, ``rotated``,
    ``channel_created``) into at most one :class:`LifecycleLine` each. ``now`` is any monotonic clock."""

    def __init__(self, summary_every: int = 10) -> None:
        if summary_every < 1:
            raise ValueError("summary_every must be >= 1")
        self.summary_every = summary_every
        self._paths: dict[Hashable, _Streak] = {}

    def notice(
        self, path: Hashable, kind: str, now: float, *, reason: str = "", detail: str = ""
    ) -> LifecycleLine | None:
        """The line to log for this notice, or None for a kind that is not logged here."""
        streak = self._paths.setdefault(path, _Streak())
        situation = self._situation(streak, kind, reason)
        entry = _TABLE.get((kind, situation)) or _TABLE.get((kind, "any"))
        if entry is None:
            return None
        fields: dict[str, object] = {"path": str(path)}
        if reason:
            fields["reason"] = reason
        if detail:
            fields["detail"] = detail
        if kind == "reconnecting":
            if streak.down_since is None:
                streak.down_since = now
            streak.failed_attempts += 1
            fields["attempts"] = streak.failed_attempts
            fields["down_for"] = round(now - streak.down_since, 3)
        elif kind == "connected":
            if streak.down_since is not None:
                fields["down_for"] = round(now - streak.down_since, 3)
                fields["attempts"] = streak.failed_attempts
            streak.ever_connected = True
            streak.failed_attempts = 0
            streak.down_since = None
        level, event = entry
        return LifecycleLine(level, event, fields)

    def _situation(self, streak: _Streak, kind: str, reason: str) -> str:
        if kind == "connected":
            if streak.down_since is not None:
                return "after_outage"
            return "again" if streak.ever_connected else "first"
        if kind == "reconnecting":
            if streak.failed_attempts == 0:
                return "first" if streak.ever_connected else "first_connect"
            return "summary" if (streak.failed_attempts + 1) % self.summary_every == 0 else "repeat"
        return "failed" if kind == "rotating" and reason == "failed" else "any"


def failure_streak_level(failures_in_a_row: int, summary_every: int = 10) -> int:
    """The level for the ``failures_in_a_row``-th failure of something retried without limit: the first is
    a WARNING, every ``summary_every``-th an INFO (a long outage still shows), the others DEBUG."""
    if failures_in_a_row <= 1:
        return WARNING
    return INFO if failures_in_a_row % summary_every == 0 else DEBUG
