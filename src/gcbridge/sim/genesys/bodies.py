"""Realistic event bodies for the common topic families (shapes follow the SDK's ``*EventTopic*`` models).

Conversation bodies carry the conversation ``id`` and ``participants``; detail events carry
``conversationId``; so downstream code can key by conversation. Conversation ids come from a small
rotating pool, so that a stream contains several updates of the same conversation, as a real one does.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]

_PRESENCES = ["Available", "Busy", "Away", "Break", "Meal", "Meeting", "Training", "Offline"]
_ROUTING = ["OFF_QUEUE", "IDLE", "INTERACTING", "NOT_RESPONDING", "COMMUNICATING"]
_STATES = ["alerting", "connected", "disconnected", "terminated"]
_MEDIA = ["voice", "chat", "email", "message", "callback"]
#: The participant field that lists a medium's sessions (``calls`` for voice, as in the SDK models).
_MEDIA_FIELD = {
    "voice": "calls",
    "chat": "chats",
    "email": "emails",
    "message": "messages",
    "callback": "callbacks",
}
#: Fields that the SDK model of a detail event family (``AcdStartDetailEventTopicAcdStartEvent``, ...) lacks.
_DETAIL_FIELDS_ABSENT: dict[str, tuple[str, ...]] = {
    "acd": ("userId",),
    "acw": ("divisionId",),
    "customer": ("queueId", "userId"),
}
_METRICS = ["oWaiting", "oAlerting", "oInteracting", "oActiveUsers"]
_ON_QUEUE = ["IDLE", "INTERACTING", "NOT_RESPONDING", "COMMUNICATING"]


def iso(ts: float) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ``, the date format of the Genesys API, to the nearest millisecond (the
    epoch milliseconds of detail events round the same way)."""
    ms = round(ts * 1000)
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class BodyGenerator:
    """Makes a body for any topic; families it does not know get a generic body with an ``id``."""

    def __init__(self, seed: int | None = None, conversation_pool: int = 50) -> None:
        self._rng = random.Random(seed)
        self._pool = [self._uuid() for _ in range(conversation_pool)]
        self._families: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Body]]] = [
            (re.compile(r"^v2\.users\.([^.]+)\.presence$"), self._presence),
            (re.compile(r"^v2\.users\.([^.]+)\.routingStatus$"), self._routing_status),
            (re.compile(r"^v2\.users\.([^.]+)\.conversations(?:\.(\w+))?$"), self._user_conversation),
            (
                re.compile(r"^v2\.routing\.queues\.([^.]+)\.conversations(?:\.(\w+))?$"),
                self._queue_conversation,
            ),
            (re.compile(r"^v2\.detail\.events\.conversation\.([^.]+)\.(.+)$"), self._detail_event),
            (re.compile(r"^v2\.analytics\.queues\.([^.]+)\.observations$"), self._queue_observation),
            (re.compile(r"^v2\.conversations\.chats\.([^.]+)\.messages$"), self._chat_message),
        ]

    def body(self, topic: str, size_hint: int = 0) -> Body:
        """A body for ``topic``; ``size_hint`` pads it with attributes to about that many bytes."""
        for pattern, make in self._families:
            match = pattern.match(topic)
            if match is not None:
                body = make(match)
                break
        else:
            body = {"id": self._uuid(), "topic": topic, "timestamp": iso(time.time())}
        if size_hint > 0:
            body["attributes"] = {f"attr{i:05d}": "x" * 40 for i in range(max(1, size_hint // 52))}
        return body

    # -- families --------------------------------------------------------------------------------------------
    def _presence(self, m: re.Match[str]) -> Body:
        presence = self._rng.choice(_PRESENCES)
        return {
            "source": "PURECLOUD",
            "presenceDefinition": {"id": self._uuid(), "systemPresence": presence},
            "message": "",
            "modifiedDate": iso(time.time()),
        }

    def _routing_status(self, m: re.Match[str]) -> Body:
        return {"routingStatus": {"status": self._rng.choice(_ROUTING), "startTime": iso(time.time())}}

    def _participants(self, user_id: str | None = None, queue_id: str | None = None) -> list[Body]:
        media = self._rng.choice(_MEDIA)
        now = iso(time.time())
        customer: Body = {
            "id": self._uuid(),
            "purpose": "customer",
            "connectedTime": now,
            "address": "tel:+13175550" + str(self._rng.randint(100, 999)),
            _MEDIA_FIELD[media]: [{"id": self._uuid(), "state": self._rng.choice(_STATES)}],
        }
        agent: Body = {
            "id": self._uuid(),
            "purpose": "agent",
            "userId": user_id or self._uuid(),
            "queueId": queue_id or self._uuid(),
            "connectedTime": now,
            _MEDIA_FIELD[media]: [{"id": self._uuid(), "state": self._rng.choice(_STATES)}],
            "wrapupRequired": self._rng.random() < 0.5,
        }
        return [customer, agent]

    def _conversation(self, user_id: str | None, queue_id: str | None) -> Body:
        return {
            "id": self._rng.choice(self._pool),
            "maxParticipants": 2,
            "recordingState": "none",
            "participants": self._participants(user_id, queue_id),
            "divisions": [{"division": {"id": self._uuid()}, "entities": []}],
        }

    def _user_conversation(self, m: re.Match[str]) -> Body:
        return self._conversation(m.group(1), None)

    def _queue_conversation(self, m: re.Match[str]) -> Body:
        return self._conversation(None, m.group(1))

    def _detail_event(self, m: re.Match[str]) -> Body:
        now = time.time()
        body: Body = {
            "eventTime": int(now * 1000),
            "conversationId": m.group(1),
            "participantId": self._uuid(),
            "sessionId": self._uuid(),
            "mediaType": self._rng.choice(_MEDIA).upper(),
            "direction": self._rng.choice(["INBOUND", "OUTBOUND"]),
            "queueId": self._uuid(),
            "userId": self._uuid(),
            "divisionId": self._uuid(),
        }
        for absent in _DETAIL_FIELDS_ABSENT.get(m.group(2).split(".")[0], ()):
            del body[absent]
        return body

    def _queue_observation(self, m: re.Match[str]) -> Body:
        # the topic's shape (QueueObservationNotification), not the observations query's: the counts sit in
        # data[0].metrics, agents on queue once per routing status (the qualifier)
        now = iso(time.time())
        metrics: list[Body] = [
            {"metric": metric, "stats": {"count": self._rng.randint(0, 40)}}
            for metric in self._rng.sample(_METRICS, 2)
        ]
        metrics += [
            {"metric": "oOnQueueUsers", "qualifier": status, "stats": {"count": self._rng.randint(0, 20)}}
            for status in self._rng.sample(_ON_QUEUE, 2)
        ]
        return {
            "group": {"queueId": m.group(1), "mediaType": self._rng.choice(_MEDIA)},
            "data": [{"interval": f"{now}/{now}", "metrics": metrics}],
        }

    def _chat_message(self, m: re.Match[str]) -> Body:
        return {
            "conversation": {"id": m.group(1), "selfUri": f"/api/v2/conversations/{m.group(1)}"},
            "sender": {"id": self._uuid()},
            "body": "Hello, I need help with my order",
            "bodyType": "standard",
            "timestamp": iso(time.time()),
            "id": self._uuid(),
        }

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


#: Topic templates used by the traffic generator and the CLI when the caller gives none.
SAMPLE_TOPICS = (
    "v2.users.{user}.presence",
    "v2.users.{user}.routingStatus",
    "v2.users.{user}.conversations",
    "v2.routing.queues.{queue}.conversations",
    "v2.analytics.queues.{queue}.observations",
)

#: (topic template, description) listed by ``GET /api/v2/notifications/availabletopics``.
AVAILABLE_TOPICS = (
    ("v2.users.{id}.presence", "Presence changes of a user"),
    ("v2.users.{id}.routingStatus", "Routing status changes of a user"),
    ("v2.users.{id}.conversations", "Conversations of a user"),
    ("v2.routing.queues.{id}.conversations", "Conversations in a queue"),
    ("v2.analytics.queues.{id}.observations", "Real-time observations of a queue"),
    ("v2.detail.events.conversation.{id}.acd.start", "A conversation entered a queue"),
    ("v2.detail.events.conversation.{id}.acd.end", "A conversation left a queue"),
    ("v2.detail.events.conversation.{id}.acw", "After-call work of a conversation"),
    ("v2.detail.events.conversation.{id}.customer.start", "A customer joined a conversation"),
    ("v2.detail.events.conversation.{id}.customer.end", "A customer left a conversation"),
    ("v2.detail.events.conversation.{id}.user.start", "An agent joined a conversation"),
    ("v2.detail.events.conversation.{id}.user.end", "An agent left a conversation"),
    ("v2.conversations.chats.{id}.messages", "Messages of a chat conversation"),
)
