"""What the simulator records of each request it answered (for tests and ``GET /_sim/requests``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RequestRecord"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the simulator answered (``/_sim`` control requests are not recorded)."""

    method: str
    path: str
    query: str
    status: int
    user: str | None
    had_cookie: bool  # the request carried a JSESSIONID this simulator had issued
    at: float
