"""The per-frame work of a socket reader, in Python: the reference implementation.

``_intake_c.pyx`` is the same thing compiled (Cython) and is what runs when it was built; this module
documents the behaviour and runs where no C compiler was available (or with ``GCBRIDGE_PURE_PYTHON=1``).
``tests/unit/test_intake.py`` runs the same cases against both, so keep the two in step.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import orjson

from gcbridge.core.dedup import CopyMatcher, DedupWindow, dedup_key
from gcbridge.genesys.events import make_event
from gcbridge.genesys.socket import METADATA_TOPIC, SYSTEM_PREFIX

# what Intake.take did with a frame
EVENT = 0  # an Event is in the buffer
DUPLICATE = 1  # a resend of an event already delivered: dropped
UNKNOWN_TOPIC = 2  # an Event is in the buffer, but for a topic not subscribed (the caller logs it)
OTHER = 3  # not an event (heartbeat, pong, system message, malformed object): ``other`` holds it
# and what Reader.step leaves for the socket reader (it also returns OTHER and UNKNOWN_TOPIC)
CLOSED = 4  # not a data message (close, error): the payload is the aiohttp message
MALFORMED = 5  # not JSON: the payload is the orjson.JSONDecodeError
SHARED = 6  # the shard has more than one socket now: the payload is the frame, for the caller to take
FULL = 7  # an Event is in the buffer, which has reached its limit
TAKEN = 8  # nothing: an Event is buffered and the consumer woken, or a duplicate was dropped

_DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)


class Buffer(Protocol):
    """What a Reader needs of the client's buffer: ``waiting[0]`` is set while the consumer waits."""

    waiting: list[Any]
    limit: int

    def wake_getter(self) -> None: ...


class Health(Protocol):
    last_frame: float


class Intake:
    """Turns text frames from one-socket-per-shard reading into Events in ``items`` (de-duplicated).

    One per client, shared by its socket readers. ``where`` is the topic -> shard index (read, never
    written); ``resends`` remembers ``hash((topic, CorrelationId))`` — or the frame's hash when it has no
    CorrelationId — so that an event a channel delivers twice is delivered once. The counters are the
    client's: the reader's rare path (several sockets per shard) adds to them too.
    """

    __slots__ = ("_append", "duplicates", "events", "items", "other", "resends", "unknown_topic", "where")

    def __init__(self, items: deque[Any], where: dict[str, int], resends: DedupWindow) -> None:
        self.items = items
        self._append = items.append
        self.where = where
        self.resends = resends
        self.events = 0
        self.duplicates = 0
        self.unknown_topic = 0
        self.other: Any = None

    def take(self, raw: str | bytes, now: float, channel_id: str) -> int:
        """Parse one frame received at ``now`` (monotonic seconds) on ``channel_id``; returns EVENT,
        DUPLICATE, UNKNOWN_TOPIC or OTHER. Raises ``orjson.JSONDecodeError`` when it is not JSON."""
        data, topic = parse(raw)
        if topic is None:
            self.other = data
            return OTHER
        meta = data.get("metadata")
        cid = meta.get("CorrelationId") if type(meta) is dict else None
        # a resend repeats the CorrelationId (cheaper than hashing the frame); else the frame is the key
        if not self.resends.first(hash((topic, cid)) if type(cid) is str and cid else hash(raw), now):
            self.duplicates += 1
            return DUPLICATE
        return deliver(self, data, topic, "", channel_id)

    def reader(
        self,
        health: Health,
        buffer: Buffer,
        shared_until: list[float],
        channel_id: str,
        clock: Callable[[], float],
    ) -> Reader:
        """One socket's side of the intake (see :class:`Reader`)."""
        return Reader(self, health, buffer, shared_until, channel_id, clock)


def parse(raw: str | bytes) -> tuple[Any, str | None]:
    """The parsed frame, and its topic when it is an event (None for heartbeats, system messages, replies and
    anything that is not a notification object). Raises ``orjson.JSONDecodeError``."""
    data = orjson.loads(raw)
    topic = data.get("topicName") if type(data) is dict else None
    if type(topic) is not str or topic == METADATA_TOPIC or topic.startswith(SYSTEM_PREFIX):
        return data, None
    return data, topic


