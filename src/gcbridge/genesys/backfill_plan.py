"""What a back-fill of a gap must do (pure): topic families, query bodies, which conversations count, pacing.

A gap names individual topics. :func:`plan` sorts them into the families the REST API can repair
(conversations of queues and users, detail events, presence, routing status, queue observations) and the
rest, which stay open for a person. The query bodies built here are what
``POST /api/v2/analytics/conversations/details/query`` and ``.../queues/observations/query`` take.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "DETAIL_FAMILIES",
    "OBSERVATION_METRICS",
    "BackfillPlan",
    "RollingLimit",
    "chunks",
    "details_query",
    "had_activity",
    "iso",
    "observations_query",
    "parse_iso",
    "plan",
]

#: Detail-event families that can be rebuilt from analytics sessions and segments.
DETAIL_FAMILIES: Final = (
    "customer.start",
    "customer.end",
    "acd.start",
    "acd.end",
    "user.start",
    "user.end",
    "acw",
)
#: The metrics of a queue observation topic, in the order the topic carries them.
OBSERVATION_METRICS: Final = ("oWaiting", "oAlerting", "oInteracting", "oOnQueueUsers", "oOffQueueUsers")

_ID = r"([^.]+)"
_QUEUE_CONVERSATIONS = re.compile(rf"v2\.routing\.queues\.{_ID}\.conversations")
_USER_CONVERSATIONS = re.compile(rf"v2\.users\.{_ID}\.conversations")
_DETAIL = re.compile(rf"v2\.detail\.events\.conversation\.{_ID}\.(.+)")
_PRESENCE = re.compile(rf"v2\.users\.{_ID}\.presence")
_ROUTING = re.compile(rf"v2\.users\.{_ID}\.routingStatus")
_OBSERVATIONS = re.compile(rf"v2\.analytics\.queues\.{_ID}\.observations")


@dataclass(frozen=True)
class BackfillPlan:
    """A gap's topics by family: id -> topic (detail events: conversation id -> family -> topic), and the
    topics no REST call can repair with the reason."""

    queue_conversations: dict[str, str] = field(default_factory=dict)
    user_conversations: dict[str, str] = field(default_factory=dict)
    details: dict[str, dict[str, str]] = field(default_factory=dict)
    presence: dict[str, str] = field(default_factory=dict)
    routing_status: dict[str, str] = field(default_factory=dict)
    observations: dict[str, str] = field(default_factory=dict)
    unfillable: dict[str, str] = field(default_factory=dict)
    """topic -> why it cannot be back-filled."""


def plan(topics: Iterable[str]) -> BackfillPlan:
    """Sort ``topics`` (individual topic names) into the back-fill families."""
    result = BackfillPlan()
    for topic in dict.fromkeys(topics):
        if m := _QUEUE_CONVERSATIONS.fullmatch(topic):
            result.queue_conversations[m[1]] = topic
        elif m := _USER_CONVERSATIONS.fullmatch(topic):
            result.user_conversations[m[1]] = topic
        elif m := _PRESENCE.fullmatch(topic):
            result.presence[m[1]] = topic
        elif m := _ROUTING.fullmatch(topic):
            result.routing_status[m[1]] = topic
        elif m := _OBSERVATIONS.fullmatch(topic):
            result.observations[m[1]] = topic
        elif m := _DETAIL.fullmatch(topic):
            if m[2] in DETAIL_FAMILIES:
                result.details.setdefault(m[1], {})[m[2]] = topic
            else:
                result.unfillable[topic] = (
                    f"detail event family {m[2]!r} cannot be rebuilt from analytics sessions and segments "
                    f"(can: {', '.join(DETAIL_FAMILIES)})"
                )
        else:
            result.unfillable[topic] = (
                "no REST source for this topic family (back-fill covers queue and user conversations, "
                "conversation detail events, user presence and routing status, queue observations)"
            )
    return result


# -- times ---------------------------------------------------------------------------------------------------
def iso(ts: float) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` (the API's date format), to the nearest millisecond."""
    ms = round(ts * 1000)
    whole = datetime.fromtimestamp(ms // 1000, UTC)
    return whole.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(text: str) -> float:
    """UNIX seconds of an API date (``...Z`` or with an offset); raises ValueError when unreadable."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# -- queries -------------------------------------------------------------------------------------------------
def details_query(
    start: float, end: float, dimension: str, values: Sequence[str], page_size: int, page_number: int
) -> dict[str, Any]:
    """A ``ConversationQuery``: conversations with a segment whose ``dimension`` (``queueId``, ``userId``,
    or ``conversationId`` as a conversation filter) is one of ``values``, oldest first, so that conversations
    that start while we page land on the last pages instead of shifting the earlier ones."""
    predicates = [
        {"type": "dimension", "dimension": dimension, "operator": "matches", "value": v} for v in values
    ]
    query: dict[str, Any] = {
        "interval": f"{iso(start)}/{iso(end)}",
        "order": "asc",
        "orderBy": "conversationStart",
        "paging": {"pageSize": page_size, "pageNumber": page_number},
    }
    key = "conversationFilters" if dimension == "conversationId" else "segmentFilters"
    query[key] = [{"type": "or", "predicates": predicates}]
    return query


def had_activity(conversation: dict[str, Any], start: float, end: float) -> bool:
    """Whether an analytics conversation may have changed within ``[start, end]``: it started by ``end`` and
    had not ended before ``start``. (The sync query returns whole days of conversations.)"""
    try:
        began = parse_iso(conversation["conversationStart"])
        ended_text = conversation.get("conversationEnd")
        ended = parse_iso(ended_text) if isinstance(ended_text, str) else None
    except (KeyError, TypeError, ValueError):
        return True  # unreadable dates: look at it rather than lose it
    return began <= end and (ended is None or ended >= start)


def observations_query(queue_ids: Sequence[str], metrics: Sequence[str]) -> dict[str, Any]:
    """A ``QueueObservationQuery`` for ``queue_ids`` (voice and every other media type)."""
    return {
        "filter": {
            "type": "or",
            "predicates": [{"type": "dimension", "dimension": "queueId", "value": q} for q in queue_ids],
        },
        "metrics": list(metrics),
    }


def chunks(values: Sequence[str], size: int) -> list[list[str]]:
    """``values`` in lists of at most ``size``."""
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


# -- pacing --------------------------------------------------------------------------------------------------
class RollingLimit:
    """At most ``limit`` requests in any ``window`` seconds, counted the conservative way round: a request
    holds its slot from the moment it is sent until ``window`` seconds after its answer came back. A server
    counting arrivals therefore never sees more than ``limit`` in any window, whatever the network delays."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        if limit < 1:
            raise ValueError(f"a rate limit must be >= 1 request per window, got {limit}")
        self.limit = limit
        self.window = window
        self._done: deque[float] = deque()  # answer times, oldest first
        self._in_flight = 0

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may be sent (0: now)."""
        while self._done and self._done[0] + self.window <= now:
            self._done.popleft()
        if self._in_flight + len(self._done) < self.limit:
            return 0.0
        if not self._done:
            return self.window  # every slot is in flight: look again later
        return self._done[0] + self.window - now

    def sent(self) -> None:
        self._in_flight += 1

    def answered(self, now: float) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._done.append(now)
