"""The pure token lifecycle, driven with a fake clock (a 24 h lifetime runs in microseconds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.core.token import (
    FetchError,
    FetchFailed,
    FetchSucceeded,
    GetRequested,
    Invalidate,
    PublishToken,
    StartFetch,
    Tick,
    TokenAction,
    TokenEvent,
    TokenFatal,
    TokenMachine,
    TokenPolicy,
    TokenProtocolError,
    TokenState,
)

DAY = 86_399.0


class Driver:
    """A machine plus a fake clock and a record of what it asked for."""

    def __init__(self, policy: TokenPolicy | None = None, draw: float = 0.5) -> None:
        self.m = TokenMachine(policy, rng=lambda: draw)
        self.now = 1000.0
        self.actions: list[TokenAction] = []

    def feed(self, event: TokenEvent) -> list[TokenAction]:
        out = self.m.handle(event)
        self.actions.extend(out)
        return out

    def at(self, t: float) -> None:
        self.now = t
        self.feed(Tick(t))

    def get(self) -> list[TokenAction]:
        return self.feed(GetRequested(self.now))

    def ok(self, expires_in: float = DAY) -> list[TokenAction]:
        return self.feed(FetchSucceeded(self.now, expires_in))

    def fail(
        self, error: FetchError = FetchError.TRANSIENT, retry_after: float | None = None
    ) -> list[TokenAction]:
        return self.feed(FetchFailed(self.now, error, retry_after))

    def state(self) -> TokenState:
        return self.m.state

    def fetches(self) -> int:
        return sum(isinstance(a, StartFetch) for a in self.actions)

    def run_timers_until(self, end: float) -> None:
        """Fire Ticks at each deadline, the way the asyncio shell's timer does."""
        while (d := self.m.deadline) is not None and d <= end:
            self.at(d)
            if self.m.in_flight:
                return


def test_lazy_until_asked_then_one_fetch() -> None:
    d = Driver()
    d.at(5000.0)
    assert d.state() is TokenState.EMPTY
    assert d.fetches() == 0
    assert d.get() == [StartFetch(proactive=False)]
    assert d.state() is TokenState.FETCHING
    # more callers while the fetch is in flight: no second request
    for _ in range(100):
        assert d.get() == []
    out = d.ok()
    assert len(out) == 1
    assert isinstance(out[0], PublishToken)
    assert out[0].meta.generation == 1
    assert d.m.usable_token(d.now) == out[0].meta


def test_24h_token_refreshes_at_80_percent_and_serves_meanwhile() -> None:
    d = Driver()
    d.get()
    d.ok(DAY)
    first = d.m.token
    assert first is not None
    assert d.m.deadline == pytest.approx(d.now + 0.8 * DAY)
    d.run_timers_until(d.now + 2 * DAY)
    assert d.state() is TokenState.REFRESHING
    assert d.actions[-1] == StartFetch(proactive=True)
    assert d.now == pytest.approx(first.issued_at + 0.8 * DAY)
    # the old token keeps serving while the refresh is in flight
    assert d.m.usable_token(d.now) == first
    d.ok(DAY)
    assert d.m.generation == 2
    assert d.state() is TokenState.VALID


@pytest.mark.parametrize(
    ("lifetime", "refresh_after"),
    [
        (86_399.0, 0.8 * 86_399.0),  # 80 % of the lifetime
        (300.0, 240.0),  # Genesys minimum: 80 % is exactly 60 s before expiry
        (200.0, 140.0),  # 80 % would leave 40 s: refresh 60 s before expiry instead
        (60.0, 30.0),  # too short for 60 s of lead: never before half the lifetime
    ],
)
def test_refresh_moment(lifetime: float, refresh_after: float) -> None:
    d = Driver()
    d.get()
    d.ok(lifetime)
    assert d.m.token is not None
    assert d.m.token.refresh_at - d.m.token.issued_at == pytest.approx(refresh_after)


def test_token_is_unusable_shortly_before_expiry() -> None:
    d = Driver()
    d.get()
    d.ok(300.0)
    token = d.m.token
    assert token is not None
    assert token.unusable_at == pytest.approx(token.expires_at - 10.0)
    assert d.m.usable_token(token.expires_at - 10.5) == token
    assert d.m.usable_token(token.expires_at - 9.5) is None


