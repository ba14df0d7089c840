"""What a :class:`~gcbridge.genesys.NotificationClient` yields: events, and gaps where events may be lost.

These types are the contract between the notification client and everything downstream (the bridge
service, user code). They are plain frozen dataclasses with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One notification from Genesys Cloud, delivered once even if several channels received it.

    ``dedup_key`` identifies the notification across channels and paths (the same event received on the old
    and the new channel during a rotation has the same key); downstream stores use it for idempotency.
    """

    topic: str
    body: dict[str, Any]
    version: str | None
    metadata: dict[str, Any]
    dedup_key: str
    received_at: float  # wall-clock UNIX seconds when the first copy arrived
    channel_id: str = ""


@dataclass(frozen=True, slots=True)
class Gap:
    """A period in which events on ``topics`` may have been missed.

    ``start``/``end`` are wall-clock UNIX seconds: ``start`` is the last moment the topics were known to be
    delivered (the last inbound frame on the failed socket), ``end`` the moment the replacement subscription
    was live. A consumer back-fills the interval through the REST APIs (for example analytics queries).
    """

    start: float
    end: float
    topics: tuple[str, ...]
    reason: str
    detail: str = field(default="", compare=False)

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


Item = Event | Gap
