"""Is the outbox store failing? Failed store calls, from every caller in the process, as one outage.

A database that restarts (or a full disk) fails every call for a while: the ingest's writes, the
dispatcher's claims and acks, the status refresh. Each caller keeps retrying on its own schedule; this says it
once: one ``error`` line when the first call fails, ``debug`` for the rest, one ``info`` line with the
duration when a call succeeds again. The service shows :attr:`StoreOutage.problem` as a readiness reason.

:meth:`StoreOutage.failed` and :meth:`StoreOutage.succeeded` decide (pure, ``now`` passed in) and return
whether a line is due; :class:`LoggedStoreOutage` writes the lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcbridge._logs import get_logger

__all__ = ["STORE_WHAT_TO_DO", "LoggedStoreOutage", "StoreOutage"]

STORE_WHAT_TO_DO = (
    "nothing if the outbox database is restarting: the service waits and resumes by itself (received events "
    "wait in memory; the notification stream stops when that queue is full). Otherwise make it answer "
    "again: PostgreSQL running and reachable, the role's privileges, or the disk that holds the SQLite file"
)

_log = get_logger("gcbridge.outbox")


@dataclass(frozen=True, slots=True)
class Began:
    """The first failed call of an outage."""

    operation: str
    error: str


@dataclass(frozen=True, slots=True)
class Ended:
    """The first successful call after an outage of ``seconds`` with ``failures`` failed calls."""

    seconds: float
    failures: int


class StoreOutage:
    """Failed and successful store calls -> at most one :class:`Began` and one :class:`Ended` per outage."""

    def __init__(self) -> None:
        self.since: float | None = None
        """When the current outage began (``None``: the store answers)."""
        self.failures = 0
        self.last_error: str | None = None

    @property
    def failing(self) -> bool:
        return self.since is not None

    @property
    def problem(self) -> str | None:
        """One line for readiness while the store fails, else ``None``."""
        if self.since is None:
            return None
        return f"the outbox database does not answer ({self.last_error}); the service waits for it"

    def failed(self, operation: str, exc: BaseException, now: float) -> Began | None:
        self.failures += 1
        # the class name and the first line: a driver's message may be long, never a password (the URL is
        # not part of connection errors)
        first_line = (str(exc).splitlines() or [""])[0][:160]
        self.last_error = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        if self.since is not None:
            return None
        self.since = now
        return Began(operation, self.last_error)

    def succeeded(self, now: float) -> Ended | None:
        if self.since is None:
            return None
        ended = Ended(max(0.0, now - self.since), self.failures)
        self.since, self.failures, self.last_error = None, 0, None
        return ended


class LoggedStoreOutage(StoreOutage):
    """:class:`StoreOutage` that writes its lines (``gcbridge.outbox``)."""

    def failed(self, operation: str, exc: BaseException, now: float, **fields: Any) -> Began | None:
        began = super().failed(operation, exc, now)
        if began is not None:
            _log.error(
                "outbox database unreachable; waiting for it",
                operation=operation,
                error=began.error,
                what_to_do=STORE_WHAT_TO_DO,
                **fields,
            )
        else:
            _log.debug("outbox call failed again", operation=operation, error=self.last_error, **fields)
        return began

    def succeeded(self, now: float) -> Ended | None:
        ended = super().succeeded(now)
        if ended is not None:
            _log.info(
                "outbox database reachable again; resuming",
                outage_seconds=round(ended.seconds, 1),
                failed_calls=ended.failures,
            )
        return ended
