"""Faults armed by a test or an operator, consumed request by request (pure bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

INJECTABLE_STATUSES: Final = frozenset({429, 500, 502, 503})
DEFAULT_TRANSFORM_ERROR: Final = "Target record not found"


@dataclass(frozen=True, slots=True)
class Injection:
    """One injected answer.

    ``after_commit``: the request takes effect, then the client gets the error (a lost response).
    ``cancelled``: a 500 carries the transaction-cancelled body instead of a generic exception.
    """

    status: int
    path_prefix: str = "/api/"
    after_commit: bool = False
    cancelled: bool = False


@dataclass(slots=True)
class ArmedInjection:
    injection: Injection
    remaining: int


@dataclass(slots=True)
class FaultPlan:
    injections: list[ArmedInjection] = field(default_factory=list)
    delay: float = 0.0
    transform_time: float = 0.0  # how long each transform holds its coalesce key
    hibernating: bool = False
    truncated_lists: int = 0
    transform_failures: dict[str, tuple[int, str]] = field(default_factory=dict)

    def inject(self, injection: Injection, count: int) -> None:
        if injection.status not in INJECTABLE_STATUSES:
            raise ValueError(f"status must be one of {sorted(INJECTABLE_STATUSES)}, not {injection.status}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self.injections.append(ArmedInjection(injection, count))

    def take_injection(self, path: str) -> Injection | None:
        """The first armed injection whose path prefix matches, one use consumed."""
        for armed in self.injections:
            if path.startswith(armed.injection.path_prefix):
                armed.remaining -= 1
                if armed.remaining <= 0:
                    self.injections.remove(armed)
                return armed.injection
        return None

    def fail_transform(self, staging_table: str, count: int, message: str = DEFAULT_TRANSFORM_ERROR) -> None:
        self.transform_failures[staging_table] = (count, message)

    def take_transform_failure(self, staging_table: str) -> str | None:
        armed = self.transform_failures.get(staging_table)
        if armed is None:
            return None
        remaining, message = armed
        if remaining <= 1:
            del self.transform_failures[staging_table]
        else:
            self.transform_failures[staging_table] = (remaining - 1, message)
        return message

    def take_truncated_list(self) -> bool:
        if self.truncated_lists <= 0:
            return False
        self.truncated_lists -= 1
        return True

    def clear(self) -> None:
        self.injections.clear()
        self.delay = 0.0
        self.transform_time = 0.0
        self.hibernating = False
        self.truncated_lists = 0
        self.transform_failures.clear()
