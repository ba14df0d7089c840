"""Inbound REST rate-limit rules: requests per user per clock hour, with time passed in.

A rule applies to one API (or all), optionally one table or staging table and optionally one user. Of the
rules that match a request, a user-specific rule wins over an all-users rule, then the lowest limit wins.
Only a matching rule produces ``X-RateLimit-*`` headers; a request no rule matches gets none (spec §3.1).
An instance commits its counts every 30 s and may overshoot; this one counts exactly.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Final

WINDOW_SECONDS: Final = 3600.0
API_NAMES: Final = {"table": "Table API", "import": "Import Set API", "em": "Event Management API"}


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    limit_per_hour: int
    api: str | None = None  # "table" | "import" | "em" | None for every API
    table: str | None = None
    user: str | None = None
    sys_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # An instance counts per clock hour; a compressed soak shortens the window so that a 429 storm's
    # X-RateLimit-Reset lies seconds away, not up to an hour.
    window: float = WINDOW_SECONDS

    def applies(self, user: str, api: str, table: str | None) -> bool:
        return (
            (self.api is None or self.api == api)
            and (self.table is None or self.table == table)
            and (self.user is None or self.user == user)
        )


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    headers: dict[str, str]  # empty when no rule matched
    retry_after: int = 0
    detail_limit: int = 0
    api_name: str = ""


class RateLimiter:
    """Counts requests per (rule, user, hour window).

    ``commit_interval`` models a node that commits its counts every 30 s: enforcement only sees the counts of
    the last commit, so a burst overshoots the limit by what arrived since. The default (0) counts exactly.
    """

    def __init__(self, commit_interval: float = 0.0) -> None:
        self.commit_interval = commit_interval
        self.rules: list[RateLimitRule] = []
        self._committed: dict[tuple[str, str, float], int] = {}
        self._uncommitted: dict[tuple[str, str, float], int] = {}
        self._last_commit = -math.inf

    def set_rules(self, rules: list[RateLimitRule]) -> None:
        """Replace the rules; like an instance, changing limits resets the counts."""
        self.rules = list(rules)
        self._committed.clear()
        self._uncommitted.clear()

    def check(self, user: str, api: str, table: str | None, now: float) -> RateDecision:
        rule = self._rule_for(user, api, table)
        if rule is None:
            return RateDecision(True, {})
        window = math.floor(now / rule.window) * rule.window
        reset = window + rule.window
        headers = {
            "X-RateLimit-Limit": str(rule.limit_per_hour),
            "X-RateLimit-Reset": str(int(reset)),
            "X-RateLimit-Rule": rule.sys_id,
        }
        self._commit(now, window)
        key = (rule.sys_id, user, window)
        if self._committed.get(key, 0) >= rule.limit_per_hour:
            return RateDecision(
                False, headers, max(1, math.ceil(reset - now)), rule.limit_per_hour, API_NAMES.get(api, api)
            )
        if self.commit_interval > 0:
            self._uncommitted[key] = self._uncommitted.get(key, 0) + 1
        else:
            self._committed[key] = self._committed.get(key, 0) + 1
        return RateDecision(True, headers)

    def _commit(self, now: float, window: float) -> None:
        if now - self._last_commit < self.commit_interval:
            return
        self._last_commit = now
        for key, count in self._uncommitted.items():
            self._committed[key] = self._committed.get(key, 0) + count
        self._uncommitted.clear()
        # Counts of past windows can never matter again.
        self._committed = {k: v for k, v in self._committed.items() if k[2] >= window}

    def _rule_for(self, user: str, api: str, table: str | None) -> RateLimitRule | None:
        matching = [r for r in self.rules if r.applies(user, api, table)]
        if not matching:
            return None
        return min(matching, key=lambda r: (r.user is None, r.limit_per_hour))