def deliver(intake: Any, data: dict[str, Any], topic: str, key: str, channel_id: str) -> int:
    """Count an event that is not a copy and put it in the intake's buffer: EVENT or UNKNOWN_TOPIC."""
    status = EVENT
    if topic not in intake.where:
        intake.unknown_topic += 1
        status = UNKNOWN_TOPIC
    intake.events += 1
    body, meta = data.get("eventBody"), data.get("metadata")
    intake.items.append(
        make_event(
            topic,
            body if type(body) is dict else {"value": body},
            data.get("version"),
            meta if type(meta) is dict else {},
            time.time(),
            channel_id,
            key,
        )
    )
    return status


def take_shared(
    intake: Any, copies: CopyMatcher, conn: int, raw: str | bytes, now: float, channel_id: str
) -> int:
    """``Intake.take`` (of either implementation) for a shard that more than one socket serves (a rotation's
    overlap, redundant paths): each may deliver the same event, serialised its own way. First drop a resend
    on this socket ``conn`` (same CorrelationId), then match copies by canonical key, counted per socket, so
    that distinct events with identical bodies all get through. Rare, so never compiled."""
    data, topic = parse(raw)
    if topic is None:
        intake.other = data
        return OTHER
    meta = data.get("metadata")
    cid = meta.get("CorrelationId") if type(meta) is dict else None
    key = dedup_key(topic, data.get("eventBody"))
    if (type(cid) is str and cid and not intake.resends.first(hash((conn, topic, cid)), now)) or (
        not copies.first(key, conn, now)
    ):
        intake.duplicates += 1
        return DUPLICATE
    return deliver(intake, data, topic, key, channel_id)


class Reader:
    """One socket's side of the intake: ``step(msg)`` takes one aiohttp message and says what is left for
    the caller (TAKEN: nothing). Every data frame stamps ``health.last_frame``; an Event wakes the buffer's
    waiting consumer. While ``now < shared_until[0]`` the shard has other sockets: frames go back to the
    caller (SHARED). ``payload`` and ``now`` describe the last step: the message (CLOSED), the frame
    (SHARED), the decode error (MALFORMED), the parsed frame (OTHER)."""

    __slots__ = (
        "buffer",
        "channel_id",
        "clock",
        "health",
        "intake",
        "limit",
        "now",
        "payload",
        "shared_until",
    )

    def __init__(
        self,
        intake: Intake,
        health: Health,
        buffer: Buffer,
        shared_until: list[float],
        channel_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.intake, self.health, self.buffer = intake, health, buffer
        self.shared_until, self.channel_id, self.clock = shared_until, channel_id, clock
        self.limit = buffer.limit
        self.payload: Any = None
        self.now = 0.0

    def step(self, msg: aiohttp.WSMessage) -> int:
        """CLOSED, SHARED, MALFORMED, OTHER, UNKNOWN_TOPIC (an Event is buffered; wake the consumer), FULL
        (an Event is buffered, the consumer woken, the buffer at its limit) or TAKEN."""
        if msg[0] not in _DATA:
            self.payload = msg
            return CLOSED
        self.health.last_frame = self.now = now = self.clock()
        if now < self.shared_until[0]:
            self.payload = msg[1]
            return SHARED
        intake = self.intake
        try:
            status = intake.take(msg[1], now, self.channel_id)
        except orjson.JSONDecodeError as exc:
            self.payload = exc
            return MALFORMED
        if status == EVENT:
            if self.buffer.waiting[0] is not None:
                self.buffer.wake_getter()
            return FULL if len(intake.items) >= self.limit else TAKEN
        if status == DUPLICATE:
            return TAKEN
        self.payload = intake.other if status == OTHER else None
        return status


__all__ = [
    "CLOSED",
    "DUPLICATE",
    "EVENT",
    "FULL",
    "MALFORMED",
    "OTHER",
    "SHARED",
    "TAKEN",
    "UNKNOWN_TOPIC",
    "DedupWindow",
    "Intake",
    "Reader",
]
