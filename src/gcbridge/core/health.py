"""Socket health: is a WebSocket still delivering? Pure decisions with ``now`` passed in.

A socket is dead when nothing arrived for ``heartbeat_timeout`` seconds (Genesys sends a heartbeat about
every 30 s), or when a ``{"message":"ping"}`` sent after ``ping_interval`` seconds of silence got no pong
within ``pong_timeout``. Either way a stall is detected within
``min(heartbeat_timeout, ping_interval + pong_timeout)``.

A slow consumer makes the reader wait (back-pressure): frames then pile up unread in the socket and on the
server, and a drop loses frames sent long before the last one read. So the monitor also tracks a *backlog*:
it opens when back-pressure first begins and closes only when the reader has caught up with the socket;
while it is open, the socket's last good moment (:attr:`HealthMonitor.last_good`) is the backlog's start.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    OK = "ok"
    SEND_PING = "send_ping"
    DEAD_SILENT = "heartbeat_timeout"
    DEAD_NO_PONG = "pong_timeout"


@dataclass(frozen=True, slots=True)
class HealthDecision:
    verdict: Verdict
    next_check: float  # when to ask again


class HealthMonitor:
    __slots__ = (
        "backlog_since",
        "heartbeat_timeout",
        "last_frame",
        "paused",
        "ping_interval",
        "ping_sent_at",
        "pong_timeout",
    )

    def __init__(
        self, now: float, *, heartbeat_timeout: float, ping_interval: float, pong_timeout: float
    ) -> None:
        if min(heartbeat_timeout, ping_interval, pong_timeout) <= 0:
            raise ValueError("health timings must be positive")
        self.heartbeat_timeout = heartbeat_timeout
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.last_frame = now
        self.ping_sent_at: float | None = None
        # the consumer is slow and the reader is waiting: silence is ours, not the server's
        self.paused = False
        # when back-pressure began, while frames may wait unread (None: the reader is caught up)
        self.backlog_since: float | None = None

    @property
    def detection_bound(self) -> float:
        return min(self.heartbeat_timeout, self.ping_interval + self.pong_timeout)

    def frame(self, now: float) -> None:
        self.last_frame = now

    def hold(self, now: float) -> None:
        """The reader must wait for the consumer (back-pressure): opens a backlog unless one is open."""
        self.paused = True
        if self.backlog_since is None:
            self.backlog_since = now

    def resume(self) -> None:
        """The consumer made room; the backlog stays open until :meth:`caught_up`."""
        self.paused = False

    def caught_up(self) -> None:
        """The reader has read everything the socket held: nothing old is left to lose."""
        self.backlog_since = None

    @property
    def last_good(self) -> float:
        """Up to when everything sent on the socket is known to have been read: the last frame read, or the
        start of an open backlog if earlier. A gap after a failure starts here (minus ``gap_margin``)."""
        since = self.backlog_since
        return self.last_frame if since is None or since > self.last_frame else since

    def probe(self, now: float) -> bool:
        """Check now rather than after ``ping_interval`` of silence (a sibling path just failed, so this one
        may be silent too): True when a ping is to be sent, False when one is already awaited or the reader
        is held back by the consumer (its silence is ours). No pong within ``pong_timeout`` means dead."""
        if self.paused or self.ping_sent_at is not None:
            return False
        self.ping_sent_at = now
        return True

    def pong(self, now: float) -> None:
        self.last_frame = now
        self.ping_sent_at = None

    def check(self, now: float) -> HealthDecision:
        if self.paused:
            self.last_frame = now
            self.ping_sent_at = None
            return HealthDecision(Verdict.OK, now + self.ping_interval)
        if now - self.last_frame >= self.heartbeat_timeout:
            return HealthDecision(Verdict.DEAD_SILENT, now)
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at >= self.pong_timeout:
                return HealthDecision(Verdict.DEAD_NO_PONG, now)
            return HealthDecision(Verdict.OK, min(self.ping_sent_at + self.pong_timeout, self._silent_at()))
        if now - self.last_frame >= self.ping_interval:
            self.ping_sent_at = now
            return HealthDecision(Verdict.SEND_PING, min(now + self.pong_timeout, self._silent_at()))
        return HealthDecision(Verdict.OK, min(self.last_frame + self.ping_interval, self._silent_at()))

    def _silent_at(self) -> float:
        return self.last_frame + self.heartbeat_timeout
