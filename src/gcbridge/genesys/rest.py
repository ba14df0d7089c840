"""The Genesys Cloud Notifications REST API (channels and subscriptions), with auth and retries built in.

Every call takes its bearer token from a :class:`~gcbridge.genesys.auth.TokenManager` and:

* on a 401 (``bad.credentials``, ``credentials.expired``, ``authentication.required`` or no ErrorBody)
  invalidates *that* token (compare-and-invalidate) and retries once with a fresh one, so a burst of N
  concurrent 401s costs exactly one token request;
* on a 429 waits at least ``Retry-After`` (else the backoff), on 500/502/503/504 and connection errors
  retries with capped exponential backoff and full jitter, up to :attr:`RestPolicy.max_attempts`;
* raises :class:`GenesysApiError` (status, code, message, correlation id from the ErrorBody) for any other
  error, and :class:`GenesysTransportError` when the connection keeps failing.

Create the session without cookies (``new_session()`` does): Genesys needs none, and a cookie jar only
couples requests that should be independent.

Example::

    async with new_session() as session:
        hosts = resolve_region("eu_west_1")
        async with TokenManager(session, hosts.token_url, client_id, secret) as tokens:
            api = NotificationsApi(session, hosts.api_base, tokens)
            channel = await api.create_channel()
            result = await api.put_subscriptions(channel.id, ["v2.users.abc.presence"])
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from gcbridge import _json
from gcbridge._logs import get_logger
from gcbridge.core.backoff import Backoff, BackoffPolicy, parse_retry_after
from gcbridge.genesys.auth import AccessToken, TokenManager
from gcbridge.genesys.errors import GenesysApiError, GenesysTransportError, GenesysUsageError

__all__ = [
    "ApiCaller",
    "ApiResponse",
    "ChannelInfo",
    "ChannelSummary",
    "GenesysApiError",
    "GenesysTransportError",
    "NotificationsApi",
    "RestPolicy",
    "SubscriptionResult",
    "new_session",
]

log = get_logger(__name__)

CHANNELS_PATH: Final = "/api/v2/notifications/channels"
#: 401 codes that mean "this token is no longer good": get a new one and retry once.
_TOKEN_CODES: Final = frozenset({"bad.credentials", "credentials.expired", "authentication.required"})
_RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})
_DEFAULT_CHANNEL_LIFETIME: Final = 86_400.0  # spec 2.3: channels live 24 h after creation/subscribe


@dataclass(frozen=True, slots=True)
class RestPolicy:
    """Retries of one REST call. ``max_attempts`` (default 5, the first try included) bounds retries of 429,
    5xx and connection errors; the 401 retry with a fresh token comes on top, once. Backoff: 0.5 s doubling
    to 30 s with full jitter; a 429's ``Retry-After`` is the floor. ``request_timeout`` (default 30 s)
    bounds one attempt. ``token_wait`` bounds the wait for a token when the token endpoint is failing
    (default ``None``: wait until it recovers; otherwise :class:`TokenUnavailableError` after that many
    seconds)."""

    max_attempts: int = 5
    backoff: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(initial=0.5, factor=2.0, cap=30.0))
    request_timeout: float = 30.0
    token_wait: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise GenesysUsageError(f"RestPolicy.max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.request_timeout <= 0:
            raise GenesysUsageError(f"RestPolicy.request_timeout must be > 0, got {self.request_timeout!r}")


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A notification channel just created. ``expires`` is wall-clock UNIX seconds; ``token`` is the access
    token that created it (the channel dies with that token, so rotate before ``token.expires_at``)."""

    id: str
    connect_uri: str
    expires: float
    token: AccessToken


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """One entry of the channel listing. Channels of other tokens show only ``expires`` (``id`` is None)."""

    id: str | None
    connect_uri: str | None
    expires: float | None


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    """What a subscribe call left on the channel: topics ``permitted`` (the channel's whole list after the
    call) and topics ``rejected`` with a reason (e.g. missing permissions)."""

    permitted: tuple[str, ...]
    rejected: dict[str, str]


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """One HTTP answer: status, raw body, the token that was used, and the headers the caller needs."""

    status: int
    body: bytes
    token: AccessToken
    retry_after: str | None = None
    correlation_id: str | None = None

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return _json.loads(self.body)
        except _json.JSONDecodeError:
            return None


class _NoBody:
    pass


