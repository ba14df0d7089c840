"""What the simulator published and to which sockets it was actually written (for exact loss counting)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Delivery:
    """One channel that was subscribed to a published event.

    ``sent`` is true when the message was written to that channel's connected socket; otherwise ``reason``
    says why not: ``not_connected``, ``stalled``, ``closing``, ``send_buffer_full``.
    """

    channel_id: str
    sent: bool
    reason: str = "sent"
    copies: int = 1
    """How many times the message was written (2 under the ``duplicate_next`` fault, 0 if not sent)."""


@dataclass(slots=True)
class PublishedRecord:
    """One published event. ``published_at`` is wall-clock (``time.time()``)."""

    seq: int
    topic: str
    published_at: float
    correlation_id: str
    body: dict[str, Any] = field(repr=False)
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def sent_to(self) -> list[str]:
        return [d.channel_id for d in self.deliveries if d.sent]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "topic": self.topic,
            "publishedAt": self.published_at,
            "correlationId": self.correlation_id,
            "deliveries": [
                {"channelId": d.channel_id, "sent": d.sent, "reason": d.reason, "copies": d.copies}
                for d in self.deliveries
            ],
        }
