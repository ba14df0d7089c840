"""The REST face of the simulator: ``/oauth/token`` and ``/api/v2/...`` (thin aiohttp handlers).

The decisions (who may do what, eviction, expiry, subscription grants) are made by :mod:`.core` and its parts;
this module parses requests, calls them, and renders answers and errors as the real service does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from gcbridge import _json
from gcbridge.sim.genesys.bodies import AVAILABLE_TOPICS, iso
from gcbridge.sim.genesys.channels import Channel
from gcbridge.sim.genesys.config import MAX_REQUEST_BYTES, SimConfig
from gcbridge.sim.genesys.core import SimCore
from gcbridge.sim.genesys.messages import error_body, oauth_error
from gcbridge.sim.genesys.subscriptions import Grant, RequestError, TopicEntity, grant, topic_ids
from gcbridge.sim.genesys.tokens import TokenRecord

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_KEY = web.RequestKey("gcbridge_sim_token", TokenRecord)

_STATUS_CODES = {
    400: "bad.request",
    401: "bad.credentials",
    403: "not.authorized",
    404: "not.found",
    405: "method.not.allowed",
    413: "request.entity.too.large",
    415: "unsupported.media.type",
    429: "too.many.requests",
    500: "internal.server.error",
    502: "bad.gateway",
    503: "service.unavailable",
    504: "gateway.timeout",
}


@dataclass(frozen=True, slots=True)
class InjectedFailure:
    status: int
    retry_after: float | None


class Faults:
    """Pending REST faults (set by the fault API, consumed by requests)."""

    def __init__(self) -> None:
        self.api: deque[InjectedFailure] = deque()
        self.token: deque[InjectedFailure] = deque()
        self.rest_delay = 0.0


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, code: str | None = None, message: str | None = None, **extra: Any
) -> web.Response:
    """An ErrorBody answer; ``code`` and ``message`` default to the usual ones for ``status``."""
    code = code or _STATUS_CODES.get(status, "error")
    if message is None:
        try:
            message = http.HTTPStatus(status).phrase
        except ValueError:
            message = f"HTTP {status}"
    return json_response(error_body(status, code, message, **extra), status)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; an empty body is ``None``. Malformed JSON is a 400 ErrorBody."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return _json.loads(raw)
    except _json.JSONDecodeError:
        raise RequestError(
            400, "bad.request", "The request could not be understood: malformed JSON"
        ) from None


def _bool_param(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise RequestError(400, "bad.request", f"Query parameter {name} must be true or false")
    return value == "true"


class RestHost(Protocol):
    """What the REST handlers need of the simulator (:class:`~gcbridge.sim.genesys.sim.GenesysSim`)."""

    @property
    def config(self) -> SimConfig: ...
    @property
    def core(self) -> SimCore: ...
    @property
    def faults(self) -> Faults: ...
    def now(self) -> float: ...
    def process_due(self) -> None: ...
    def token_issued(self, record: TokenRecord) -> None: ...
    def create_channel(self, record: TokenRecord) -> Channel: ...
    def subscribe(self, channel_id: str, granted: Grant, *, replace: bool) -> None: ...
    def revoke_token(self, token: str | None = None) -> int: ...


class RestApi:
    """Request handlers bound to one simulator."""

    def __init__(self, sim: RestHost) -> None:
        self.sim = sim
        self.core = sim.core

    def add_routes(self, app: web.Application) -> None:
        base = "/api/v2/notifications/channels"
        app.router.add_post("/oauth/token", self.token)
        app.router.add_post(base, self.create_channel)
        app.router.add_get(base, self.list_channels, allow_head=False)
        app.router.add_route("HEAD", base + "/{channel_id}", self.head_channel)
        subs = base + "/{channel_id}/subscriptions"
        app.router.add_get(subs, self.get_subscriptions, allow_head=False)
        app.router.add_post(subs, self.add_subscriptions)
        app.router.add_put(subs, self.replace_subscriptions)
        app.router.add_delete(subs, self.delete_subscriptions)
        app.router.add_get("/api/v2/notifications/availabletopics", self.available_topics, allow_head=False)
        app.router.add_get("/api/v2/tokens/me", self.token_info, allow_head=False)
        app.router.add_delete("/api/v2/tokens/me", self.delete_token)

    # -- middleware ------------------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(("/_sim/", "/channels/")):
            return await self._guard(request, handler)
        self.sim.process_due()
        faults = self.sim.faults
        if faults.rest_delay > 0:
            await asyncio.sleep(faults.rest_delay)
        correlation = str(uuid.uuid4())
        response = (
            await self._api(request, handler)
            if path.startswith("/api/")
            else await self._guard(request, handler)
        )
        response.headers.setdefault("ININ-Correlation-Id", correlation)
        response.headers.setdefault("Genesys-Correlation-Id", correlation)
        return response

    async def _api(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = self.sim.faults
        if faults.api:
            failure = faults.api.popleft()
            headers = {} if failure.retry_after is None else {"Retry-After": _seconds(failure.retry_after)}
            response = error_response(failure.status, message="Injected failure (simulator)")
            response.headers.update(headers)
            return response
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(
                401,
                "authentication.required",
                "No authentication bearer token specified in authorization header.",
            )
        record = self.core.tokens.validate(token.strip(), self.sim.now())
        if record is None:
            return error_response(401, "bad.credentials", "Invalid login credentials.")
        decision = self.core.api_limiter.hit(token.strip(), self.sim.now())
        limit = self.core.api_limiter.limit
        headers = {
            "inin-ratelimit-allowed": str(limit or 0),
            "inin-ratelimit-count": str(decision.count),
            "inin-ratelimit-reset": str(decision.retry_after),
        }
        if not decision.allowed:
            response = error_response(
                429,
                "too.many.requests",
                f"Rate limit exceeded the maximum [{limit}] requests within [60] seconds",
                messageWithParams=(
                    "Rate limit exceeded the maximum [{limit}] requests within [{duration}] seconds"
                ),
                messageParams={"limit": str(limit), "duration": "60"},
            )
            response.headers.update(headers)
            response.headers["Retry-After"] = str(decision.retry_after)
            return response
        request[TOKEN_KEY] = record
        answer = await self._guard(request, handler)
        answer.headers.update(headers)
        return answer

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run the handler; every failure becomes the ErrorBody a real server would answer with."""
        try:
            if (request.content_length or 0) > MAX_REQUEST_BYTES:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=MAX_REQUEST_BYTES, actual_size=request.content_length or 0
                )
            return await handler(request)
        except RequestError as exc:
            return error_response(exc.status, exc.code, exc.message, **exc.extra)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, message=f"The request is larger than {MAX_REQUEST_BYTES} bytes")
        except web.HTTPMethodNotAllowed as exc:
            response = error_response(
                405, message=f"Method {request.method} is not allowed on {request.path}"
            )
            response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(exc.status, message=f"{exc.reason}: {request.path}")
        except Exception:
            log.exception("simulator handler failed on %s %s", request.method, request.path)
            return error_response(500, message="Internal error in the simulator (see its log)")

    # -- OAuth -----------------------------------------------------------------------------------------------
    async def token(self, request: web.Request) -> web.StreamResponse:
        faults = self.sim.faults
        if faults.token:
            failure = faults.token.popleft()
            response = json_response(
                oauth_error("server_error", "Injected failure (simulator)"), failure.status
            )
            if failure.retry_after is not None:
                response.headers["Retry-After"] = _seconds(failure.retry_after)
            return response
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            return json_response(
                oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported"), 400
            )
        client_id, secret = _client_credentials(request.headers.get("Authorization", ""), form)
        if client_id is None or secret is None:
            return json_response(
                oauth_error("invalid_client", "client not found"), self.sim.config.invalid_client_status
            )
        refused = self.core.tokens.authenticate(client_id, secret)
        if refused is not None:
            return json_response(
                oauth_error("invalid_client", refused.value), self.sim.config.invalid_client_status
            )
        now = self.sim.now()
        decision = self.core.token_limiter.hit(client_id, now)
        if not decision.allowed:
            response = json_response(
                oauth_error("too_many_requests", "Rate limit exceeded for token requests"), 429
            )
            response.headers["Retry-After"] = str(decision.retry_after)
            return response
        record = self.core.tokens.issue(client_id, now)
        self.sim.token_issued(record)
        expires_in = max(1, round(record.expires - record.issued))
        return json_response(
            {"access_token": record.value.reveal(), "token_type": "bearer", "expires_in": expires_in}
        )

    # -- channels --------------------------------------------------------------------------------------------
    async def create_channel(self, request: web.Request) -> web.StreamResponse:
        await read_json(request)  # the SDK sends the literal body null; anything well-formed is ignored
        record = request[TOKEN_KEY]
        channel = self.sim.create_channel(record)
        return json_response(self._channel_json(channel, request))

    async def list_channels(self, request: web.Request) -> web.StreamResponse:
        scope = request.query.get("includechannels", "token")
        if scope not in ("token", "oauthclient"):
            raise RequestError(400, "bad.request", "includechannels must be 'token' or 'oauthclient'")
        record = request[TOKEN_KEY]
        entities = []
        for channel in self.core.channels.of_client(record.client_id):
            if channel.token == record.value:
                entities.append(self._channel_json(channel, request))
            elif scope == "oauthclient":
                # "Channel Ids for other access tokens will not be shown, but will be presented"
                entities.append({"expires": self._expires(channel)})
        return json_response({"entities": entities})

    async def head_channel(self, request: web.Request) -> web.StreamResponse:
        self._channel(request)
        return web.Response(status=200)

    # -- subscriptions ---------------------------------------------------------------------------------------
    async def get_subscriptions(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        return json_response(_listing(channel, ()))

    async def add_subscriptions(self, request: web.Request) -> web.StreamResponse:
        return await self._subscribe(request, replace=False)

    async def replace_subscriptions(self, request: web.Request) -> web.StreamResponse:
        return await self._subscribe(request, replace=True)

    async def _subscribe(self, request: web.Request, *, replace: bool) -> web.StreamResponse:
        channel = self._channel(request)
        ignore_errors = _bool_param(request, "ignoreErrors")
        ids = topic_ids(await read_json(request))
        granted = grant(
            ids,
            self.core.permissions,
            ignore_errors=ignore_errors,
            max_combined_length=self.sim.config.max_combined_topic_length,
        )
        self.sim.subscribe(channel.id, granted, replace=replace)
        return json_response(_listing(channel, granted.rejected))

    async def delete_subscriptions(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        self.core.channels.clear(channel.id, self.sim.now())
        return web.Response(status=204)

    async def available_topics(self, request: web.Request) -> web.StreamResponse:
        return json_response({"entities": [{"id": t, "description": d} for t, d in AVAILABLE_TOPICS]})

    # -- tokens ----------------------------------------------------------------------------------------------
    async def token_info(self, request: web.Request) -> web.StreamResponse:
        record = request[TOKEN_KEY]
        org = {"id": self.sim.config.organization_id, "name": "Simulated Org"}
        return json_response(
            {
                "organization": org,
                "homeOrganization": org,
                "OAuthClient": {"id": record.client_id, "name": record.client_id, "organization": org},
                "authorizedScope": [],
            }
        )

    async def delete_token(self, request: web.Request) -> web.StreamResponse:
        self.sim.revoke_token(request[TOKEN_KEY].value.reveal())
        return web.Response(status=204)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _channel(self, request: web.Request) -> Channel:
        """The channel named in the path, if it is alive and belongs to the caller's OAuth client."""
        channel_id = request.match_info["channel_id"]
        now = self.sim.now()
        channel = self.core.channels.get(channel_id, now)
        if channel is None or channel.oauth_client != request[TOKEN_KEY].client_id:
            raise RequestError(404, "not.found", f"Channel {channel_id} not found")
        self.core.channels.touch(channel_id, now)
        return channel

    def _expires(self, channel: Channel) -> str:
        return iso(time.time() + channel.expires - self.sim.now())

    def _channel_json(self, channel: Channel, request: web.Request) -> dict[str, str]:
        return {
            "id": channel.id,
            "connectUri": f"ws://{request.host}/channels/{channel.id}",
            "expires": self._expires(channel),
        }


def _listing(channel: Channel, rejected: tuple[TopicEntity, ...]) -> dict[str, Any]:
    entities = [TopicEntity(t).to_json() for t in channel.topics] + [r.to_json() for r in rejected]
    return {"entities": entities}


def _seconds(value: float) -> str:
    return str(max(0, round(value)))


def _client_credentials(header: str, form: Any) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, sep, secret = decoded.partition(":")
        return (client_id, secret) if sep else (None, None)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    return (client_id if isinstance(client_id, str) else None, secret if isinstance(secret, str) else None)
