"""The OAuth access-token lifecycle as a pure state machine: events in (with the time), actions out.

No asyncio, HTTP or clock here; :class:`gcbridge.genesys.auth.TokenManager` is the shell that feeds events and
performs actions. The machine never sees the token value, only its generation and times.

States
    ``EMPTY``       no token, nothing in flight (until somebody asks).
    ``FETCHING``    no usable token, one request to the token endpoint in flight; callers wait.
    ``VALID``       a usable token; a proactive refresh is due at :attr:`TokenMachine.deadline`.
    ``REFRESHING``  a usable token and one refresh request in flight; callers keep using the token.
    ``BACKOFF``     no usable token; the last request failed, the next one is due at ``retry_at``.
    ``FATAL``       the endpoint said ``invalid_client``: configuration is wrong. Absorbing.

Guarantees (checked by a Hypothesis test): at most one request in flight (single flight), the generation never
decreases, ``FATAL`` never leaves. ``invalidate(generation)`` only acts when that generation is the current
token (compare-and-invalidate), so a burst of 401s caused by one dead token costs one token request.

Timing (all in :class:`TokenPolicy`, seconds):
    * proactive refresh at ``refresh_ratio`` (80 %) of the lifetime, but at least ``min_refresh_lead`` (60 s)
      before expiry when the lifetime allows, and never before half the lifetime;
    * a token counts as expired ``expiry_margin`` (10 s, at most 10 % of the lifetime) before ``expires_at``
      so that a request started with it does not arrive after it died;
    * failures back off with :class:`~gcbridge.core.backoff.Backoff` (``Retry-After`` honoured on 429); the
      backoff resets once a token has served for ``healthy_after`` (60 s);
    * a token rejected within ``fresh_token_grace`` (5 s) of its issue twice in a row backs off the next
      fetch, so that a server that rejects every new token cannot drive a fetch loop.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from gcbridge.core.backoff import Backoff, BackoffPolicy

__all__ = [
    "FetchError",
    "FetchFailed",
    "FetchSucceeded",
    "GetRequested",
    "Invalidate",
    "PublishToken",
    "StartFetch",
    "Tick",
    "TokenAction",
    "TokenEvent",
    "TokenFatal",
    "TokenMachine",
    "TokenMeta",
    "TokenPolicy",
    "TokenProtocolError",
    "TokenState",
]


class TokenState(enum.Enum):
    EMPTY = "empty"
    FETCHING = "fetching"
    VALID = "valid"
    REFRESHING = "refreshing"
    BACKOFF = "backoff"
    FATAL = "fatal"


class FetchError(enum.Enum):
    """How a token request failed, as classified by the shell."""

    TRANSIENT = "transient"  # 5xx, connection error, timeout, malformed answer: back off and retry
    RATE_LIMITED = "rate_limited"  # 429: wait at least Retry-After
    INVALID_CLIENT = "invalid_client"  # wrong secret / region / deleted client: fatal


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """Token timing. Defaults suit Genesys Cloud (lifetimes of 5 min to 48 h, 24 h by default)."""

    refresh_ratio: float = 0.8
    min_refresh_lead: float = 60.0
    expiry_margin: float = 10.0
    healthy_after: float = 60.0
    fresh_token_grace: float = 5.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        if not 0.0 < self.refresh_ratio < 1.0:
            raise ValueError(f"TokenPolicy.refresh_ratio must be in (0, 1), got {self.refresh_ratio!r}")
        for name in ("min_refresh_lead", "expiry_margin", "healthy_after", "fresh_token_grace"):
            if getattr(self, name) < 0:
                raise ValueError(f"TokenPolicy.{name} must be >= 0, got {getattr(self, name)!r}")

    def refresh_lead(self, lifetime: float) -> float:
        """Seconds before expiry at which a proactive refresh starts."""
        return max((1.0 - self.refresh_ratio) * lifetime, min(self.min_refresh_lead, lifetime / 2))

    def margin(self, lifetime: float) -> float:
        return min(self.expiry_margin, lifetime / 10)


@dataclass(frozen=True, slots=True)
class TokenMeta:
    """What the machine knows about a token: everything except its value."""

    generation: int
    issued_at: float
    expires_at: float
    refresh_at: float
    unusable_at: float

    def usable(self, now: float) -> bool:
        return now < self.unusable_at


# ---- events (the shell passes the current time in every one) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed (a timer fired)."""

    now: float


