"""The Genesys Cloud REST reads a back-fill needs (spec: analytics, conversations, presence, routing status).

Every call goes through :class:`~gcbridge.genesys.rest.ApiCaller` (token, 401 retry, 429 + ``Retry-After``,
ErrorBody); this module only knows paths, bodies and answer shapes. A malformed answer raises
:class:`GenesysApiError` with code ``invalid.response``.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from gcbridge.genesys.errors import GenesysApiError
from gcbridge.genesys.rest import ApiCaller, ApiResponse

__all__ = [
    "CONVERSATION_PATH",
    "DETAILS_QUERY_PATH",
    "OBSERVATIONS_QUERY_PATH",
    "PRESENCE_BULK_PATH",
    "ROUTING_STATUS_PATH",
    "AnalyticsApi",
]

DETAILS_QUERY_PATH: Final = "/api/v2/analytics/conversations/details/query"
CONVERSATION_PATH: Final = "/api/v2/conversations/{id}"
PRESENCE_BULK_PATH: Final = "/api/v2/users/presences/purecloud/bulk"
ROUTING_STATUS_PATH: Final = "/api/v2/users/{id}/routingstatus"
OBSERVATIONS_QUERY_PATH: Final = "/api/v2/analytics/queues/observations/query"


class AnalyticsApi:
    """Typed REST reads on one :class:`ApiCaller`."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def details_page(self, query: dict[str, Any]) -> list[dict[str, Any]] | None:
        """One page of the sync details query: its conversations, or ``None`` past the last page (the body
        then has no ``conversations`` key)."""
        response = await self._caller.call("POST", DETAILS_QUERY_PATH, body=query)
        payload = response.json()
        if not isinstance(payload, dict):
            raise _malformed(response, "POST", DETAILS_QUERY_PATH, "an AnalyticsConversationQueryResponse")
        conversations = payload.get("conversations")
        if conversations is None:
            return None
        if not isinstance(conversations, list):
            raise _malformed(response, "POST", DETAILS_QUERY_PATH, "a list of conversations")
        return [c for c in conversations if isinstance(c, dict) and isinstance(c.get("conversationId"), str)]

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        """The current state of a conversation (also an ended one)."""
        path = CONVERSATION_PATH.format(id=quote(conversation_id, safe=""))
        response = await self._caller.call("GET", path)
        return _object(response, "GET", path, "a Conversation")

    async def presences(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """Presences of at most 50 users (bulk); unknown users are simply absent from the answer."""
        response = await self._caller.call("GET", PRESENCE_BULK_PATH, params={"id": ",".join(user_ids)})
        payload = response.json()
        if not isinstance(payload, list):
            raise _malformed(response, "GET", PRESENCE_BULK_PATH, "a list of UcUserPresence")
        return [p for p in payload if isinstance(p, dict)]

    async def routing_status(self, user_id: str) -> dict[str, Any]:
        path = ROUTING_STATUS_PATH.format(id=quote(user_id, safe=""))
        response = await self._caller.call("GET", path)
        return _object(response, "GET", path, "a RoutingStatus")

    async def observations(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self._caller.call("POST", OBSERVATIONS_QUERY_PATH, body=query)
        payload = response.json()
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise _malformed(response, "POST", OBSERVATIONS_QUERY_PATH, "a QueueObservationQueryResponse")
        return [r for r in results if isinstance(r, dict)]


def _object(response: ApiResponse, method: str, path: str, expected: str) -> dict[str, Any]:
    payload = response.json()
    if not isinstance(payload, dict):
        raise _malformed(response, method, path, expected)
    return payload


def _malformed(response: ApiResponse, method: str, path: str, expected: str) -> GenesysApiError:
    return GenesysApiError(
        response.status,
        "invalid.response",
        f"expected {expected} in the response body",
        response.correlation_id,
        method=method,
        path=path,
    )
