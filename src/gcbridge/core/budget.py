"""The channel budget of one OAuth client: how many channels we may hold at once.

Genesys allows 20 channels per OAuth client and evicts the oldest unconnected one when a 21st is created. We
hold at most ``limit`` (default 15): every live channel, every replacement being built during a rotation, and
every old channel still draining counts until its socket is closed, so a reconnect storm can never create
channels in a loop and rotation always finds headroom.
"""

from __future__ import annotations


class ChannelBudget:
    __slots__ = ("denied", "held", "limit", "peak")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("channel budget must be >= 1")
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.denied = 0

    @property
    def free(self) -> int:
        return self.limit - self.held

    def acquire(self) -> bool:
        if self.held >= self.limit:
            self.denied += 1
            return False
        self.held += 1
        self.peak = max(self.peak, self.held)
        return True

    def release(self) -> None:
        if self.held <= 0:
            raise RuntimeError("channel budget released more often than acquired")
        self.held -= 1