_NO_BODY: Final = _NoBody()


def new_session(*, limit: int = 100) -> aiohttp.ClientSession:
    """An aiohttp session suitable for Genesys Cloud: no cookie jar, at most ``limit`` connections.
    Call it inside a running event loop; close it (``async with``) when done."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=limit)
    )


class NotificationsApi:
    """Channels and subscriptions of the Notification API (spec 2.1) for one OAuth client.

    ``api_base`` is ``RegionHosts.api_base`` (e.g. ``https://api.mypurecloud.ie``) or the simulator's base
    URL. ``sleep`` and ``rng`` are injectable so that tests need not wait for real backoff delays.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_base: str,
        tokens: TokenManager,
        *,
        policy: RestPolicy | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api_base = api_base.rstrip("/")
        self._tokens = tokens
        self._caller = ApiCaller(session, api_base, tokens, policy=policy, rng=rng, sleep=sleep)

    @property
    def tokens(self) -> TokenManager:
        return self._tokens

    # ---- channels -----------------------------------------------------------------------------------------

    async def create_channel(self) -> ChannelInfo:
        """Create a channel (POST). Genesys keeps at most 20 per OAuth client and evicts the oldest
        unconnected one for a 21st. Retried on 429/5xx like any call: a lost answer may leave an unconnected
        orphan channel behind, which is the first to be evicted."""
        response = await self._call("POST", CHANNELS_PATH, body=None)
        payload = response.json()
        if not isinstance(payload, dict):
            raise self._malformed(response, "POST", CHANNELS_PATH, "a Channel object")
        channel_id, connect_uri = payload.get("id"), payload.get("connectUri")
        if not isinstance(channel_id, str) or not channel_id or not isinstance(connect_uri, str):
            raise self._malformed(response, "POST", CHANNELS_PATH, "a Channel with id and connectUri")
        expires = _parse_expires(payload.get("expires"))
        if expires is None:
            log.warning("channel without a readable expires; assuming 24 h", channel_id=channel_id)
            expires = time.time() + _DEFAULT_CHANNEL_LIFETIME
        log.debug(
            "genesys channel created", channel_id=channel_id, token_generation=response.token.generation
        )
        return ChannelInfo(id=channel_id, connect_uri=connect_uri, expires=expires, token=response.token)

    async def channel_exists(self, channel_id: str) -> bool:
        """HEAD the channel: True on 200, False on 404 (expired, evicted, or its token died)."""
        try:
            await self._call("HEAD", self._channel_path(channel_id))
        except GenesysApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list_channels(self, include: str = "token") -> list[ChannelSummary]:
        """Channels of the current token (``include="token"``) or of the whole OAuth client
        (``"oauthclient"``; other tokens' channels come without id)."""
        if include not in ("token", "oauthclient"):
            raise GenesysUsageError(f"include must be 'token' or 'oauthclient', got {include!r}")
        response = await self._call("GET", CHANNELS_PATH, params={"includechannels": include})
        summaries = []
        for entity in _entities(response.json()):
            channel_id, connect_uri = entity.get("id"), entity.get("connectUri")
            summaries.append(
                ChannelSummary(
                    id=channel_id if isinstance(channel_id, str) else None,
                    connect_uri=connect_uri if isinstance(connect_uri, str) else None,
                    expires=_parse_expires(entity.get("expires")),
                )
            )
        return summaries

    # ---- subscriptions ------------------------------------------------------------------------------------

    async def get_subscriptions(self, channel_id: str) -> list[str]:
        """Topic ids the channel is subscribed to."""
        response = await self._call("GET", self._subscriptions_path(channel_id))
        return [e["id"] for e in _entities(response.json()) if isinstance(e.get("id"), str)]

    async def put_subscriptions(
        self, channel_id: str, topics: Iterable[str], *, ignore_errors: bool = True
    ) -> SubscriptionResult:
        """Replace the channel's subscriptions with ``topics`` (max 1,000 per channel). With ``ignore_errors``
        (default) topics without permission are reported in ``rejected`` instead of failing the call."""
        return await self._subscribe("PUT", channel_id, topics, ignore_errors)

    async def post_subscriptions(
        self, channel_id: str, topics: Iterable[str], *, ignore_errors: bool = True
    ) -> SubscriptionResult:
        """Add ``topics`` to the channel's subscriptions (see :meth:`put_subscriptions`)."""
        return await self._subscribe("POST", channel_id, topics, ignore_errors)

    async def delete_subscriptions(self, channel_id: str) -> None:
        """Remove every subscription of the channel."""
        await self._call("DELETE", self._subscriptions_path(channel_id))

    async def available_topics(self, *, include_preview: bool = True) -> list[str]:
        """Ids of the topics the org offers (``GET /api/v2/notifications/availabletopics``)."""
        response = await self._call(
            "GET",
            "/api/v2/notifications/availabletopics",
            params={"includePreview": "true" if include_preview else "false"},
        )
        return [e["id"] for e in _entities(response.json()) if isinstance(e.get("id"), str)]

    def __repr__(self) -> str:
        return f"NotificationsApi(api_base={self._api_base!r}, client_id={self._tokens.client_id!r})"

    # ---- the request loop ---------------------------------------------------------------------------------

    async def _subscribe(
        self, method: str, channel_id: str, topics: Iterable[str], ignore_errors: bool
    ) -> SubscriptionResult:
        topic_list = list(dict.fromkeys(topics))
        if any(not isinstance(t, str) or not t for t in topic_list):
            raise GenesysUsageError("topics must be non-empty strings")
        response = await self._call(
            method,
            self._subscriptions_path(channel_id),
            params={"ignoreErrors": "true" if ignore_errors else "false"},
            body=[{"id": t} for t in topic_list],
        )
        return _subscription_result(response.json())

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = _NO_BODY,
    ) -> ApiResponse:
        return await self._caller.call(method, path, params=params, body=body)

    def _malformed(self, response: ApiResponse, method: str, path: str, expected: str) -> GenesysApiError:
        return GenesysApiError(
            response.status,
            "invalid.response",
            f"expected {expected} in the response body",
            response.correlation_id,
            method=method,
            path=path,
        )

    @staticmethod
    def _channel_path(channel_id: str) -> str:
        if not channel_id:
            raise GenesysUsageError("channel_id is empty")
        return f"{CHANNELS_PATH}/{quote(channel_id, safe='')}"

    def _subscriptions_path(self, channel_id: str) -> str:
        return self._channel_path(channel_id) + "/subscriptions"


