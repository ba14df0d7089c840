"""The per-frame work of the socket readers: parse a frame, tell an event from the rest, drop what was
delivered already, build the :class:`~gcbridge.genesys.events.Event`. Pure: no I/O, the clocks passed in.

One :class:`Intake` per client, shared by its readers, so that de-duplication has one point for every
socket and path. Two ways to tell a repeat, chosen per frame by the reader:

* a shard served by one socket (the common case) only sees *resends*: the same frame again on the same
  channel. They repeat the ``CorrelationId``, so ``(topic, CorrelationId)`` is the key (the frame's text
  when there is none): cheap, and two distinct events with identical bodies both get through.
* a shard served by several sockets (a rotation's overlap, redundant paths) sees *copies*: the same event
  from another channel, serialised its own way. These are matched by the canonical key (topic and key-sorted
  body, :func:`gcbridge.core.dedup.dedup_key`), counted per socket by a
  :class:`~gcbridge.core.dedup.CopyMatcher`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import orjson

from gcbridge.core.dedup import CopyMatcher, DedupWindow, dedup_key
from gcbridge.genesys.events import Event
from gcbridge.genesys.socket import METADATA_TOPIC, SYSTEM_PREFIX


class Kind(enum.Enum):
    """What a frame turned out to be; :meth:`Intake.take` returns it with a payload."""

    EVENT = "event"  # a new event: the payload is its Event
    # a new event for a topic not subscribed: its Event, delivered all the same
    UNKNOWN_TOPIC = "unknown_topic"
    DUPLICATE = "duplicate"  # a resend or a copy of an event already delivered: dropped (payload None)
    OTHER = "other"  # not an event (heartbeat, pong, system message, reply, odd JSON): the parsed frame
    MALFORMED = "malformed"  # not JSON: the payload is the decoder's message


class Intake:
    """Turns frames into Events, once each. ``shard_of(topic)`` is the client's topic index (None: not
    subscribed); ``resends`` remembers resend keys, ``copies`` matches copies across sockets. The counters
    (``events``, ``duplicates``, ``unknown_topic``) are the client's statistics."""

    __slots__ = ("copies", "duplicates", "events", "resends", "shard_of", "unknown_topic")

    def __init__(
        self, shard_of: Callable[[str], int | None], resends: DedupWindow, copies: CopyMatcher
    ) -> None:
        self.shard_of = shard_of
        self.resends = resends
        self.copies = copies
        self.events = 0
        self.duplicates = 0
        self.unknown_topic = 0

    def take(
        self, raw: str | bytes, now: float, wall: float, channel_id: str, conn: int, shared: bool
    ) -> tuple[Kind, Any]:
        """One frame, received at ``now`` (monotonic seconds; the windows' clock) and ``wall`` (UNIX seconds;
        the Event's ``received_at``) on socket ``conn`` of ``channel_id``. ``shared``: other sockets may
        deliver this shard's events too (compare copies canonically). Never raises for any input."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Kind.MALFORMED, str(exc)
        topic = data.get("topicName") if type(data) is dict else None
        if type(topic) is not str or topic == METADATA_TOPIC or topic.startswith(SYSTEM_PREFIX):
            return Kind.OTHER, data
        body, meta = data.get("eventBody"), data.get("metadata")
        cid = meta.get("CorrelationId") if type(meta) is dict else None
        has_cid = type(cid) is str and cid != ""
        key = ""
        if shared:
            key = dedup_key(topic, body)
            # a resend on this socket first (same CorrelationId), then a copy from another socket
            resent = has_cid and not self.resends.first(hash((conn, topic, cid)), now)
            if resent or not self.copies.first(key, conn, now):
                self.duplicates += 1
                return Kind.DUPLICATE, None
        elif not self.resends.first(hash((topic, cid)) if has_cid else hash(raw), now):
            self.duplicates += 1
            return Kind.DUPLICATE, None
        self.events += 1
        kind = Kind.EVENT
        if self.shard_of(topic) is None:
            self.unknown_topic += 1
            kind = Kind.UNKNOWN_TOPIC
        event = Event(
            topic,
            body if type(body) is dict else {"value": body},
            data.get("version"),
            meta if type(meta) is dict else {},
            key,
            wall,
            channel_id,
        )
        return kind, event


__all__ = ["Intake", "Kind"]