@dataclass(frozen=True, slots=True)
class GetRequested:
    """Somebody wants a token now."""

    now: float


@dataclass(frozen=True, slots=True)
class FetchSucceeded:
    """``requested_at``: when the request was sent. The lifetime is counted from then, because the server
    started it somewhere between sending and receiving; counting from ``now`` would overestimate it by the
    request's latency."""

    now: float
    expires_in: float
    requested_at: float | None = None


@dataclass(frozen=True, slots=True)
class FetchFailed:
    now: float
    error: FetchError
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Invalidate:
    """The API rejected the token of ``generation`` (a 401)."""

    now: float
    generation: int


TokenEvent: TypeAlias = Tick | GetRequested | FetchSucceeded | FetchFailed | Invalidate

# ---- actions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartFetch:
    """Send one request to the token endpoint and report back with FetchSucceeded/FetchFailed."""

    proactive: bool


@dataclass(frozen=True, slots=True)
class PublishToken:
    """The token just fetched is current under ``meta.generation``: hand it to waiters and subscribers."""

    meta: TokenMeta


@dataclass(frozen=True, slots=True)
class TokenFatal:
    """Stop: fail every waiter; nothing will ever be fetched again."""


TokenAction: TypeAlias = StartFetch | PublishToken | TokenFatal


class TokenProtocolError(RuntimeError):
    """The shell fed an event that cannot happen in this state (a bug in the shell, not a runtime fault)."""


_Handler: TypeAlias = Callable[["TokenMachine", TokenEvent], list[TokenAction]]


