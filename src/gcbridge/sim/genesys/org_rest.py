"""REST routes of the org world: the endpoints a back-fill reads after a gap (spec 7), and their controls.

Authentication, ``inin-ratelimit-*`` headers, 429s and error rendering come from the simulator's REST
middleware (:mod:`.rest`), as for every ``/api/v2`` route; this module adds the permission checks, parses
requests and renders answers with :mod:`.org_bodies`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gcbridge.sim.genesys.org_bodies import (
    rest_conversation,
    rest_observation,
    rest_presence,
    rest_routing_status,
)
from gcbridge.sim.genesys.org_query import (
    QueryError,
    parse_details_query,
    parse_observation_query,
    run_details_query,
)
from gcbridge.sim.genesys.org_service import OrgService
from gcbridge.sim.genesys.rest import json_response, read_json
from gcbridge.sim.genesys.subscriptions import RequestError

#: At most this many ids in one bulk presence request (spec 7.2).
MAX_BULK_PRESENCE_IDS = 50

DETAIL_PERMISSIONS = ("analytics:conversationDetail:view", "analytics:agentConversationDetail:view")
CONVERSATION_PERMISSION = "conversation:communication:view"
OBSERVATION_PERMISSION = "analytics:queueObservation:view"


def add_org_routes(app: web.Application, org: OrgService) -> None:
    """Serve the org endpoints of ``org`` on ``app`` (behind the simulator's REST middleware)."""
    routes = OrgRoutes(org)
    app.router.add_post("/api/v2/analytics/conversations/details/query", routes.details_query)
    app.router.add_get("/api/v2/conversations/{conversation_id}", routes.conversation, allow_head=False)
    app.router.add_get("/api/v2/users/presences/purecloud/bulk", routes.presences_bulk, allow_head=False)
    app.router.add_get("/api/v2/users/{user_id}/presences/purecloud", routes.presence, allow_head=False)
    app.router.add_get("/api/v2/users/{user_id}/routingstatus", routes.routing_status, allow_head=False)
    app.router.add_post("/api/v2/analytics/queues/observations/query", routes.observations_query)
    app.router.add_get("/_sim/org", routes.state, allow_head=False)
    app.router.add_post("/_sim/org/faults", routes.faults)
    app.router.add_post("/_sim/org/advance", routes.advance)


class OrgRoutes:
    def __init__(self, org: OrgService) -> None:
        self.org = org

    # -- back-fill endpoints ---------------------------------------------------------------------------------
    async def details_query(self, request: web.Request) -> web.StreamResponse:
        self._require_any(DETAIL_PERMISSIONS)
        body = await read_json(request)
        try:
            query = parse_details_query(body, self.org.settings.max_page_size)
        except QueryError as exc:
            raise RequestError(400, "bad.request", str(exc)) from None
        self.org.sync()
        rendered = self.org.analytics_conversations()
        return json_response(run_details_query(query, rendered, self.org.query_drift))

    async def conversation(self, request: web.Request) -> web.StreamResponse:
        self._require_all((CONVERSATION_PERMISSION,))
        conversation_id = request.match_info["conversation_id"]
        self.org.sync()
        conv = self.org.world.conversation(conversation_id)
        if conv is None:
            raise RequestError(404, "not.found", f"Conversation {conversation_id} not found")
        return json_response(rest_conversation(conv))

    async def presences_bulk(self, request: web.Request) -> web.StreamResponse:
        ids = [i for value in request.query.getall("id", []) for i in value.split(",") if i.strip()]
        if not ids:
            raise RequestError(400, "bad.request", "The id query parameter is required (user ids)")
        if len(ids) > MAX_BULK_PRESENCE_IDS:
            raise RequestError(
                400,
                "bad.request",
                f"A maximum of {MAX_BULK_PRESENCE_IDS} user ids may be requested, got {len(ids)}",
                messageWithParams="A maximum of {max} user ids may be requested",
                messageParams={"max": str(MAX_BULK_PRESENCE_IDS)},
            )
        self.org.sync()
        world = self.org.world
        users = [world.user(i.strip()) for i in dict.fromkeys(ids)]
        return json_response([rest_presence(world, u) for u in users if u is not None])

    async def presence(self, request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["user_id"]
        self.org.sync()
        user = self.org.world.user(user_id)
        if user is None:
            raise RequestError(404, "not.found", f"User {user_id} not found")
        return json_response(rest_presence(self.org.world, user))

    async def routing_status(self, request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["user_id"]
        self.org.sync()
        return json_response(rest_routing_status(self.org.world.user(user_id), user_id))

    async def observations_query(self, request: web.Request) -> web.StreamResponse:
        self._require_all((OBSERVATION_PERMISSION,))
        try:
            query = parse_observation_query(await read_json(request))
        except QueryError as exc:
            raise RequestError(400, "bad.request", str(exc)) from None
        self.org.sync()
        world = self.org.world
        results = [
            rest_observation(q, world.observation(q), query.metrics)
            for q in query.queue_ids
            if q in world.queues
        ]
        return json_response({"results": results})

    # -- controls (under /_sim/, no authentication) ----------------------------------------------------------
    async def state(self, request: web.Request) -> web.StreamResponse:
        self.org.sync()
        world = self.org.world
        conversations = world.conversations()
        return json_response(
            {
                "now": world.now,
                "queues": [{"id": q.id, "name": q.name} for q in world.queues.values()],
                "users": [
                    {
                        "id": u.id,
                        "name": u.name,
                        "queueIds": list(u.queue_ids),
                        "presence": u.presence,
                        "routingStatus": u.routing,
                    }
                    for u in world.users.values()
                ],
                "conversations": len(conversations),
                "ongoing": sum(c.end is None for c in conversations),
                "published": self.org.published,
                "deniedPermissions": sorted(self.org.denied_permissions),
                "queryDrift": self.org.query_drift,
            }
        )

    async def faults(self, request: web.Request) -> web.StreamResponse:
        params = await read_json(request) or {}
        if not isinstance(params, dict):
            raise RequestError(400, "bad.request", "The body must be a JSON object")
        drift = params.get("query_drift")
        if drift is not None:
            if isinstance(drift, bool) or not isinstance(drift, int) or drift < 0:
                raise RequestError(400, "bad.request", "query_drift must be an integer >= 0")
            self.org.query_drift = drift
        for key, apply in (
            ("deny", self.org.denied_permissions.add),
            ("allow", self.org.denied_permissions.discard),
        ):
            names = params.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RequestError(400, "bad.request", f"{key} must be a list of permission names")
            for name in names:
                apply(name)
        return json_response(
            {"deniedPermissions": sorted(self.org.denied_permissions), "queryDrift": self.org.query_drift}
        )

    async def advance(self, request: web.Request) -> web.StreamResponse:
        params = await read_json(request) or {}
        seconds = params.get("seconds") if isinstance(params, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise RequestError(400, "bad.request", "seconds must be a number >= 0")
        changes = self.org.advance_by(float(seconds))
        return json_response({"changes": len(changes), "now": self.org.world.now})

    # -- permissions -----------------------------------------------------------------------------------------
    def _require_all(self, permissions: tuple[str, ...]) -> None:
        missing = [p for p in permissions if p in self.org.denied_permissions]
        if missing:
            raise RequestError(
                403,
                "missing.permissions",
                f"You are missing the following permission(s): {', '.join(missing)}",
                **_params("You are missing the following permission(s): {permissions}", missing),
            )

    def _require_any(self, permissions: tuple[str, ...]) -> None:
        if all(p in self.org.denied_permissions for p in permissions):
            raise RequestError(
                403,
                "missing.any.permissions",
                f"You need at least one of the following permissions: {', '.join(permissions)}",
                **_params("You need at least one of the following permissions: {permissions}", permissions),
            )


def _params(template: str, permissions: Any) -> dict[str, Any]:
    return {"messageWithParams": template, "messageParams": {"permissions": ", ".join(permissions)}}
