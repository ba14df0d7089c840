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
    def __init__(self) -> None:
        self.rules: list[RateLimitRule] = []
        self._counts: dict[tuple[str, str, float], int] = {}

    def set_rules(self, rules: list[RateLimitRule]) -> None:
        """Replace the rules; like an instance, changing limits resets the counts."""
        self.rules = list(rules)
        self._counts.clear()

    def check(self, user: str, api: str, table: str | None, now: float) -> RateDecision:
        rule = self._rule_for(user, api, table)
        if rule is None:
            return RateDecision(True, {})
        window = math.floor(now / WINDOW_SECONDS) * WINDOW_SECONDS
        reset = window + WINDOW_SECONDS
        headers = {
            "X-RateLimit-Limit": str(rule.limit_per_hour),
            "X-RateLimit-Reset": str(int(reset)),
            "X-RateLimit-Rule": rule.sys_id,
        }
        key = (rule.sys_id, user, window)
        used = self._counts.get(key, 0)
        if used >= rule.limit_per_hour:
            return RateDecision(
                False, headers, max(1, math.ceil(reset - now)), rule.limit_per_hour, API_NAMES.get(api, api)
            )
        # Old windows are dropped as soon as a new one starts, so the table stays small.
        if not any(k[2] == window for k in self._counts):
            self._counts = {k: v for k, v in self._counts.items() if k[2] >= window}
        self._counts[key] = used + 1
        return RateDecision(True, headers)

    def _rule_for(self, user: str, api: str, table: str | None) -> RateLimitRule | None:
        matching = [r for r in self.rules if r.applies(user, api, table)]
        if not matching:
            return None
        return min(matching, key=lambda r: (r.user is None, r.limit_per_hour))
