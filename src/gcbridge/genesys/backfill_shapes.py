"""REST answers reshaped into the bodies of the live topics they stand for (pure).

A back-filled event must look exactly like the notification it replaces, so that its ``dedup_key`` (topic +
canonical body) equals the live event's when the state is the same. The REST and notification models differ
(Genesys SDK attribute maps): these functions drop the REST-only fields, add the topic-only ones and
restructure where the topic nests differently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from gcbridge.genesys.backfill_plan import iso, parse_iso

__all__ = [
    "detail_events",
    "topic_conversation",
    "topic_observation",
    "topic_presence",
    "topic_routing_status",
]

Body = dict[str, Any]

# Fields of the REST ``Conversation`` / ``Participant`` / call that the topic models do not have.
# ``address`` of a conversation: the notification carries none (only participants have one).
_CONVERSATION_REST_ONLY: Final = frozenset(
    {"name", "startTime", "endTime", "state", "conversationIds", "selfUri", "address", "utilizationLabelId"}
)
_PARTICIPANT_REST_ONLY: Final = frozenset(
    {
        "ani",
        "aniName",
        "dnis",
        "locale",
        "participantType",
        "queueName",
        "startTime",
        "userUri",
        "wrapupSkipped",
        "evaluations",
        "wrapupPrompt",
        "wrapupTimeoutMs",
    }
)
_CALL_REST_ONLY: Final = frozenset({"segments", "startAlertingTime", "recordingId", "self", "other"})
_WRAPUP_TOPIC_FIELDS: Final = ("code", "notes", "tags", "durationSeconds", "endTime")
#: Call ``disconnectType`` spellings that differ between REST and the topic.
_DISCONNECT_TO_TOPIC: Final = {
    "endpoint.donotdisturb": "endpoint.dnd",
    "transfer.donotdisturb": "transfer.dnd",
}
_PRESENCE_REST_ONLY: Final = frozenset({"id", "name", "selfUri", "sourceId", "userId"})
#: Analytics segment disconnect types -> the upper-case spelling of detail events.
_DETAIL_DISCONNECT: Final = {
    "endpoint": "ENDPOINT",
    "peer": "PEER",
    "transfer": "TRANSFER",
    "noAnswerTransfer": "NO_ANSWER_TRANSFER",
}
#: Fields a detail-event family's SDK model lacks.
_DETAIL_ABSENT: Final = {
    "acd": ("userId",),
    "acw": ("divisionId",),
    "customer": ("queueId", "userId"),
    "user": (),
}
_PURPOSE_OF_FAMILY: Final = {"acd": "acd", "customer": "customer", "user": "agent", "acw": "agent"}


def _without(body: Body, drop: frozenset[str]) -> Body:
    return {k: v for k, v in body.items() if k not in drop}


# == conversations ===========================================================================================
def topic_conversation(rest: Body) -> Body:
    """``GET /api/v2/conversations/{id}`` (``Conversation``) -> the body of
    ``v2.routing.queues.{id}.conversations`` and ``v2.users.{id}.conversations``
    (``QueueConversationEventTopicConversation``)."""
    body = _without(rest, _CONVERSATION_REST_ONLY)
    state = body.get("recordingState")
    if isinstance(state, str):
        body["recordingState"] = state.lower()  # REST NONE/ACTIVE/PAUSED, topic none/active/paused
    divisions = body.get("divisions")
    if isinstance(divisions, list):
        body["divisions"] = [_topic_division(d) for d in divisions if isinstance(d, dict)]
    participants = body.get("participants")
    if isinstance(participants, list):
        body["participants"] = [_topic_participant(p) for p in participants if isinstance(p, dict)]
    return body


def _topic_division(division: Body) -> Body:
    out = dict(division)
    inner = out.get("division")
    if isinstance(inner, dict):
        out["division"] = {k: v for k, v in inner.items() if k not in ("selfUri", "name")}
    entities = out.get("entities")
    if isinstance(entities, list):
        out["entities"] = [
            {k: v for k, v in e.items() if k not in ("selfUri", "name")}
            for e in entities
            if isinstance(e, dict)
        ]
    return out


def _topic_participant(rest: Body) -> Body:
    body = _without(rest, _PARTICIPANT_REST_ONLY)
    wrapup = body.get("wrapup")
    if isinstance(wrapup, dict):
        body["wrapup"] = {k: wrapup[k] for k in _WRAPUP_TOPIC_FIELDS if k in wrapup}
    if "wrapupRequired" in body:
        body["wrapupExpected"] = bool(body["wrapupRequired"]) and not isinstance(wrapup, dict)
    calls = body.get("calls")
    if isinstance(calls, list):
        body["calls"] = [_topic_call(c) for c in calls if isinstance(c, dict)]
    return body


def _topic_call(rest: Body) -> Body:
    body = _without(rest, _CALL_REST_ONLY)
    kind = body.get("disconnectType")
    if isinstance(kind, str):
        body["disconnectType"] = _DISCONNECT_TO_TOPIC.get(kind, kind)
    return body


# == users ===================================================================================================
def _upper_snake(name: str) -> str:
    """``OnQueue`` -> ``ON_QUEUE`` (presence definitions vs the topic); upper case stays as it is."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def topic_presence(rest: Body) -> Body:
    """One element of ``GET /api/v2/users/presences/purecloud/bulk`` (``UcUserPresence``) -> the body of
    ``v2.users.{id}.presence``: identity fields dropped, system presence in the topic's upper case, and
    ``primary`` (the PURECLOUD source is the primary presence)."""
    body = _without(rest, _PRESENCE_REST_ONLY)
    definition = body.get("presenceDefinition")
    if isinstance(definition, dict):
        definition = {k: v for k, v in definition.items() if k != "selfUri"}
        system = definition.get("systemPresence")
        if isinstance(system, str):
            definition["systemPresence"] = _upper_snake(system)
        body["presenceDefinition"] = definition
    body.setdefault("primary", True)
    return body


