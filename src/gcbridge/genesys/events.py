"""What a :class:`~gcbridge.genesys.NotificationClient` yields: events, and gaps where events may be lost.

These types are the contract between the notification client and everything downstream (the bridge
service, user code). They are immutable values with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gcbridge.core.dedup import dedup_key as _canonical_key


@dataclass(frozen=True, slots=True, init=False, repr=False, eq=False)
class Event:
    """One notification from Genesys Cloud, delivered once even if several channels received it.

    Fields: ``topic``, ``body`` (the ``eventBody``), ``version``, ``metadata``, ``dedup_key``, ``received_at``
    (wall-clock UNIX seconds when the first copy arrived) and ``channel_id``. Immutable; compared by value
    (all seven fields), not hashable (the body is a dict).

    ``dedup_key`` identifies the notification across channels and paths (the same event received on the old
    and the new channel during a rotation has the same key); downstream stores use it for idempotency. It is
    the blake2b hash of the topic and the canonical (key-sorted) body. Give ``""`` to have it computed on
    first access: a client with one socket per shard never needs it itself, so only a consumer that reads it
    pays for it. Two *distinct* notifications with the same topic and the same body (a status set to the same
    value twice) are both delivered, but share this key: a store that is idempotent on it keeps one of them.
    """

    topic: str
    body: dict[str, Any]
    version: str | None
    metadata: dict[str, Any]
    # ``dedup_key`` as given, or "" until its first access computes it (see the property)
    _dedup_key: str
    received_at: float
    channel_id: str

    def __init__(
        self,
        topic: str,
        body: dict[str, Any],
        version: str | None,
        metadata: dict[str, Any],
        dedup_key: str,
        received_at: float,
        channel_id: str = "",
    ) -> None:
        # frozen: the generated __setattr__ refuses every write, so the fields are set beneath it
        put = object.__setattr__
        put(self, "topic", topic)
        put(self, "body", body)
        put(self, "version", version)
        put(self, "metadata", metadata)
        put(self, "_dedup_key", dedup_key)
        put(self, "received_at", received_at)
        put(self, "channel_id", channel_id)

    @property
    def dedup_key(self) -> str:
        """The canonical key of (topic, body); computed once, on first access, when not given."""
        if not self._dedup_key:
            object.__setattr__(self, "_dedup_key", _canonical_key(self.topic, self.body))
        return self._dedup_key

    def _values(self) -> tuple[Any, ...]:
        return (
            self.topic,
            self.body,
            self.version,
            self.metadata,
            self.dedup_key,
            self.received_at,
            self.channel_id,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not Event:
            return NotImplemented
        return self._values() == Event._values(other)

    __hash__ = None  # type: ignore[assignment]  # the body is a dict

    def __repr__(self) -> str:
        return (
            f"Event(topic={self.topic!r}, body={self.body!r}, version={self.version!r}, "
            f"metadata={self.metadata!r}, dedup_key={self.dedup_key!r}, received_at={self.received_at!r}, "
            f"channel_id={self.channel_id!r})"
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """A period in which events on ``topics`` may have been missed.

    ``start``/``end`` are wall-clock UNIX seconds: ``start`` is the failed socket's last good moment minus
    ``gap_margin`` (events in flight). The last good moment is the last frame read from it, or, if a slow
    consumer had held the reader back and it had not caught up since, the moment that back-pressure began
    (frames sent after it may have waited unread and been lost with the socket). ``end`` is the moment the
    replacement subscription was live. A consumer back-fills the interval through the REST APIs (for example
    analytics queries).
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
