"""What a :class:`~gcbridge.genesys.NotificationClient` yields: events, and gaps where events may be lost.

These types are the contract between the notification client and everything downstream (the bridge
service, user code). They are immutable values with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from gcbridge.core.dedup import dedup_key as _canonical_key


class Event(tuple):  # type: ignore[type-arg]  # a tuple: immutable, and the cheapest object to build
    """One notification from Genesys Cloud, delivered once even if several channels received it.

    Fields: ``topic``, ``body`` (the ``eventBody``), ``version``, ``metadata``, ``dedup_key``, ``received_at``
    (wall-clock UNIX seconds when the first copy arrived) and ``channel_id``. Immutable. Read the fields by
    name: the tuple's items are internal (item 4 holds the lazily computed ``dedup_key``, not the key).

    ``dedup_key`` identifies the notification across channels and paths (the same event received on the old
    and the new channel during a rotation has the same key); downstream stores use it for idempotency. It is
    the blake2b hash of the topic and the canonical (key-sorted) body, computed on first access when the
    client did not need it already. Two *distinct* notifications with the same topic and the same body (a
    status set to the same value twice) are both delivered, but share this key: a store that is idempotent
    on it keeps one of them.
    """

    __slots__ = ()

    def __new__(
        cls,
        topic: str,
        body: dict[str, Any],
        version: str | None,
        metadata: dict[str, Any],
        dedup_key: str,
        received_at: float,
        channel_id: str = "",
    ) -> Event:
        return _new(cls, (topic, body, version, metadata, [dedup_key], received_at, channel_id))

    topic: str = property(itemgetter(0))  # type: ignore[assignment]
    body: dict[str, Any] = property(itemgetter(1))  # type: ignore[assignment]
    version: str | None = property(itemgetter(2))  # type: ignore[assignment]
    metadata: dict[str, Any] = property(itemgetter(3))  # type: ignore[assignment]
    received_at: float = property(itemgetter(5))  # type: ignore[assignment]
    channel_id: str = property(itemgetter(6))  # type: ignore[assignment]

    @property
    def dedup_key(self) -> str:
        holder: list[str] = self[4]
        if not holder[0]:
            holder[0] = _canonical_key(self[0], self[1])
        return holder[0]

    def _fields(self) -> tuple[Any, ...]:
        return (self[0], self[1], self[2], self[3], self.dedup_key, self[5], self[6])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._fields() == other._fields()

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]  # the body is a dict

    def __repr__(self) -> str:
        return (
            f"Event(topic={self[0]!r}, body={self[1]!r}, version={self[2]!r}, metadata={self[3]!r}, "
            f"dedup_key={self.dedup_key!r}, received_at={self[5]!r}, channel_id={self[6]!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, self._fields())

    def __getnewargs__(self) -> tuple[Any, ...]:
        return self._fields()


_new = tuple.__new__


def make_event(
    topic: str,
    body: dict[str, Any],
    version: str | None,
    metadata: dict[str, Any],
    received_at: float,
    channel_id: str,
    dedup_key: str = "",
) -> Event:
    """Build an Event; an empty ``dedup_key`` is computed on first access.

    The Python intake builds Events with it; the compiled one (``_intake_c.pyx``) builds the same tuple in
    place: keep them in step (``tests/unit/test_intake.py`` checks the Events both build).
    """
    return _new(Event, (topic, body, version, metadata, [dedup_key], received_at, channel_id))


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
