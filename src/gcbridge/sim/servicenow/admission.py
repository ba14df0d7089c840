"""Admission counters: the per-node semaphore pool and the per-session queue (spec §3.2, §3.4).

Pure bookkeeping; the asyncio shell holds the actual semaphore and per-session locks.
"""

from __future__ import annotations

from collections import OrderedDict


class PoolGate:
    """``concurrency`` requests run, ``queue`` more wait; past that requests are refused (429, no headers)."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.in_flight = 0

    def try_enter(self) -> bool:
        if self.in_flight >= self.concurrency + self.queue:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


class SessionTable:
    """Sessions bound by the ``JSESSIONID`` cookie; each runs one request at a time.

    A request on a session that already has ``queue_limit`` requests waiting behind the running one, or whose
    running request started more than ``busy_limit`` seconds ago, is dropped with HTTP 202. Sessions are
    forgotten oldest first past ``max_sessions`` (cookie-less clients create one per request).
    """

    def __init__(self, queue_limit: int, busy_limit: float = 30.0, max_sessions: int = 10_000) -> None:
        self.queue_limit = queue_limit
        self.busy_limit = busy_limit
        self.max_sessions = max_sessions
        self._users: OrderedDict[str, str | None] = OrderedDict()
        self._outstanding: dict[str, int] = {}
        self._running_since: dict[str, float] = {}

    def open(self, session_id: str, user: str | None) -> None:
        self._users[session_id] = user
        self._users.move_to_end(session_id)
        while len(self._users) > self.max_sessions:
            oldest, _ = self._users.popitem(last=False)
            self._outstanding.pop(oldest, None)
            self._running_since.pop(oldest, None)

    def known(self, session_id: str) -> bool:
        return session_id in self._users

    def user(self, session_id: str) -> str | None:
        return self._users.get(session_id)

    def bind_user(self, session_id: str, user: str) -> None:
        if session_id in self._users:
            self._users[session_id] = user

    def outstanding(self, session_id: str) -> int:
        return self._outstanding.get(session_id, 0)

    def try_enter(self, session_id: str, now: float) -> bool:
        outstanding = self._outstanding.get(session_id, 0)
        if outstanding > self.queue_limit:  # one running + queue_limit waiting
            return False
        started = self._running_since.get(session_id)
        if started is not None and now - started > self.busy_limit:
            return False
        self._outstanding[session_id] = outstanding + 1
        return True

    def started(self, session_id: str, now: float) -> None:
        """The session's next request begins to run (it holds the session until :meth:`leave`)."""
        self._running_since[session_id] = now

    def leave(self, session_id: str) -> None:
        self._running_since.pop(session_id, None)
        remaining = self._outstanding.get(session_id, 1) - 1
        if remaining > 0:
            self._outstanding[session_id] = remaining
        else:
            self._outstanding.pop(session_id, None)