class TokenMachine:
    """Decides when to fetch, refresh, back off and give up. See the module docstring for the states.

    Feed events through :meth:`handle`; perform the returned actions in order; call :meth:`handle` with
    :class:`Tick` at :attr:`deadline` (when not ``None``).
    """

    def __init__(
        self, policy: TokenPolicy | None = None, rng: random.Random | Callable[[], float] | None = None
    ):
        self.policy = policy if policy is not None else TokenPolicy()
        self.backoff = Backoff(self.policy.backoff, rng)
        self.state = TokenState.EMPTY
        self.token: TokenMeta | None = None
        self.generation = 0  # of the newest token ever issued; never decreases
        self.retry_at: float | None = None  # earliest next request after a failure
        self.last_error: FetchError | None = None
        self._fresh_rejections = 0
        self._good_since: float | None = None  # last successful fetch, unless a failure or rejection followed

    # ---- public ----------------------------------------------------------------------------------------

    def handle(self, event: TokenEvent) -> list[TokenAction]:
        handler = _TABLE.get((self.state, type(event)))
        if handler is None:
            raise TokenProtocolError(f"{type(event).__name__} is not valid in state {self.state.name}")
        return handler(self, event)

    @property
    def in_flight(self) -> bool:
        return self.state in (TokenState.FETCHING, TokenState.REFRESHING)

    def usable_token(self, now: float) -> TokenMeta | None:
        """The current token if it may still be used at ``now``."""
        if self.state in (TokenState.VALID, TokenState.REFRESHING) and self.token and self.token.usable(now):
            return self.token
        return None

    @property
    def deadline(self) -> float | None:
        """When the shell must feed the next :class:`Tick`; ``None`` when only an event can change things."""
        if self.state is TokenState.VALID and self.token is not None:
            return min(self._refresh_due(self.token), self.token.unusable_at)
        if self.state is TokenState.REFRESHING and self.token is not None:
            return self.token.unusable_at
        if self.state is TokenState.BACKOFF:
            return self.retry_at
        return None

    # ---- handlers (one per table row) --------------------------------------------------------------------

    def _ignore(self, event: TokenEvent) -> list[TokenAction]:
        return []

    def _fetch_on_demand(self, event: TokenEvent) -> list[TokenAction]:
        return self._start(TokenState.FETCHING)

    def _settle_valid(self, event: TokenEvent) -> list[TokenAction]:
        token = self.token
        assert token is not None
        now = event.now
        if not token.usable(now):
            self.token = None
            return self._fetch_or_wait(now)
        # Healthy means: a token obtained and used with no failure since, for a while. The age of the token
        # alone is not enough: while refreshes fail, the old token keeps ageing and the backoff must grow.
        if self._good_since is not None and now - self._good_since >= self.policy.healthy_after:
            self.backoff.reset()
            self._fresh_rejections = 0
        if now >= self._refresh_due(token):
            return self._start(TokenState.REFRESHING, proactive=True)
        return []

    def _settle_refreshing(self, event: TokenEvent) -> list[TokenAction]:
        if self.token is not None and not self.token.usable(event.now):
            self.token = None
            self.state = TokenState.FETCHING
        return []

    def _settle_backoff(self, event: TokenEvent) -> list[TokenAction]:
        if self.retry_at is None or event.now >= self.retry_at:
            return self._start(TokenState.FETCHING)
        return []

    def _succeeded(self, event: TokenEvent) -> list[TokenAction]:
        assert isinstance(event, FetchSucceeded)
        now = event.now
        lifetime = max(0.0, event.expires_in)
        issued_at = now if event.requested_at is None else min(now, event.requested_at)
        self.generation += 1
        expires_at = issued_at + lifetime
        self.token = TokenMeta(
            generation=self.generation,
            issued_at=issued_at,
            expires_at=expires_at,
            refresh_at=expires_at - self.policy.refresh_lead(lifetime),
            unusable_at=expires_at - self.policy.margin(lifetime),
        )
        self.retry_at = None
        self.last_error = None
        self._good_since = issued_at
        self.state = TokenState.VALID
        return [PublishToken(self.token)]

    def _failed(self, event: TokenEvent) -> list[TokenAction]:
        assert isinstance(event, FetchFailed)
        self.last_error = event.error
        self._good_since = None
        if event.error is FetchError.INVALID_CLIENT:
            self.state = TokenState.FATAL
            self.token = None
            self.retry_at = None
            return [TokenFatal()]
        retry_after = event.retry_after if event.error is FetchError.RATE_LIMITED else None
        self.retry_at = event.now + self.backoff.next_delay(retry_after)
        if self.token is not None and self.token.usable(event.now):
            self.state = TokenState.VALID  # keep serving the old token; refresh again at retry_at
            return []
        self.token = None
        self.state = TokenState.BACKOFF
        return []

    def _invalidate_valid(self, event: TokenEvent) -> list[TokenAction]:
        assert isinstance(event, Invalidate)
        if not self._drop_if_current(event):
            return []
        return self._fetch_or_wait(event.now)

    def _invalidate_refreshing(self, event: TokenEvent) -> list[TokenAction]:
        assert isinstance(event, Invalidate)
        if self._drop_if_current(event):
            self.state = TokenState.FETCHING  # the refresh in flight becomes the blocking fetch
        return []

    def _fatal(self, event: TokenEvent) -> list[TokenAction]:
        return []

    def _protocol_error(self, event: TokenEvent) -> list[TokenAction]:
        raise TokenProtocolError(
            f"{type(event).__name__} without a request in flight (state {self.state.name})"
        )

    # ---- helpers -----------------------------------------------------------------------------------------

    def _start(self, state: TokenState, *, proactive: bool = False) -> list[TokenAction]:
        self.state = state
        return [StartFetch(proactive=proactive)]

    def _refresh_due(self, token: TokenMeta) -> float:
        return token.refresh_at if self.retry_at is None else max(token.refresh_at, self.retry_at)

    def _drop_if_current(self, event: Invalidate) -> bool:
        token = self.token
        if token is None or token.generation != event.generation:
            return False  # an older token: the current one is already newer (compare-and-invalidate)
        self.token = None
        self._good_since = None
        if event.now - token.issued_at < self.policy.fresh_token_grace:
            self._fresh_rejections += 1
        else:
            self._fresh_rejections = 0
        if self._fresh_rejections >= 2:
            # The server rejects tokens as soon as they are issued: fetch again, but not in a loop.
            self.retry_at = max(self.retry_at or event.now, event.now + self.backoff.next_delay())
        return True

    def _fetch_or_wait(self, now: float) -> list[TokenAction]:
        if self.retry_at is not None and now < self.retry_at:
            self.state = TokenState.BACKOFF
            return []
        return self._start(TokenState.FETCHING)

    def __repr__(self) -> str:
        return (
            f"TokenMachine(state={self.state.name}, generation={self.generation}, retry_at={self.retry_at})"
        )