def topic_routing_status(rest: Body, user_id: str) -> Body:
    """``GET /api/v2/users/{id}/routingstatus`` (``RoutingStatus {userId, status, startTime}``) -> the body of
    ``v2.users.{id}.routingStatus`` (``{id, routingStatus: {status, startTime}}``)."""
    status = {k: rest[k] for k in ("status", "startTime") if k in rest}
    return {"id": rest.get("userId") or user_id, "routingStatus": status}


# == queue observations ======================================================================================
def topic_observation(container: Body, read_at: float) -> Body:
    """One result of the observations query (``{group, data[{metric, qualifier, stats}]}``) -> the body of
    ``v2.analytics.queues.{id}.observations`` (``{group, data[{interval, metrics[...]}]}``), as of
    ``read_at``."""
    metrics = [
        {k: d[k] for k in ("metric", "qualifier", "stats") if k in d}
        for d in container.get("data") or []
        if isinstance(d, dict)
    ]
    moment = iso(read_at)
    return {"group": container.get("group"), "data": [{"interval": f"{moment}/{moment}", "metrics": metrics}]}


# == detail events ===========================================================================================
def detail_events(conversation: Body, families: Iterable[str]) -> list[tuple[str, float, Body]]:
    """The detail events of ``families`` that an analytics conversation (one entry of the details query)
    implies so far, as ``(family, event time, body)`` in time order. Each is rebuilt from the participant's
    session and segments exactly as the live ``v2.detail.events.conversation.{id}.{family}`` body: flat,
    epoch milliseconds, upper-case enums."""
    wanted = set(families)
    out: list[tuple[str, float, Body]] = []
    participants = [p for p in conversation.get("participants") or [] if isinstance(p, dict)]
    for p in participants:
        for session in p.get("sessions") or []:
            if isinstance(session, dict):
                out += _session_events(conversation, participants, p, session, wanted)
    out.sort(key=lambda e: e[1])
    return out


