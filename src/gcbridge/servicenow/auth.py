"""Authentication to ServiceNow: HTTP Basic, or OAuth 2.0 tokens from ``<instance>/oauth_token.do``.

Both give the REST client an ``Authorization`` header and a *generation* (which token it was), and take back
a report when the instance answered 401 with that generation (:meth:`OAuthTokens.rejected`). The OAuth side
is a thin asyncio shell around the pure :class:`gcbridge.core.token.TokenMachine`:

* single flight: one request to the token endpoint at a time; concurrent callers wait for it;
* proactive refresh at 80 % of the lifetime (ServiceNow issues 1800 s tokens; refresh ~24 min in) while
  callers keep using the current token;
* compare-and-invalidate: a 401 drops the token only if it is still the current one, so a burst of 401s
  costs one token request;
* token endpoint failures back off (capped exponential, full jitter, ``Retry-After`` honoured); a refusal of
  the credentials (ServiceNow answers ``{"error":"server_error","error_description":"access_denied"}`` for a
  wrong secret, a disabled grant or a missing OAuth application user) is fatal and says what to check.

The password grant stores the refresh token it receives and uses ``grant_type=refresh_token`` afterwards,
falling back to the password grant when ServiceNow refuses the refresh token (expired after 100 days).
Requests are form-encoded, as ``/oauth_token.do`` requires. Secrets live in :class:`~gcbridge.secrets.Secret`
and never appear in logs, exceptions or ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp

from gcbridge import _json
from gcbridge.core.backoff import parse_retry_after
from gcbridge.core.token import (
    FetchError,
    FetchFailed,
    FetchSucceeded,
    GetRequested,
    Invalidate,
    PublishToken,
    StartFetch,
    TokenAction,
    TokenEvent,
    TokenFatal,
    TokenMachine,
    TokenPolicy,
    TokenState,
)
from gcbridge.secrets import Secret

__all__ = ["AuthError", "Authenticator", "BasicAuth", "OAuthTokens"]

DEFAULT_LIFETIME = 1800.0  # ServiceNow's default access-token lifespan, used when expires_in is absent


class AuthError(Exception):
    """No credentials to send now. ``fatal``: the configuration is wrong; else retry after ``retry_after``."""

    def __init__(self, message: str, *, fatal: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.retry_after = retry_after


class Authenticator(Protocol):
    async def header(self) -> tuple[str, int]:
        """The ``Authorization`` value to send and its generation; raises :class:`AuthError`."""
        ...

    async def rejected(self, generation: int) -> bool:
        """The instance answered 401 to ``generation``; True when a retry with new credentials makes sense."""
        ...


class BasicAuth:
    """HTTP Basic with a ServiceNow user. A 401 cannot be fixed by retrying at once."""

    def __init__(self, username: str, password: Secret) -> None:
        raw = f"{username}:{password.reveal()}".encode()
        self._header = Secret("Basic " + base64.b64encode(raw).decode("ascii"))
        self.username = username

    async def header(self) -> tuple[str, int]:
        return self._header.reveal(), 0

    async def rejected(self, generation: int) -> bool:
        return False

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r})"


@dataclass(frozen=True, slots=True)
class _Fetched:
    access_token: Secret
    expires_in: float
    refresh_token: Secret | None


@dataclass(frozen=True, slots=True)
class _FetchProblem:
    error: FetchError
    reason: str
    retry_after: float | None = None


_REFUSED_HINT = (
    "check client_id/client_secret, the grant (client_credentials needs the instance property "
    "glide.oauth.inbound.client.credential.grant_type.enabled=true and an OAuth application user; the "
    "password grant needs the user's password and must not be disabled by "
    "glide.oauth.inbound.ropc.grant_type.disabled); "
    "fix the configuration and restart"
)


class OAuthTokens:
    """OAuth access tokens for one ServiceNow instance (see the module docstring for the behaviour).

    ``clock`` is monotonic seconds (inject a fake one in tests); ``policy`` the token timing (defaults:
    refresh at 80 % of the lifetime, at least 60 s before expiry; back off 1 s doubling to 60 s).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        instance_url: str,
        *,
        client_id: str,
        client_secret: Secret,
        grant: Literal["password", "client_credentials"] = "client_credentials",
        username: str | None = None,
        password: Secret | None = None,
        scope: str | None = None,
        timeout: float = 30.0,
        policy: TokenPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if grant == "password" and (username is None or password is None):
            raise ValueError("OAuthTokens: the password grant needs username and password")
        self._session = session
        self.token_url = instance_url.rstrip("/") + "/oauth_token.do"
        self._client_id = client_id
        self._client_secret = client_secret
        self._grant = grant
        self._username = username
        self._password = password
        self._scope = scope
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self.machine = TokenMachine(policy)
        self._current: tuple[int, Secret] | None = None
        self._fetched: _Fetched | None = None
        self._refresh_token: Secret | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._done: asyncio.Event = asyncio.Event()
        self.last_error: str | None = None
        self.fetches = 0  # requests sent to the token endpoint (for tests and the status page)

    # ---- Authenticator ------------------------------------------------------------------------------------

    async def header(self) -> tuple[str, int]:
        while True:
            now = self._clock()
            self._perform(self.machine.handle(GetRequested(now)))
            meta = self.machine.usable_token(now)
            if meta is not None and self._current is not None and self._current[0] == meta.generation:
                return "Bearer " + self._current[1].reveal(), meta.generation
            state = self.machine.state
            if state is TokenState.FATAL:
                raise AuthError(f"ServiceNow OAuth: {self.last_error}", fatal=True)
            if state is TokenState.BACKOFF:
                retry_at = self.machine.retry_at
                after = None if retry_at is None else max(0.0, retry_at - now)
                why = self.last_error or "the instance rejected new tokens at once; waiting to ask again"
                raise AuthError(f"ServiceNow OAuth: {why}", retry_after=after)
            done = self._done
            await done.wait()

    async def rejected(self, generation: int) -> bool:
        self._perform(self.machine.handle(Invalidate(self._clock(), generation)))
        return self.machine.state is not TokenState.FATAL

    @property
    def state(self) -> str:
        return self.machine.state.value

    async def close(self) -> None:
        task = self._in_flight
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def __repr__(self) -> str:
        return f"OAuthTokens(url={self.token_url!r}, grant={self._grant!r}, state={self.state})"

    # ---- shell ---------------------------------------------------------------------------------------------

    def _perform(self, actions: list[TokenAction]) -> None:
        for action in actions:
            if isinstance(action, StartFetch):
                self._done = asyncio.Event()
                self._in_flight = asyncio.create_task(self._fetch(), name="servicenow-oauth-fetch")
            elif isinstance(action, PublishToken):
                assert self._fetched is not None
                self._current = (action.meta.generation, self._fetched.access_token)
                if self._fetched.refresh_token is not None:
                    self._refresh_token = self._fetched.refresh_token
                self._fetched = None
            elif isinstance(action, TokenFatal):
                self._current = None

    def _feed(self, event: TokenEvent) -> None:
        self._perform(self.machine.handle(event))

    async def _fetch(self) -> None:
        # Whatever happens (cancelled at shutdown, a bug), the machine must leave FETCHING, or waiters spin.
        outcome: _Fetched | _FetchProblem = _FetchProblem(FetchError.TRANSIENT, "token request was cancelled")
        try:
            outcome = await self._request_token()
        except Exception as exc:
            outcome = _FetchProblem(FetchError.TRANSIENT, f"token request failed: {type(exc).__name__}")
        finally:
            if isinstance(outcome, _Fetched):
                self._fetched = outcome
                self.last_error = None
                self._feed(FetchSucceeded(self._clock(), outcome.expires_in))
            else:
                self.last_error = outcome.reason
                self._feed(FetchFailed(self._clock(), outcome.error, outcome.retry_after))
            self._done.set()

    async def _request_token(self) -> _Fetched | _FetchProblem:
        if self._grant == "password" and self._refresh_token is not None:
            outcome = await self._post(self._form("refresh_token"))
            if not (isinstance(outcome, _FetchProblem) and outcome.error is FetchError.INVALID_CLIENT):
                return outcome
            self._refresh_token = None  # expired or revoked: start again from the password
        return await self._post(self._form(self._grant))

    def _form(self, grant: str) -> dict[str, str]:
        form = {
            "grant_type": grant,
            "client_id": self._client_id,
            "client_secret": self._client_secret.reveal(),
        }
        if grant == "password":
            assert self._username is not None
            assert self._password is not None
            form["username"] = self._username
            form["password"] = self._password.reveal()
        elif grant == "refresh_token":
            assert self._refresh_token is not None
            form["refresh_token"] = self._refresh_token.reveal()
        if self._scope:
            form["scope"] = self._scope
        return form

    async def _post(self, form: dict[str, str]) -> _Fetched | _FetchProblem:
        grant = form["grant_type"]
        self.fetches += 1
        try:
            async with self._session.post(
                self.token_url, data=form, headers={"Accept": "application/json"}, timeout=self._timeout
            ) as response:
                body = await response.read()
                return classify_token_answer(
                    response.status,
                    response.headers.get("Content-Type", ""),
                    body,
                    response.headers.get("Retry-After"),
                    grant,
                )
        except TimeoutError:
            return _FetchProblem(FetchError.TRANSIENT, f"token request ({grant}) timed out")
        except aiohttp.ClientError as exc:
            return _FetchProblem(
                FetchError.TRANSIENT, f"token request ({grant}) failed: {type(exc).__name__}"
            )