_S = TokenState
_TABLE: Final[dict[tuple[TokenState, type], _Handler]] = {
    # EMPTY: lazy until somebody asks
    (_S.EMPTY, Tick): TokenMachine._ignore,
    (_S.EMPTY, GetRequested): TokenMachine._fetch_on_demand,
    (_S.EMPTY, Invalidate): TokenMachine._ignore,
    (_S.EMPTY, FetchSucceeded): TokenMachine._protocol_error,
    (_S.EMPTY, FetchFailed): TokenMachine._protocol_error,
    # FETCHING: one request in flight, no usable token
    (_S.FETCHING, Tick): TokenMachine._ignore,
    (_S.FETCHING, GetRequested): TokenMachine._ignore,
    (_S.FETCHING, Invalidate): TokenMachine._ignore,
    (_S.FETCHING, FetchSucceeded): TokenMachine._succeeded,
    (_S.FETCHING, FetchFailed): TokenMachine._failed,
    # VALID: serve; refresh when due; drop when expired or rejected
    (_S.VALID, Tick): TokenMachine._settle_valid,
    (_S.VALID, GetRequested): TokenMachine._settle_valid,
    (_S.VALID, Invalidate): TokenMachine._invalidate_valid,
    (_S.VALID, FetchSucceeded): TokenMachine._protocol_error,
    (_S.VALID, FetchFailed): TokenMachine._protocol_error,
    # REFRESHING: serve while the refresh is in flight
    (_S.REFRESHING, Tick): TokenMachine._settle_refreshing,
    (_S.REFRESHING, GetRequested): TokenMachine._settle_refreshing,
    (_S.REFRESHING, Invalidate): TokenMachine._invalidate_refreshing,
    (_S.REFRESHING, FetchSucceeded): TokenMachine._succeeded,
    (_S.REFRESHING, FetchFailed): TokenMachine._failed,
    # BACKOFF: wait for retry_at
    (_S.BACKOFF, Tick): TokenMachine._settle_backoff,
    (_S.BACKOFF, GetRequested): TokenMachine._settle_backoff,
    (_S.BACKOFF, Invalidate): TokenMachine._ignore,
    (_S.BACKOFF, FetchSucceeded): TokenMachine._protocol_error,
    (_S.BACKOFF, FetchFailed): TokenMachine._protocol_error,
    # FATAL: absorbing; late results of a cancelled request are ignored too
    (_S.FATAL, Tick): TokenMachine._fatal,
    (_S.FATAL, GetRequested): TokenMachine._fatal,
    (_S.FATAL, Invalidate): TokenMachine._fatal,
    (_S.FATAL, FetchSucceeded): TokenMachine._fatal,
    (_S.FATAL, FetchFailed): TokenMachine._fatal,
}