class ApiCaller:
    """The request loop of every Genesys Cloud REST call (see the module docstring): bearer token, one retry
    with a fresh token on a 401, waits and retries on 429/5xx/connection errors, ErrorBody to
    :class:`GenesysApiError`. :class:`NotificationsApi` and the back-fill's analytics calls share it.

    ``max_rate_limited`` (default ``None``: 429s use up ``policy.max_attempts`` like any failure) gives 429s a
    budget of their own, so that a long rate-limit storm is waited out. ``before_send``/``after_send`` run
    around every HTTP attempt (retries included), e.g. to pace requests under a rate cap and count them.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_base: str,
        tokens: TokenManager,
        *,
        policy: RestPolicy | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_rate_limited: int | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
        after_send: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._api_base = api_base.rstrip("/")
        self._tokens = tokens
        self._policy = policy if policy is not None else RestPolicy()
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        self._max_rate_limited = max_rate_limited
        self._before_send = before_send
        self._after_send = after_send
        if not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            log.warning(
                "aiohttp session has a cookie jar; create it with cookie_jar=aiohttp.DummyCookieJar()",
                api_base=self._api_base,
            )

    @property
    def tokens(self) -> TokenManager:
        return self._tokens

    def __repr__(self) -> str:
        return f"ApiCaller(api_base={self._api_base!r}, client_id={self._tokens.client_id!r})"

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = _NO_BODY,
    ) -> ApiResponse:
        backoff = Backoff(self._policy.backoff, self._rng)
        attempt = rate_limited = 0
        renewed_token = False
        while True:
            token = await self._tokens.get(max_wait=self._policy.token_wait)
            attempt += 1
            if self._before_send is not None:
                await self._before_send()
            try:
                response = await self._send(method, path, token, params, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if self._after_send is not None:
                    self._after_send()
                problem = f"{type(exc).__name__}: {self._scrub(str(exc), token)}"
                if attempt >= self._policy.max_attempts:
                    raise GenesysTransportError(
                        f"{method} {path} failed after {attempt} attempts: {problem}"
                    ) from None
                await self._wait(backoff.next_delay(), method, path, attempt, problem=problem)
                continue
            if self._after_send is not None:
                self._after_send()
            if 200 <= response.status < 300:
                return response
            error = self._error(response, method, path, token)
            if (
                response.status == 401
                and not renewed_token
                and (error.code in _TOKEN_CODES or not error.code)
            ):
                renewed_token = True
                attempt -= 1  # the retry with a fresh token does not use up the retry budget
                log.debug(  # one info line comes from the TokenManager per token actually discarded
                    "genesys api rejected the token; retrying once with a fresh one",
                    method=method,
                    path=path,
                    code=error.code,
                    token_generation=token.generation,
                    correlation_id=error.correlation_id,
                )
                self._tokens.invalidate(token)
                continue
            retryable = response.status == 429 or response.status in _RETRY_STATUSES
            if response.status == 429 and self._max_rate_limited is not None:
                rate_limited += 1
                attempt -= 1  # 429s have a budget of their own
                if rate_limited > self._max_rate_limited:
                    raise error
            elif not retryable or attempt >= self._policy.max_attempts:
                raise error
            retry_after = parse_retry_after(response.retry_after, now=time.time())
            await self._wait(
                backoff.next_delay(retry_after),
                method,
                path,
                attempt,
                status=response.status,
                code=error.code,
                correlation_id=error.correlation_id,
                retry_after=retry_after,
            )

    async def _send(
        self, method: str, path: str, token: AccessToken, params: dict[str, str] | None, body: Any
    ) -> ApiResponse:
        headers = {"Authorization": f"Bearer {token.value.reveal()}", "Accept": "application/json"}
        data: bytes | None = None
        if not isinstance(body, _NoBody):
            data = _json.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self._session.request(
            method,
            self._api_base + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._policy.request_timeout),
            allow_redirects=False,
        ) as resp:
            payload = await resp.read()
            return ApiResponse(
                resp.status,
                payload,
                token,
                retry_after=resp.headers.get("Retry-After"),
                correlation_id=resp.headers.get("ININ-Correlation-Id")
                or resp.headers.get("Genesys-Correlation-Id"),
            )

    async def _wait(self, delay: float, method: str, path: str, attempt: int, **details: Any) -> None:
        # debug: the caller sees the outcome (the answer, or the error once the attempts are used up)
        log.debug(
            "genesys api call failed; retrying",
            method=method,
            path=path,
            attempt=attempt,
            max_attempts=self._policy.max_attempts,
            delay=round(delay, 3),
            **details,
        )
        await self._sleep(delay)

    def _error(self, response: ApiResponse, method: str, path: str, token: AccessToken) -> GenesysApiError:
        payload = response.json()
        code = message = None
        if isinstance(payload, dict):
            raw_code, raw_message = payload.get("code"), payload.get("message")
            code = raw_code if isinstance(raw_code, str) else None
            message = self._scrub(raw_message, token)[:500] if isinstance(raw_message, str) else None
        return GenesysApiError(
            response.status, code, message, response.correlation_id, method=method, path=path
        )

    @staticmethod
    def _scrub(text: str, token: AccessToken) -> str:
        value = token.value.reveal()
        return text.replace(value, "**********") if value else text


def _entities(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        return []
    entities = payload.get("entities")
    if not isinstance(entities, list):
        return []
    return [e for e in entities if isinstance(e, dict)]


def _subscription_result(payload: Any) -> SubscriptionResult:
    permitted: list[str] = []
    rejected: dict[str, str] = {}
    for entity in _entities(payload):
        topic = entity.get("id")
        if not isinstance(topic, str):
            continue
        if str(entity.get("state", "Permitted")).lower() == "rejected":
            rejected[topic] = _rejection_reason(entity)
        else:
            permitted.append(topic)
    return SubscriptionResult(permitted=tuple(dict.fromkeys(permitted)), rejected=rejected)


def _rejection_reason(entity: dict[str, Any]) -> str:
    reason = entity.get("rejectionReason")
    text = reason if isinstance(reason, str) and reason else "rejected"
    missing = entity.get("missingPermissions")
    if isinstance(missing, Sequence) and not isinstance(missing, str) and missing:
        text += f" (missing permissions: {', '.join(str(p) for p in missing)})"
    return text


def _parse_expires(value: Any) -> float | None:
    """ISO-8601 (``2026-05-14T10:00:00.000Z``) to wall-clock UNIX seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    seconds = parsed.timestamp()
    return seconds if math.isfinite(seconds) else None