def classify_token_answer(
    status: int, content_type: str, body: bytes, retry_after: str | None, grant: str
) -> _Fetched | _FetchProblem:
    """Decide what a token endpoint answer means (pure; the messages never contain the request's secrets)."""
    data: Any = None
    if "json" in content_type.lower():
        try:
            data = _json.loads(body)
        except _json.JSONDecodeError:
            data = None
    if status == 200 and isinstance(data, dict) and isinstance(data.get("access_token"), str):
        expires = data.get("expires_in")
        try:
            lifetime = float(expires) if expires is not None else DEFAULT_LIFETIME
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        refresh = data.get("refresh_token")
        return _Fetched(
            Secret(data["access_token"]), lifetime, Secret(refresh) if isinstance(refresh, str) else None
        )
    if status == 429:
        return _FetchProblem(
            FetchError.RATE_LIMITED,
            f"token endpoint rate-limited the {grant} grant (HTTP 429)",
            parse_retry_after(retry_after, now=time.time()),
        )
    if status in (400, 401, 403) and isinstance(data, dict):
        error = str(data.get("error_description") or data.get("error") or "refused")[:200]
        return _FetchProblem(
            FetchError.INVALID_CLIENT,
            f"token endpoint refused the {grant} grant (HTTP {status}, {error}): {_REFUSED_HINT}",
        )
    if status == 200:
        what = (
            "an HTML page (a hibernating instance?)" if "html" in content_type.lower() else "no access_token"
        )
        return _FetchProblem(FetchError.TRANSIENT, f"token endpoint answered HTTP 200 with {what}")
    return _FetchProblem(FetchError.TRANSIENT, f"token endpoint answered HTTP {status}")