def test_failed_refresh_keeps_the_old_token_and_retries_after_backoff() -> None:
    d = Driver(TokenPolicy(backoff=BackoffPolicy(initial=4.0, jitter="none")))
    d.get()
    d.ok(1000.0)
    d.run_timers_until(10_000.0)
    assert d.state() is TokenState.REFRESHING
    d.fail(FetchError.TRANSIENT)
    assert d.state() is TokenState.VALID
    assert d.m.usable_token(d.now) is not None
    assert d.m.deadline == pytest.approx(d.now + 4.0)
    d.at(d.now + 3.9)
    assert d.state() is TokenState.VALID
    d.at(d.now + 0.1)
    assert d.state() is TokenState.REFRESHING
    assert d.fetches() == 3


def test_token_expires_during_backoff_then_callers_wait_for_retry() -> None:
    d = Driver(TokenPolicy(backoff=BackoffPolicy(initial=500.0, cap=500.0, jitter="none")))
    d.get()
    d.ok(1000.0)
    token = d.m.token
    assert token is not None
    d.run_timers_until(10_000.0)
    d.fail()
    retry_at = d.m.retry_at
    assert retry_at is not None
    assert retry_at > token.unusable_at
    d.run_timers_until(retry_at - 1)
    assert d.state() is TokenState.BACKOFF
    assert d.m.usable_token(d.now) is None
    d.get()  # a caller asking does not bypass the backoff
    assert d.fetches() == 2
    d.run_timers_until(retry_at)
    assert d.state() is TokenState.FETCHING
    assert d.fetches() == 3


def test_rate_limited_waits_at_least_retry_after() -> None:
    d = Driver(draw=0.0)  # jitter would allow an immediate retry
    d.get()
    d.fail(FetchError.RATE_LIMITED, retry_after=30.0)
    assert d.state() is TokenState.BACKOFF
    assert d.m.retry_at == pytest.approx(d.now + 30.0)
    d.at(d.now + 29.0)
    d.get()
    assert d.fetches() == 1
    d.at(d.now + 1.0)
    assert d.fetches() == 2


def test_retry_after_is_ignored_for_transient_errors_only_via_backoff() -> None:
    d = Driver(TokenPolicy(backoff=BackoffPolicy(initial=2.0, jitter="none")))
    d.get()
    d.fail(FetchError.TRANSIENT)
    assert d.m.retry_at == pytest.approx(d.now + 2.0)
    d.at(d.now + 2.0)
    d.fail(FetchError.TRANSIENT)
    assert d.m.retry_at == pytest.approx(d.now + 4.0)


def test_invalid_client_is_fatal_and_absorbing() -> None:
    d = Driver()
    d.get()
    d.ok(1000.0)
    d.run_timers_until(10_000.0)
    out = d.fail(FetchError.INVALID_CLIENT)
    assert out == [TokenFatal()]
    assert d.state() is TokenState.FATAL
    assert d.m.usable_token(d.now) is None
    for event in (Tick(d.now + 1e6), GetRequested(d.now), Invalidate(d.now, 1), FetchSucceeded(d.now, 100.0)):
        assert d.feed(event) == []
        assert d.state() is TokenState.FATAL
    assert d.m.deadline is None


def test_compare_and_invalidate_burst_costs_one_fetch() -> None:
    d = Driver()
    d.get()
    d.ok()
    for _ in range(1000):
        d.feed(Invalidate(d.now, 1))
        d.get()
    assert d.fetches() == 2
    assert d.state() is TokenState.FETCHING
    d.ok()
    # late 401s from requests that used generation 1 do not touch generation 2
    for _ in range(10):
        d.feed(Invalidate(d.now, 1))
    assert d.state() is TokenState.VALID
    assert d.m.generation == 2
    assert d.fetches() == 2


def test_invalidate_during_refresh_turns_it_into_the_blocking_fetch() -> None:
    d = Driver()
    d.get()
    d.ok(1000.0)
    d.run_timers_until(10_000.0)
    assert d.state() is TokenState.REFRESHING
    d.feed(Invalidate(d.now, 1))
    assert d.state() is TokenState.FETCHING
    assert d.m.usable_token(d.now) is None
    assert d.fetches() == 2  # no extra request


def test_tokens_rejected_as_soon_as_issued_do_not_cause_a_fetch_loop() -> None:
    d = Driver(TokenPolicy(backoff=BackoffPolicy(initial=8.0, jitter="none")))
    d.get()
    d.ok()
    d.at(d.now + 1.0)
    d.feed(Invalidate(d.now, 1))  # first quick rejection: fetch at once (a revoke is a normal event)
    assert d.state() is TokenState.FETCHING
    assert d.fetches() == 2
    d.ok()
    d.at(d.now + 0.1)
    d.feed(Invalidate(d.now, 2))  # again at once: now back off
    assert d.state() is TokenState.BACKOFF
    assert d.m.retry_at == pytest.approx(d.now + 8.0)
    assert d.fetches() == 2


