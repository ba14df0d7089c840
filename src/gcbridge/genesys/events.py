"""What a :class:`~gcbridge.genesys.NotificationClient` yields: events, and gaps where events may be lost.

These types are the contract between the notification client and everything downstream (the bridge
service, user code). They are immutable values with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

from gcbridge.core.dedup import dedup_key as _canonical_key


class Event:
    """One notification from Genesys Cloud, delivered once even if several channels received it.

    ``dedup_key`` identifies the notification across channels and paths (the same event received on the old
    and the new channel during a rotation has the same key); downstream stores use it for idempotency. It is
    the blake2b hash of the topic and the canonical (key-sorted) body, computed on first access when the
    client did not need it already.
    """

    __slots__ = ("_dedup_key", "body", "channel_id", "metadata", "received_at", "topic", "version")

    topic: str
    body: dict[str, Any]
    version: str | None
    _dedup_key: str
    metadata: dict[str, Any]
    received_at: float  # wall-clock UNIX seconds when the first copy arrived
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
        _init(self, topic, body, version, metadata, dedup_key, received_at, channel_id)

    @property
    def dedup_key(self) -> str:
        key: str = self._dedup_key
        if not key:
            key = _canonical_key(self.topic, self.body)
            _S_KEY(self, key)
        return key

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"Event is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Event is immutable (cannot delete {name!r})")

    def _fields(self) -> tuple[Any, ...]:
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
        if other.__class__ is not Event:
            return NotImplemented
        assert isinstance(other, Event)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # the body is a dict

    def __repr__(self) -> str:
        return (
            f"Event(topic={self.topic!r}, body={self.body!r}, version={self.version!r}, "
            f"metadata={self.metadata!r}, dedup_key={self.dedup_key!r}, received_at={self.received_at!r}, "
            f"channel_id={self.channel_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, self._fields())


_S_TOPIC, _S_BODY, _S_VERSION, _S_META, _S_KEY, _S_AT, _S_CHANNEL = (
    Event.__dict__[n].__set__
    for n in ("topic", "body", "version", "metadata", "_dedup_key", "received_at", "channel_id")
)


def _init(
    ev: Event,
    topic: str,
    body: dict[str, Any],
    version: str | None,
    metadata: dict[str, Any],
    key: str,
    received_at: float,
    channel_id: str,
) -> None:
    # slot setters bypass the immutability guard (this is the only writer)
    _S_TOPIC(ev, topic)
    _S_BODY(ev, body)
    _S_VERSION(ev, version)
    _S_META(ev, metadata)
    _S_KEY(ev, key)
    _S_AT(ev, received_at)
    _S_CHANNEL(ev, channel_id)


def make_event(
    topic: str,
    body: dict[str, Any],
    version: str | None,
    metadata: dict[str, Any],
    received_at: float,
    channel_id: str,
    dedup_key: str = "",
) -> Event:
    """Build an Event (the client's hot path); an empty ``dedup_key`` is computed on first access."""
    ev: Event = object.__new__(Event)
    _init(ev, topic, body, version, metadata, dedup_key, received_at, channel_id)
    return ev


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
