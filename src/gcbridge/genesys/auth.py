"""OAuth client-credentials tokens for Genesys Cloud: the asyncio shell around :mod:`gcbridge.core.token`.

:class:`TokenManager` fetches a token on first use, refreshes it in the background before it expires (at 80 %
of its lifetime by default), makes sure only one request to the token endpoint is ever in flight, and turns a
burst of 401s into one new token (compare-and-invalidate). Every new token is announced to subscribers,
because Genesys notification channels die with the token that created them.

Example::

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        hosts = resolve_region("eu_west_1")
        async with TokenManager(session, hosts.token_url, client_id, Secret(client_secret)) as tokens:
            token = await tokens.get()
            headers = {"Authorization": f"Bearer {token.value.reveal()}"}

The value of a token or secret never appears in logs, exceptions or ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gcbridge import _json
from gcbridge._logs import get_logger
from gcbridge.core.backoff import parse_retry_after
from gcbridge.core.lifecycle_log import failure_streak_level
from gcbridge.core.token import (
    FetchError,
    FetchFailed,
    FetchSucceeded,
    GetRequested,
    Invalidate,
    PublishToken,
    StartFetch,
    Tick,
    TokenEvent,
    TokenFatal,
    TokenMachine,
    TokenMeta,
    TokenPolicy,
    TokenState,
)
from gcbridge.genesys.errors import (
    GenesysAuthError,
    GenesysUsageError,
    InvalidClientError,
    TokenManagerClosedError,
    TokenUnavailableError,
)
from gcbridge.secrets import Secret

__all__ = [
    "AccessToken",
    "GenesysAuthError",
    "InvalidClientError",
    "TokenManager",
    "TokenManagerClosedError",
    "TokenPolicy",
    "TokenStats",
    "TokenSubscription",
    "TokenUnavailableError",
]

log = get_logger(__name__)

#: Token-endpoint errors that mean "this client cannot get tokens": configuration, not weather.
_FATAL_OAUTH_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


@dataclass(frozen=True, slots=True)
class AccessToken:
    """One access token. Times are loop time (``asyncio`` ``loop.time()``), like the manager's clock.

    ``generation`` increases by one with every token the manager obtains; pass the token back to
    :meth:`TokenManager.invalidate` when the API rejects it. ``repr`` never shows the value.
    """

    value: Secret = field(repr=False)
    generation: int
    issued_at: float
    expires_at: float
    refresh_at: float | None = None  # when the manager will start replacing it (None if unknown)

    def remaining(self, now: float) -> float:
        """Seconds of validity left at ``now`` (loop time)."""
        return self.expires_at - now


@dataclass(slots=True)
class TokenStats:
    """Counters for health and metrics."""

    token_requests: int = 0  # HTTP requests sent to the token endpoint
    tokens_issued: int = 0
    refreshes: int = 0  # successful proactive refreshes (a token replaced before it was needed)
    failures: int = 0  # token requests that failed, whatever the reason
    invalidations: int = 0  # 401s that actually discarded the current token (late ones do not count)


class TokenSubscription:
    """An async iterator of new tokens: first the current one (if any), then each new one.

    Latest wins: a consumer that falls behind gets the newest token, never a superseded one. Iteration ends
    when the manager closes, and raises :class:`InvalidClientError` when the manager goes fatal.
    """

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager
        self._latest: AccessToken | None = manager.current
        self._error: BaseException | None = None
        self._closed = False
        self._ready = asyncio.Event()
        if self._latest is not None:
            self._ready.set()

    def __aiter__(self) -> TokenSubscription:
        return self

    async def __anext__(self) -> AccessToken:
        while True:
            if self._latest is not None:
                token, self._latest = self._latest, None
                return token
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        """Stop receiving tokens; a pending ``__anext__`` ends the iteration."""
        self._closed = True
        self._ready.set()
        self._manager._subscriptions.discard(self)

    def _push(self, token: AccessToken) -> None:
        self._latest = token
        self._ready.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()

    def __enter__(self) -> TokenSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenSubscription(closed={self._closed})"


@dataclass(frozen=True, slots=True)
class _Fetched:
    value: str
    expires_in: float


@dataclass(frozen=True, slots=True)
class _Failed:
    error: FetchError
    status: int | None
    retry_after: float | None
    reason: str


class TokenManager:
    """Client-credentials tokens for one OAuth client: single flight, proactive refresh, compare-and-
    invalidate.

    ``token_url`` is ``RegionHosts.token_url`` (``https://login.<domain>/oauth/token``) or the simulator's
    ``<base_url>/oauth/token``. Create ``session`` with ``cookie_jar=aiohttp.DummyCookieJar()``.

    Without :meth:`start` the manager works lazily (a token is fetched, and refreshed, when :meth:`get` is
    called); after :meth:`start` a background task refreshes before expiry and announces each new token to
    :meth:`subscribe` and :meth:`on_token` listeners. Timings live in :class:`TokenPolicy` (refresh at 80 % of
    the lifetime, backoff 1 s doubling to 60 s with full jitter, ``Retry-After`` honoured).

    ``request_timeout`` (default 30 s) bounds one token request; ``default_expires_in`` (default 300 s, the
    Genesys minimum) is assumed when a response lacks ``expires_in``. ``clock`` defaults to the running loop's
    ``time()``; ``rng`` (a seeded :class:`random.Random`) makes the jitter reproducible.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token_url: str,
        client_id: str,
        client_secret: Secret | str,
        *,
        policy: TokenPolicy | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        request_timeout: float = 30.0,
        default_expires_in: float = 300.0,
    ) -> None:
        if not client_id:
            raise GenesysUsageError(
                "client_id is empty: set the OAuth client id of a client-credentials client"
            )
        if not client_secret:
            raise GenesysUsageError("client_secret is empty: set the secret of the OAuth client")
        self._session = session
        self._token_url = token_url
        self._login_host = urlsplit(token_url).netloc or token_url
        self._client_id = client_id
        self._secret = client_secret if isinstance(client_secret, Secret) else Secret(client_secret)
        self._clock = clock
        self._request_timeout = request_timeout
        self._default_expires_in = default_expires_in
        self._machine = TokenMachine(policy, rng=rng)
        self._current: AccessToken | None = None
        self._pending_value: Secret | None = None
        self._fatal_error: InvalidClientError | None = None
        self._last_failure = ""
        self._failures_in_a_row = 0
        self._closed = False
        self._changed = asyncio.Event()
        self._fetch_task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._subscriptions: set[TokenSubscription] = set()
        self._listeners: list[Callable[[AccessToken], None]] = []
        self.stats = TokenStats()

    # ---- public API --------------------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def state(self) -> TokenState:
        return self._machine.state

    @property
    def current(self) -> AccessToken | None:
        """The newest token obtained (it may have expired; use :meth:`get` for a usable one)."""
        return self._current

    @property
    def retry_at(self) -> float | None:
        """Loop time before which no token request is sent after a failure (None when not backing off)."""
        return self._machine.retry_at

    @property
    def last_failure(self) -> str:
        """A short description of the last failed token request ('' after a success), for status pages."""
        return self._last_failure

    async def get(self, *, max_wait: float | None = None) -> AccessToken:
        """A token usable now. Waits for the single in-flight request (or the backoff) when there is none.

        Raises :class:`InvalidClientError` when the client is rejected (fatal), :class:`TokenUnavailableError`
        when ``max_wait`` (seconds, default: wait as long as it takes) passes,
        :class:`TokenManagerClosedError` after :meth:`aclose`.
        """
        loop = asyncio.get_running_loop()
        give_up_at = None if max_wait is None else loop.time() + max_wait
        while True:
            self._raise_if_unusable()
            changed = self._changed
            now = self._now()
            self._feed(GetRequested(now))
            token = self._usable(now)
            if token is not None:
                return token
            self._raise_if_unusable()
            wait = self._seconds_until_deadline(now)
            if give_up_at is not None:
                left = give_up_at - loop.time()
                if left <= 0:
                    raise TokenUnavailableError(
                        f"no Genesys Cloud token within {max_wait} s from {self._login_host}"
                        f" (state {self.state.value}; last failure: {self._last_failure or 'none'})"
                    )
                wait = left if wait is None else min(wait, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def invalidate(self, token: AccessToken) -> None:
        """The API rejected ``token`` (a 401). Discards it only if it is still the current one, so that many
        concurrent 401s for one token cause exactly one new request."""
        if self._closed:
            return
        before = self._machine.token
        self._feed(Invalidate(self._now(), token.generation))
        if before is not None and self._machine.token is None:
            self.stats.invalidations += 1
            log.info("genesys token invalidated", generation=token.generation, client_id=self._client_id)

    def subscribe(self) -> TokenSubscription:
        """An async iterator of new tokens (see :class:`TokenSubscription`). Close it when done."""
        subscription = TokenSubscription(self)
        if self._fatal_error is not None:
            subscription._fail(self._fatal_error)
        elif self._closed:
            subscription.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def on_token(self, callback: Callable[[AccessToken], None]) -> Callable[[], None]:
        """Call ``callback(token)`` synchronously for every new token; returns a function that unregisters it.
        The callback must not block (schedule work instead) and should not raise (errors are logged)."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def tokens(self) -> AsyncIterator[AccessToken]:
        """Convenience generator over :meth:`subscribe`."""
        with self.subscribe() as subscription:
            async for token in subscription:
                yield token

    async def start(self) -> None:
        """Fetch the first token now and refresh in the background from here on. Idempotent."""
        self._raise_if_unusable()
        if self._timer_task is None:
            self._feed(GetRequested(self._now()))
            self._timer_task = asyncio.create_task(self._run_timer(), name="gcbridge-token-refresh")

    async def aclose(self) -> None:
        """Stop the background refresh and any request in flight; waiters get TokenManagerClosedError."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._timer_task, self._fetch_task) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in list(self._subscriptions):
            subscription.close()
        self._signal()

    async def __aenter__(self) -> TokenManager:
        """:meth:`start` the manager (the first token is requested at once) and return it."""
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """:meth:`aclose` the manager; the exception that ended the block, if any, propagates."""
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"TokenManager(client_id={self._client_id!r}, token_url={self._token_url!r}, "
            f"state={self.state.value}, generation={self._machine.generation})"
        )

    # ---- the shell: feed events, perform actions ---------------------------------------------------------

    def _feed(self, event: TokenEvent) -> None:
        m = self._machine
        before = (m.state, m.generation, m.token, m.retry_at)
        for action in m.handle(event):
            if isinstance(action, StartFetch):
                previous = self._fetch_task
                assert previous is None or previous.done() or previous is asyncio.current_task(), (
                    "single flight violated: a token request is already running"
                )
                self._fetch_task = asyncio.create_task(
                    self._fetch(proactive=action.proactive), name="gcbridge-token-fetch"
                )
            elif isinstance(action, PublishToken):
                self._publish(action.meta)
            elif isinstance(action, TokenFatal):
                self._go_fatal()
        if (m.state, m.generation, m.token, m.retry_at) != before:
            self._signal()

    def _signal(self) -> None:
        # Wake everyone waiting on the old event; later waiters pick up the new one.
        self._changed.set()
        self._changed = asyncio.Event()

    def _publish(self, meta: TokenMeta) -> None:
        value = self._pending_value
        assert value is not None, "PublishToken without a fetched value"
        self._pending_value = None
        token = AccessToken(
            value=value,
            generation=meta.generation,
            issued_at=meta.issued_at,
            expires_at=meta.expires_at,
            refresh_at=meta.refresh_at,
        )
        self._current = token
        self.stats.tokens_issued += 1
        for subscription in list(self._subscriptions):
            subscription._push(token)
        for callback in list(self._listeners):
            try:
                callback(token)
            except Exception:
                log.exception(
                    "token listener failed; fix the callback given to on_token (it must not raise)",
                    generation=token.generation,
                )

    def _go_fatal(self) -> None:
        error = self._fatal_error
        assert error is not None
        log.error(
            "genesys oauth client rejected; giving up (check the client id and secret, and that the region "
            "is the org's)",
            client_id=self._client_id,
            login_host=self._login_host,
            description=error.description,
            status=error.status,
        )
        for subscription in list(self._subscriptions):
            subscription._fail(error)
        self._subscriptions.clear()

    async def _fetch(self, *, proactive: bool) -> None:
        self.stats.token_requests += 1
        requested_at = self._now()
        try:
            outcome = await self._request_token()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an exotic error must not leave the machine waiting forever
            log.exception(
                "token request crashed; retrying with backoff (a bug: please report it)",
                error_type=type(exc).__name__,
            )
            outcome = _Failed(FetchError.TRANSIENT, None, None, f"unexpected {type(exc).__name__}")
        if self._closed:
            return
        now = self._now()
        if isinstance(outcome, _Fetched):
            self._pending_value = Secret(outcome.value)
            self._last_failure = ""
            failed_before, self._failures_in_a_row = self._failures_in_a_row, 0
            if proactive and self._machine.state is TokenState.REFRESHING:
                self.stats.refreshes += 1
            self._feed(FetchSucceeded(now, outcome.expires_in, requested_at))
            log.info(
                "genesys token obtained",
                generation=self._machine.generation,
                expires_in=outcome.expires_in,
                proactive=proactive,
                failed_requests_before=failed_before,
                client_id=self._client_id,
            )
            return
        self.stats.failures += 1
        self._failures_in_a_row += 1
        self._last_failure = outcome.reason
        if outcome.error is FetchError.INVALID_CLIENT:
            self._fatal_error = InvalidClientError(
                self._client_id, self._login_host, outcome.reason, outcome.status or 0
            )
        self._feed(FetchFailed(now, outcome.error, outcome.retry_after))
        if outcome.error is not FetchError.INVALID_CLIENT:
            retry_at = self._machine.retry_at
            # one warning per outage, then debug with an info every few failures: the retries go on forever
            log.log(
                failure_streak_level(self._failures_in_a_row),
                "genesys token request failed; retrying with backoff (if this persists, check the login "
                "host's address and that this machine can reach it)",
                failures_in_a_row=self._failures_in_a_row,
                url=self._token_url,
                status=outcome.status,
                reason=outcome.reason,
                retry_in=None if retry_at is None else round(max(0.0, retry_at - now), 3),
                still_serving_old_token=self._machine.token is not None,
                client_id=self._client_id,
            )

    async def _request_token(self) -> _Fetched | _Failed:
        try:
            async with self._session.post(
                self._token_url,
                data={"grant_type": "client_credentials"},
                headers={"Accept": "application/json", "Authorization": self._basic_auth()},
                timeout=aiohttp.ClientTimeout(total=self._request_timeout),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                body = await resp.read()
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=time.time())
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Failed(FetchError.TRANSIENT, None, None, f"{type(exc).__name__}: {self._scrub(str(exc))}")
        payload = _json_object(body)
        if 200 <= status < 300:
            return self._parse_success(status, payload)
        if status == 429:
            return _Failed(FetchError.RATE_LIMITED, status, retry_after, "HTTP 429 rate limited")
        oauth_error = str(payload.get("error", "")) if payload else ""
        description = self._scrub(
            str(payload.get("error_description") or payload.get("description") or "") if payload else ""
        )[:200]
        if 400 <= status < 500 and oauth_error in _FATAL_OAUTH_ERRORS:
            return _Failed(FetchError.INVALID_CLIENT, status, None, description or oauth_error)
        reason = (
            f"HTTP {status}"
            + (f" {oauth_error}" if oauth_error else "")
            + (f": {description}" if description else "")
        )
        return _Failed(FetchError.TRANSIENT, status, None, reason)

    def _parse_success(self, status: int, payload: dict[str, Any] | None) -> _Fetched | _Failed:
        value = payload.get("access_token") if payload else None
        if not isinstance(value, str) or not value:
            return _Failed(FetchError.TRANSIENT, status, None, f"HTTP {status} without an access_token")
        raw = payload.get("expires_in") if payload else None
        expires_in = self._default_expires_in
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw) and raw > 0:
            expires_in = float(raw)
        elif isinstance(raw, str) and raw.strip().isdigit() and int(raw) > 0:
            expires_in = float(int(raw))
        return _Fetched(value, expires_in)

    async def _run_timer(self) -> None:
        try:
            while not self._closed:
                changed = self._changed
                now = self._now()
                self._feed(Tick(now))
                if self._machine.state is TokenState.FATAL:
                    return
                wait = self._seconds_until_deadline(now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait)
        except Exception:
            # a bug; without this log the background refresh would stop silently
            log.exception(
                "token refresh task crashed; no more background refresh (a bug: please report it)",
                client_id=self._client_id,
            )
            raise

    # ---- helpers -----------------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _usable(self, now: float) -> AccessToken | None:
        meta = self._machine.usable_token(now)
        current = self._current
        if meta is not None and current is not None and current.generation == meta.generation:
            return current
        return None

    def _seconds_until_deadline(self, now: float) -> float | None:
        deadline = self._machine.deadline
        return None if deadline is None else max(0.0, deadline - now)

    def _raise_if_unusable(self) -> None:
        error = self._fatal_error
        if error is not None and self._machine.state is TokenState.FATAL:
            # a fresh exception per caller: re-raising one instance would grow its traceback forever
            raise InvalidClientError(error.client_id, error.login_host, error.description, error.status)
        if self._closed:
            raise TokenManagerClosedError("the TokenManager is closed")

    def _basic_auth(self) -> str:
        # As the Genesys SDK sends it: base64("id:secret"), no form-encoding of the parts.
        raw = f"{self._client_id}:{self._secret.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _scrub(self, text: str) -> str:
        secret = self._secret.reveal()
        return text.replace(secret, "**********") if secret else text


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = _json.loads(body) if body else None
    except _json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None
