"""The JSON messages a notification socket sends (spec 2.4), and the REST error bodies (spec 1.4, 1.5)."""

from __future__ import annotations

import random
from typing import Any

_rng = random.Random()


def new_uuid() -> str:
    """A random (version 4) UUID string; faster than ``uuid.uuid4()`` on the publish path, and ids in a
    simulator need no cryptographic strength."""
    h = f"{_rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


HEARTBEAT: dict[str, Any] = {"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}}
PONG: dict[str, Any] = {"topicName": "channel.metadata", "eventBody": {"message": "pong"}}

SOCKET_CLOSING = "v2.system.socket_closing"
NO_LONGER_SUBSCRIBED = "v2.system.no_longer_subscribed"
TOKEN_REVOKED = "v2.system.token_revoked"  # noqa: S105 (a topic name)


def event(topic: str, body: dict[str, Any], correlation_id: str, seq: int) -> dict[str, Any]:
    """The envelope of a published event; ``simSequence`` lets tests match deliveries to the ledger."""
    return {
        "topicName": topic,
        "version": "2",
        "eventBody": body,
        "metadata": {"CorrelationId": correlation_id, "simSequence": seq},
    }


def system(
    topic: str,
    *,
    channel_id: str,
    oauth_client_id: str,
    organization_id: str,
    message: str,
    system_topic_type: str | None = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``v2.system.*`` message with a ``SystemMessageSystemMessage`` body (spec 2.1)."""
    correlation_id = new_uuid()
    body: dict[str, Any] = {
        "channelId": channel_id,
        "correlationId": correlation_id,
        "organizationId": organization_id,
        "oauthClientId": oauth_client_id,
        "oauthClientOrgId": organization_id,
        "message": message,
    }
    if system_topic_type is not None:
        body["systemTopicType"] = system_topic_type
    if reason is not None:
        body["reason"] = reason
    if data is not None:
        body["data"] = data
    return {
        "topicName": topic,
        "version": "2",
        "eventBody": body,
        "metadata": {"CorrelationId": correlation_id},
    }


def ws_result(
    result: str,
    status: str,
    *,
    correlation_id: str | None = None,
    topics: list[str] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """An answer to a message the client sent over the socket (subscribe ack or error, 404)."""
    body: dict[str, Any] = {}
    if correlation_id is not None:
        body["correlationId"] = correlation_id
    if topics is not None:
        body["topics"] = topics
    body["result"] = result
    if status:
        body["status"] = status
    if message is not None:
        body["message"] = message
    return body


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """An ``ErrorBody`` (spec 1.5) with a fresh ``contextId``."""
    return {"message": message, "code": code, "status": status, "contextId": new_uuid(), **extra}


def oauth_error(error: str, description: str) -> dict[str, str]:
    """The token endpoint's error shape (spec 1.4)."""
    return {"error": error, "description": description, "error_description": description}
