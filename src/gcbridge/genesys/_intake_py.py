"""The per-frame work of a socket reader and of the consumer, in Python: the reference implementation.

A reader stamps each frame's arrival; an event frame it leaves as text for the consumer, who parses,
de-duplicates and builds the Event as it takes it (:meth:`Intake.finish`); other frames it parses at once.

``_intake_c.pyx`` is the same thing compiled (Cython) and is what runs when it was built; this module
documents the behaviour and runs where no C compiler was available (or with ``GCBRIDGE_PURE_PYTHON=1``).
``tests/unit/test_intake.py`` and ``test_intake_deferred.py`` run the same cases against both, so keep the
two in step.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
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

    Deferred frames: a reader made with a ``shard`` leaves event frames unparsed, as their text in ``items``,
    and what it knew of each (when it came, on which channel and shard) in ``pending``, in the same order;
    the consumer turns each into its Event with :meth:`finish` as it takes it. Why: parsing where the Event
    is used keeps the parsed objects in the CPU cache, instead of parsing a socket read's worth of frames
    (hundreds) and handing them over (bench/README.md: this is worth more than all the per-event work).
    The counters and the de-duplication window then move when the consumer takes the frames.
    """

    __slots__ = (
        "_append",
        "duplicates",
        "events",
        "items",
        "other",
        "pending",
        "problems",
        "resends",
        "unknown_topic",
        "where",
    )

    def __init__(self, items: deque[Any], where: dict[str, int], resends: DedupWindow) -> None:
        self.items = items
        self._append = items.append
        self.where = where
        self.resends = resends
        self.events = 0
        self.duplicates = 0
        self.unknown_topic = 0
        self.other: Any = None
        self.pending: deque[tuple[float, float, str, int]] = deque()
        # deferred frames that :meth:`finish` found were not plain events: (channel_id, shard, status,
        # payload): MALFORMED and the decode error, OTHER and the parsed frame, UNKNOWN_TOPIC and the Event
        # (delivered all the same). The consumer reports and clears them.
        self.problems: list[tuple[str, int, int, Any]] = []

    @property
    def deferred(self) -> int:
        """How many deferred frames wait for :meth:`finish`."""
        return len(self.pending)

    def take(self, raw: str | bytes, now: float, channel_id: str) -> int:
        """Parse one frame received at ``now`` (monotonic seconds) on ``channel_id``; returns EVENT,
        DUPLICATE, UNKNOWN_TOPIC or OTHER. Raises ``orjson.JSONDecodeError`` when it is not JSON."""
        status, event = self._make(raw, now, channel_id, time.time())
        if event is not None:
            self.items.append(event)
        return status

    def _make(self, raw: str | bytes, now: float, channel_id: str, wall: float) -> tuple[int, Any]:
        # take() without the append: the status and the Event (EVENT, UNKNOWN_TOPIC) or None
        data, topic = parse(raw)
        if topic is None:
            self.other = data
            return OTHER, None
        meta = data.get("metadata")
        cid = meta.get("CorrelationId") if type(meta) is dict else None
        # a resend repeats the CorrelationId (cheaper than hashing the frame); else the frame is the key
        if not self.resends.first(hash((topic, cid)) if type(cid) is str and cid else hash(raw), now):
            self.duplicates += 1
            return DUPLICATE, None
        return build(self, data, topic, "", channel_id, wall)

    def defer(self, raw: str, now: float, wall: float, channel_id: str, shard: int) -> None:
        """Leave an event frame for the consumer: its text goes to ``items``, the rest to ``pending``."""
        self.pending.append((now, wall, channel_id, shard))
        self.items.append(raw)

    def finish(self, raw: str) -> Any:
        """The Event of the oldest deferred frame ``raw`` (taken from ``items`` by the caller), or None: a
        resend (counted), or not an event after all (noted in ``problems``)."""
        if not self.pending:
            raise RuntimeError("finish() without a deferred frame")
        now, wall, channel_id, shard = self.pending.popleft()
        try:
            status, event = self._make(raw, now, channel_id, wall)
        except orjson.JSONDecodeError as exc:
            self.problems.append((channel_id, shard, MALFORMED, exc))
            return None
        if status == UNKNOWN_TOPIC:
            self.problems.append((channel_id, shard, UNKNOWN_TOPIC, event))
        elif status == OTHER:  # its first topicName said event, its last says otherwise
            self.problems.append((channel_id, shard, OTHER, self.other))
        return event

    def take_batch(self, max_size: int) -> list[Any]:
        """Take the oldest ``max_size`` items from ``items`` (all, when fewer): :meth:`finish_all` of them."""
        items = self.items
        return self.finish_all([items.popleft() for _ in range(min(len(items), max_size))])

    def finish_all(self, batch: list[Any]) -> list[Any]:
        """``batch`` with each deferred frame replaced by its Event, or left out (see :meth:`finish`)."""
        out = []
        for item in batch:
            if type(item) is str:
                item = self.finish(item)
                if item is None:
                    continue
            out.append(item)
        return out

    def reader(
        self,
        health: Health,
        buffer: Buffer,
        shared_until: list[float],
        channel_id: str,
        clock: Callable[[], float],
        shard: int | None = None,
    ) -> Reader:
        """One socket's side of the intake (see :class:`Reader`); with a ``shard``, it defers event frames."""
        return Reader(self, health, buffer, shared_until, channel_id, clock, shard)