def _session_events(
    conv: Body, participants: list[Body], p: Body, session: Body, wanted: set[str]
) -> list[tuple[str, float, Body]]:
    segments = [s for s in session.get("segments") or [] if isinstance(s, dict) and "segmentStart" in s]
    if not segments:
        return []
    purpose = p.get("purpose")
    start = parse_iso(segments[0]["segmentStart"])
    ended = [s for s in segments if s.get("disconnectType") and "segmentEnd" in s]
    end = parse_iso(ended[0]["segmentEnd"]) if ended else None
    disconnect = ended[0]["disconnectType"] if ended else None
    connected = _connected(purpose, segments, start)
    queue_id = next((s["queueId"] for s in segments if s.get("queueId")), None)
    divisions = conv.get("divisionIds") or []
    base: Body = {
        "conversationId": conv.get("conversationId"),
        "participantId": p.get("participantId"),
        "sessionId": session.get("sessionId"),
        "mediaType": str(session.get("mediaType", "")).upper() or None,
        "direction": str(session.get("direction", "")).upper() or None,
        "ani": session.get("ani"),
        "dnis": session.get("dnis"),
        "queueId": queue_id,
        "userId": p.get("userId"),
        "divisionId": divisions[0] if divisions else None,
    }
    events: list[tuple[str, float, Body]] = []
    prefix = {"acd": "acd", "customer": "customer", "agent": "user"}.get(str(purpose))
    if prefix is None:
        return []

    def add(family: str, at: float, extra: Body) -> None:
        if family not in wanted or _PURPOSE_OF_FAMILY[family.split(".")[0]] != purpose:
            return
        body = {"eventTime": round(at * 1000), **base, **extra}
        for absent in _DETAIL_ABSENT[family.split(".")[0]]:
            body.pop(absent, None)
        events.append((family, at, {k: v for k, v in body.items() if v is not None}))

    add(f"{prefix}.start", start, {})
    if end is not None:
        extra: Body = {"disconnectType": _DETAIL_DISCONNECT.get(str(disconnect), str(disconnect).upper())}
        if prefix in ("user", "customer") and connected is not None:
            extra["interactingDurationMs"] = round(end * 1000) - round(connected * 1000)
        if prefix == "user":
            extra["alertingDurationMs"] = round((connected if connected is not None else end) * 1000) - round(
                start * 1000
            )
        if prefix == "acd":
            answered = disconnect == "transfer"
            extra["acdOutcome"] = "ANSWERED" if answered else "ABANDON"
            if answered:
                extra["answeredUserId"] = _answered_by(participants, end)
        add(f"{prefix}.end", end, extra)
    wrapups = [s for s in segments if s.get("segmentType") == "wrapup" and "segmentEnd" in s]
    if purpose == "agent" and wrapups:
        w = wrapups[-1]
        w_start, w_end = parse_iso(w["segmentStart"]), parse_iso(w["segmentEnd"])
        add(
            "acw",
            w_end,
            {
                "wrapupCode": w.get("wrapUpCode"),
                "wrapupNotes": w.get("wrapUpNote"),
                "wrapupDurationMs": round(w_end * 1000) - round(w_start * 1000),
            },
        )
    return events


def _connected(purpose: Any, segments: list[Body], start: float) -> float | None:
    """When the participant connected: agents at their first ``interact`` segment, others at once."""
    if purpose != "agent":
        return start
    for s in segments:
        if s.get("segmentType") == "interact":
            return parse_iso(s["segmentStart"])
    return None


def _answered_by(participants: list[Body], at: float) -> str | None:
    """The agent who answered when the queue let go at ``at``: the last one connected by then."""
    best: tuple[float, str] | None = None
    for p in participants:
        if p.get("purpose") != "agent" or not isinstance(p.get("userId"), str):
            continue
        for session in p.get("sessions") or []:
            segments = [s for s in session.get("segments") or [] if isinstance(s, dict)]
            connected = _connected("agent", segments, 0.0) if segments else None
            if connected is not None and connected <= at and (best is None or connected >= best[0]):
                best = (connected, p["userId"])
    return best[1] if best else None
