"""The org world rendered as JSON: notification bodies and REST answers, from the same snapshots (pure).

Field names and enum spellings follow the official SDK's models; where the REST and notification models
differ, these bodies differ the same way (spec 7.4):

* a conversation's ``recordingState`` is ``NONE`` on REST and ``none`` on the topic;
* a routing status is ``{userId, status, startTime}`` on REST and ``{id, routingStatus: {status, startTime}}``
  on the topic;
* presence is ``OnQueue`` in a REST presence definition and ``ON_QUEUE`` on the topic;
* detail events are flat, with epoch-millisecond times and upper-case enums.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gcbridge.sim.genesys.bodies import iso
from gcbridge.sim.genesys.org import (
    Change,
    Conversation,
    ConversationChanged,
    ObservationMetric,
    OrgWorld,
    Participant,
    PresenceChanged,
    QueueObserved,
    RoutingStatusChanged,
    User,
)

Body = dict[str, Any]

#: The world's disconnect types (analytics spelling) as the REST ``Call``, the topic call and detail events
#: spell them.
DISCONNECT_TYPES: dict[str, tuple[str, str, str]] = {
    "endpoint": ("endpoint", "endpoint", "ENDPOINT"),
    "peer": ("peer", "peer", "PEER"),
    "transfer": ("transfer", "transfer", "TRANSFER"),
    "noAnswerTransfer": ("transfer.noanswer", "transfer.noanswer", "NO_ANSWER_TRANSFER"),
}

#: Canonical (analytics, topic) system presence -> the spelling of a REST presence definition.
REST_PRESENCE: dict[str, str] = {
    "AVAILABLE": "Available",
    "AWAY": "Away",
    "BUSY": "Busy",
    "OFFLINE": "Offline",
    "ON_QUEUE": "OnQueue",
    "MEAL": "Meal",
    "BREAK": "Break",
    "MEETING": "Meeting",
    "TRAINING": "Training",
    "IDLE": "Idle",
}

#: Detail-event families and the fields their SDK models lack (``AcdStartDetailEventTopicAcdStartEvent``...).
_DETAIL_ABSENT: dict[str, tuple[str, ...]] = {
    "acd": ("userId",),
    "acw": ("divisionId",),
    "customer": ("queueId", "userId"),
    "user": (),
}


def _ms(ts: float) -> int:
    return round(ts * 1000)


def _opt_iso(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def _clean(body: Body) -> Body:
    """Drop absent (``None``) fields, as the real API omits them."""
    return {k: v for k, v in body.items() if v is not None}


# == conversations: notification topic shape =================================================================
def topic_conversation(conv: Conversation) -> Body:
    """``QueueConversationEventTopicConversation`` (also ``ConversationEventTopicConversation``)."""
    return {
        "id": conv.id,
        "maxParticipants": len(conv.participants),
        "participants": [_topic_participant(conv, p) for p in conv.participants],
        "recordingState": "none",
        "securePause": False,
        "divisions": [{"division": {"id": conv.division_id}, "entities": []}],
    }


def _topic_participant(conv: Conversation, p: Participant) -> Body:
    call = _clean(
        {
            "id": p.session_id,
            "state": p.call_state,
            "initialState": "alerting" if p.purpose == "agent" else "connected",
            "recording": False,
            "recordingState": "none",
            "muted": False,
            "confined": False,
            "held": p.held,
            "securePause": False,
            "disconnectType": DISCONNECT_TYPES[p.disconnect_type][1] if p.disconnect_type else None,
            "startHoldTime": _opt_iso(p.hold_start),
            "direction": "inbound",
            "connectedTime": _opt_iso(p.connected),
            "disconnectedTime": _opt_iso(p.end),
            "afterCallWorkRequired": p.wrapup_required or None,
        }
    )
    return _clean(
        {
            "id": p.id,
            "connectedTime": _opt_iso(p.connected),
            "endTime": _opt_iso(p.end),
            "userId": p.user_id,
            "name": p.name,
            "queueId": p.queue_id,
            "purpose": p.purpose,
            "address": conv.ani if p.purpose == "customer" else None,
            "wrapupRequired": p.wrapup_required,
            "wrapupExpected": p.wrapup_required and p.wrapup is None,
            "wrapup": _topic_wrapup(p),
            "startAcwTime": _opt_iso(p.acw_start),
            "endAcwTime": _opt_iso(p.wrapup.end if p.wrapup else None),
            "calls": [call],
        }
    )


def _topic_wrapup(p: Participant) -> Body | None:
    if p.wrapup is None:
        return None
    w = p.wrapup
    return {"code": w.code, "notes": w.notes, "durationSeconds": int(w.duration), "endTime": iso(w.end)}


# == conversations: REST shape ===============================================================================
def rest_conversation(conv: Conversation) -> Body:
    """``Conversation``, as ``GET /api/v2/conversations/{id}`` answers (also for ended conversations)."""
    return _clean(
        {
            "id": conv.id,
            "startTime": iso(conv.start),
            "endTime": _opt_iso(conv.end),
            "address": conv.dnis,
            "participants": [_rest_participant(conv, p) for p in conv.participants],
            "conversationIds": [conv.id],
            "maxParticipants": len(conv.participants),
            "recordingState": "NONE",
            "state": "terminated" if conv.end is not None else "connected",
            "securePause": False,
            "divisions": [
                {"division": {"id": conv.division_id, "selfUri": _division_uri(conv)}, "entities": []}
            ],
            "selfUri": f"/api/v2/conversations/{conv.id}",
        }
    )


def _division_uri(conv: Conversation) -> str:
    return f"/api/v2/authorization/divisions/{conv.division_id}"


def _rest_participant(conv: Conversation, p: Participant) -> Body:
    call = _clean(
        {
            "state": p.call_state,
            "initialState": "alerting" if p.purpose == "agent" else "connected",
            "id": p.session_id,
            "direction": "inbound",
            "recording": False,
            "recordingState": "none",
            "muted": False,
            "confined": False,
            "held": p.held,
            "securePause": False,
            "segments": [
                _clean(
                    {
                        "startTime": iso(s.start),
                        "endTime": _opt_iso(s.end),
                        "type": s.kind,
                        "disconnectType": DISCONNECT_TYPES[s.disconnect_type][0]
                        if s.disconnect_type
                        else None,
                    }
                )
                for s in p.segments
            ],
            "disconnectType": DISCONNECT_TYPES[p.disconnect_type][0] if p.disconnect_type else None,
            "startHoldTime": _opt_iso(p.hold_start),
            "startAlertingTime": iso(p.start) if p.purpose == "agent" else None,
            "connectedTime": _opt_iso(p.connected),
            "disconnectedTime": _opt_iso(p.end),
            "afterCallWorkRequired": p.wrapup_required or None,
        }
    )
    wrapup = None
    if p.wrapup is not None:
        w = p.wrapup
        wrapup = {
            "code": w.code,
            "name": w.name,
            "notes": w.notes,
            "durationSeconds": int(w.duration),
            "endTime": iso(w.end),
        }
    return _clean(
        {
            "id": p.id,
            "startTime": iso(p.start),
            "endTime": _opt_iso(p.end),
            "connectedTime": _opt_iso(p.connected),
            "name": p.name,
            "userUri": f"/api/v2/users/{p.user_id}" if p.user_id else None,
            "userId": p.user_id,
            "queueId": p.queue_id,
            "purpose": p.purpose,
            "participantType": "External" if p.purpose == "customer" else "Internal",
            "address": conv.ani if p.purpose == "customer" else None,
            "ani": conv.ani,
            "dnis": conv.dnis,
            "wrapupRequired": p.wrapup_required,
            "wrapup": wrapup,
            "startAcwTime": _opt_iso(p.acw_start),
            "endAcwTime": _opt_iso(p.wrapup.end if p.wrapup else None),
            "calls": [call],
        }
    )


# == conversations: analytics shape ==========================================================================
def analytics_conversation(conv: Conversation) -> Body:
    """``AnalyticsConversationWithoutAttributes`` (one entry of the details query's ``conversations``)."""
    return _clean(
        {
            "conversationId": conv.id,
            "conversationStart": iso(conv.start),
            "conversationEnd": _opt_iso(conv.end),
            "originatingDirection": "inbound",
            "divisionIds": [conv.division_id],
            "participants": [
                _clean(
                    {
                        "participantId": p.id,
                        "participantName": p.name,
                        "purpose": p.purpose,
                        "userId": p.user_id,
                        "sessions": [
                            {
                                "sessionId": p.session_id,
                                "mediaType": "voice",
                                "direction": "inbound",
                                "ani": conv.ani,
                                "dnis": conv.dnis,
                                "segments": [
                                    _clean(
                                        {
                                            "segmentStart": iso(s.start),
                                            "segmentEnd": _opt_iso(s.end),
                                            "segmentType": s.kind,
                                            "queueId": s.queue_id,
                                            "disconnectType": s.disconnect_type,
                                            "wrapUpCode": s.wrapup_code,
                                            "wrapUpNote": s.wrapup_note,
                                        }
                                    )
                                    for s in p.segments
                                ],
                            }
                        ],
                    }
                )
                for p in conv.participants
            ],
        }
    )


# == detail events ===========================================================================================
def detail_event(conv: Conversation, family: str, participant_id: str, at: float) -> Body:
    """A ``v2.detail.events.conversation.{id}.{family}`` body (flat; epoch ms; upper-case enums)."""
    p = next(x for x in conv.participants if x.id == participant_id)
    body: Body = {
        "eventTime": _ms(at),
        "conversationId": conv.id,
        "participantId": p.id,
        "sessionId": p.session_id,
        "mediaType": "VOICE",
        "direction": "INBOUND",
        "ani": conv.ani,
        "dnis": conv.dnis,
        "queueId": p.queue_id,
        "userId": p.user_id,
        "divisionId": conv.division_id,
    }
    if family.endswith(".end") and p.disconnect_type:
        body["disconnectType"] = DISCONNECT_TYPES[p.disconnect_type][2]
    if family in ("user.end", "customer.end") and p.connected is not None and p.end is not None:
        body["interactingDurationMs"] = _ms(p.end - p.connected)
    if family == "user.end":
        body["alertingDurationMs"] = _ms((p.connected or p.end or at) - p.start)
    if family == "acd.end":
        answered = p.disconnect_type == "transfer"
        body["acdOutcome"] = "ANSWERED" if answered else "ABANDON"
        agents = [x for x in conv.participants if x.purpose == "agent" and x.connected is not None]
        if answered and agents:
            body["answeredUserId"] = agents[-1].user_id
    if family == "acw" and p.wrapup is not None:
        body["wrapupCode"] = p.wrapup.code
        body["wrapupNotes"] = p.wrapup.notes
        body["wrapupDurationMs"] = _ms(p.wrapup.duration)
    for absent in _DETAIL_ABSENT[family.split(".")[0]]:
        body.pop(absent, None)
    return _clean(body)


# == users ===================================================================================================
def topic_presence(world: OrgWorld, user: User) -> Body:
    """``PresenceEventUserPresence`` (system presence in upper case, as observed on the topic)."""
    return {
        "source": "PURECLOUD",
        "presenceDefinition": {"id": world.presence_ids[user.presence], "systemPresence": user.presence},
        "primary": True,
        "message": "",
        "modifiedDate": iso(user.presence_since),
    }


def rest_presence(world: OrgWorld, user: User) -> Body:
    """``UcUserPresence`` (one element of the bulk presence answer)."""
    definition_id = world.presence_ids[user.presence]
    return {
        "id": user.id,
        "userId": user.id,
        "source": "PURECLOUD",
        "presenceDefinition": {
            "id": definition_id,
            "systemPresence": REST_PRESENCE[user.presence],
            "selfUri": f"/api/v2/presencedefinitions/{definition_id}",
        },
        "message": "",
        "modifiedDate": iso(user.presence_since),
        "selfUri": f"/api/v2/users/{user.id}/presences/purecloud",
    }


def topic_routing_status(user: User) -> Body:
    """``UserRoutingStatusUserRoutingStatus``."""
    return {"id": user.id, "routingStatus": {"status": user.routing, "startTime": iso(user.routing_since)}}


def rest_routing_status(user: User | None, user_id: str) -> Body:
    """``RoutingStatus``; an unknown user is ``OFF_QUEUE`` (spec 7.2)."""
    if user is None:
        return {"userId": user_id, "status": "OFF_QUEUE"}
    return {"userId": user.id, "status": user.routing, "startTime": iso(user.routing_since)}


# == queue observations ======================================================================================
def _metric(m: ObservationMetric) -> Body:
    return _clean({"metric": m.metric, "qualifier": m.qualifier, "stats": {"count": m.count}})


def topic_observation(queue_id: str, metrics: Iterable[ObservationMetric], at: float) -> Body:
    """The ``v2.analytics.queues.{id}.observations`` body: ``{group, data[{interval, metrics[...]}]}``."""
    return {
        "group": {"queueId": queue_id, "mediaType": "voice"},
        "data": [{"interval": f"{iso(at)}/{iso(at)}", "metrics": [_metric(m) for m in metrics]}],
    }


def rest_observation(queue_id: str, metrics: Iterable[ObservationMetric], wanted: Iterable[str]) -> Body:
    """One ``QueueObservationDataContainer`` of the observations query, restricted to ``wanted`` metrics."""
    names = set(wanted)
    return {
        "group": {"queueId": queue_id, "mediaType": "voice"},
        "data": [_metric(m) for m in metrics if m.metric in names],
    }


# == notifications derived from a change =====================================================================
def notifications(world: OrgWorld, change: Change) -> list[tuple[str, Body]]:
    """The (topic, body) events the real service would publish for ``change``."""
    if isinstance(change, ConversationChanged):
        conv = change.conversation
        body = topic_conversation(conv)
        events = [(f"v2.routing.queues.{q}.conversations", body) for q in conv.queue_ids]
        events += [(f"v2.users.{u}.conversations", body) for u in conv.user_ids]
        events += [
            (f"v2.detail.events.conversation.{conv.id}.{family}", detail_event(conv, family, pid, change.at))
            for family, pid in change.details
        ]
        return events
    if isinstance(change, PresenceChanged):
        return [(f"v2.users.{change.user.id}.presence", topic_presence(world, change.user))]
    if isinstance(change, RoutingStatusChanged):
        return [(f"v2.users.{change.user.id}.routingStatus", topic_routing_status(change.user))]
    if isinstance(change, QueueObserved):
        body = topic_observation(change.queue_id, change.metrics, change.at)
        return [(f"v2.analytics.queues.{change.queue_id}.observations", body)]
    raise TypeError(f"unknown change {change!r}")