def test_backoff_resets_after_a_healthy_token() -> None:
    d = Driver(TokenPolicy(backoff=BackoffPolicy(initial=1.0, jitter="none"), healthy_after=60.0))
    d.get()
    for _ in range(5):
        d.fail()
        d.at(d.m.retry_at or 0.0)
    assert d.m.backoff.attempts == 5
    d.ok(1000.0)
    d.at(d.now + 59.0)
    assert d.m.backoff.attempts == 5
    d.at(d.now + 1.0)
    assert d.m.backoff.attempts == 0


def test_results_without_a_request_are_a_protocol_error() -> None:
    d = Driver()
    with pytest.raises(TokenProtocolError, match="FetchSucceeded"):
        d.ok()
    d.get()
    d.ok()
    with pytest.raises(TokenProtocolError, match="VALID"):
        d.fail()


def test_transition_table_covers_every_state_and_event() -> None:
    from gcbridge.core import token

    events = (Tick, GetRequested, FetchSucceeded, FetchFailed, Invalidate)
    missing = [(s, e) for s in TokenState for e in events if (s, e) not in token._TABLE]
    assert missing == []


def test_lifetime_counts_from_when_the_request_was_sent() -> None:
    d = Driver()
    d.get()
    sent = d.now
    d.now += 7.0  # a slow token endpoint
    d.feed(FetchSucceeded(d.now, 300.0, requested_at=sent))
    token = d.m.token
    assert token is not None
    assert token.issued_at == sent
    assert token.expires_at == sent + 300.0


def drive(
    d: Driver, until: float, *, endpoint_up: Callable[[float], bool], step: float = 60.0
) -> list[float]:
    """Run the machine like the shell would for a long period: a caller asks every ``step`` seconds, timers
    fire at their deadlines, and each request is answered at once (ok if ``endpoint_up(now)``).
    Returns the moments at which a caller found no usable token."""
    unserved: list[float] = []
    next_get = d.now
    while d.now < until:
        deadline = d.m.deadline
        d.now = min(next_get, deadline) if deadline is not None else next_get
        actions = d.feed(Tick(d.now))
        if d.now >= next_get:
            actions += d.get()
            if d.m.usable_token(d.now) is None and not any(isinstance(a, StartFetch) for a in actions):
                unserved.append(d.now)
            next_get += step
        if any(isinstance(a, StartFetch) for a in actions):
            if endpoint_up(d.now):
                d.ok(DAY)
            else:
                d.fail()
    return unserved


def test_a_week_of_24h_tokens_is_always_served_with_exact_refresh_count() -> None:
    d = Driver()
    start = d.now
    week = 7 * 86_400.0
    assert drive(d, start + week, endpoint_up=lambda now: True) == []
    # one fetch at the start, then one every 80 % of the lifetime
    assert d.fetches() == int(week // (0.8 * DAY)) + 1
    assert d.m.generation == d.fetches()


def test_a_two_hour_token_endpoint_outage_at_refresh_time_is_invisible_to_callers() -> None:
    d = Driver(draw=0.999)  # the longest jittered delays
    start = d.now
    outage = (start + 0.8 * DAY, start + 0.8 * DAY + 7200.0)
    unserved = drive(d, start + 2 * DAY, endpoint_up=lambda now: not outage[0] <= now < outage[1])
    assert unserved == []
    assert d.m.generation >= 2
    # retries during the outage stayed at the capped backoff (about one a minute), not a tight loop
    assert d.fetches() < 2 + 7200 / 30


def test_an_outage_longer_than_the_token_leaves_callers_unserved_only_while_it_lasts() -> None:
    d = Driver(draw=0.999)
    start = d.now
    outage = (start + 0.8 * DAY, start + 0.8 * DAY + 6 * 3600.0)  # the token dies 4.8 h into it
    unserved = drive(d, start + 2 * DAY, endpoint_up=lambda now: not outage[0] <= now < outage[1])
    token_dead = start + DAY - 10.0
    assert unserved
    assert min(unserved) >= token_dead
    assert max(unserved) <= outage[1] + 60.0  # the first retry after the outage, at most one capped delay
    assert d.m.usable_token(d.now) is not None
    assert d.fetches() < 2 + 6 * 3600 / 30