def parse(raw: str | bytes) -> tuple[Any, str | None]:
    """The parsed frame, and its topic when it is an event (None for heartbeats, system messages, replies and
    anything that is not a notification object). Raises ``orjson.JSONDecodeError``."""
    data = orjson.loads(raw)
    topic = data.get("topicName") if type(data) is dict else None
    if type(topic) is not str or topic == METADATA_TOPIC or topic.startswith(SYSTEM_PREFIX):
        return data, None
    return data, topic


# what a reader may defer: the frame's first key is topicName, and the topic, free of escapes, is an event's
_FIRST_TOPIC = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"topicName"[ \t\n\r]*:[ \t\n\r]*"([^"\\\x00-\x1f]+)"')


def starts_as_event(raw: object) -> bool:
    """Whether a reader would defer this frame: text whose first key is ``topicName`` with an event's topic
    (not a heartbeat or system topic) and no escape in it. A cheap look at the first characters, never a
    verdict: the consumer's parse decides, and a frame this declines is parsed by the reader as before. (The
    compiled twin also declines text wider than one byte per character.)"""
    if type(raw) is not str:
        return False
    found = _FIRST_TOPIC.match(raw)
    if found is None:
        return False
    topic = found.group(1)
    return topic != METADATA_TOPIC and not topic.startswith(SYSTEM_PREFIX)


def build(
    intake: Any, data: dict[str, Any], topic: str, key: str, channel_id: str, wall: float
) -> tuple[int, Any]:
    """Count an event that is not a copy and build it: (EVENT or UNKNOWN_TOPIC, the Event)."""
    status = EVENT
    if topic not in intake.where:
        intake.unknown_topic += 1
        status = UNKNOWN_TOPIC
    intake.events += 1
    body, meta = data.get("eventBody"), data.get("metadata")
    event = make_event(
        topic,
        body if type(body) is dict else {"value": body},
        data.get("version"),
        meta if type(meta) is dict else {},
        wall,
        channel_id,
        key,
    )
    return status, event


def deliver(intake: Any, data: dict[str, Any], topic: str, key: str, channel_id: str) -> int:
    """Count an event that is not a copy and put it in the intake's buffer: EVENT or UNKNOWN_TOPIC."""
    status, event = build(intake, data, topic, key, channel_id, time.time())
    intake.items.append(event)
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
    (SHARED), the decode error (MALFORMED), the parsed frame (OTHER). With a ``shard``, a frame that
    :func:`starts_as_event` is deferred (see :class:`Intake`) and counts as an Event here; the compiled
    twin then stamps health for such frames at most once a millisecond (a float and an attribute write per
    frame cost ~2 % at full rate; stall detection works in seconds)."""

    __slots__ = (
        "buffer",
        "channel_id",
        "clock",
        "health",
        "intake",
        "limit",
        "now",
        "payload",
        "shard",
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
        shard: int | None = None,
    ) -> None:
        self.intake, self.health, self.buffer = intake, health, buffer
        self.shard = shard
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
        intake, raw = self.intake, msg[1]
        if self.shard is not None and starts_as_event(raw):
            intake.defer(raw, now, time.time(), self.channel_id, self.shard)
            status = EVENT
        else:
            try:
                status = intake.take(raw, now, self.channel_id)
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


class Stream:
    """``async for item in client``: an async iterator over the client's buffer. Here every item goes through
    ``slow(item)``, the client's coroutine that waits for items, finishes deferred frames, reports what
    they held besides Events, and ends the stream; it takes an item already taken from the buffer, or None.
    The compiled twin hands out ready items itself and calls ``slow`` for the rest."""

    __slots__ = ("_slow",)

    def __init__(
        self, intake: Intake, buffer: Any, end: object, slow: Callable[[Any], Awaitable[Any]]
    ) -> None:
        self._slow = slow

    def __aiter__(self) -> Stream:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._slow(None)


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
    "Stream",
    "starts_as_event",
]
