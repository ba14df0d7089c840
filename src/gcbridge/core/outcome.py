"""What a delivery attempt came to: delivered, retry later, or rejected with a reason.

The common vocabulary of the writer (:mod:`gcbridge.servicenow`, which produces outcomes) and the outbox
(:mod:`gcbridge.outbox`, which records them), kept here so that neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Delivered", "Outcome", "Reject", "Retry", "SinkCondition"]


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SinkCondition:
    """A failure of the whole sink rather than of one row: wrong credentials, a missing table, an instance
    that hibernates or keeps answering 5xx. Every row would fail the same way, so the dispatcher pauses
    deliveries instead of retrying each row (see :mod:`gcbridge.outbox.outage`).

    ``kind`` is a short label for metrics (``credentials``, ``access``, ``missing_table``, ``hibernating``,
    ``unavailable``, ``unreachable``); ``summary`` says what is wrong ("ServiceNow rejected the credentials
    (HTTP 401)"), ``action`` what the operator should do. ``threshold``: how many such failures in a row make
    it a condition (1 for a definite answer, more for failures that one flaky request can also produce).
    """

    kind: str
    summary: str
    action: str
    threshold: int = 1


@dataclass(frozen=True, slots=True)
class Retry:
    """Not delivered, try again later (a 429, a 5xx, a 202, a timeout).

    ``reason`` is stored with the row and logged: a status and a short text, never a token, a header value or
    the payload. ``condition`` is set when the failure is the sink's, not the row's.
    """

    reason: str
    after: float | None = None  # seconds the remote asked us to wait (Retry-After), else backoff decides
    condition: SinkCondition | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Not retryable (a 400/403/404, a transform error): goes to the dead-letter list with the reason.

    The reason is what an operator reads in the dead-letter list: say what was wrong (no secrets, no payload).
    """

    reason: str


Outcome = Delivered | Retry | Reject
