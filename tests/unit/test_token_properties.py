"""Random event sequences through the token machine: single flight, monotonic generations, FATAL absorbing."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

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
    TokenState,
)

Op = tuple[str, float]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("pass"), st.floats(0.0, 200_000.0)),
        st.tuples(st.just("timer"), st.just(0.0)),
        st.tuples(st.just("get"), st.just(0.0)),
        st.tuples(st.just("ok"), st.sampled_from([1.0, 60.0, 300.0, 3600.0, 86_399.0, 172_800.0])),
        # a whole request/answer cycle, so that long runs reach many generations
        st.tuples(st.just("get_ok"), st.sampled_from([30.0, 300.0, 86_399.0])),
        st.tuples(st.just("err"), st.just(0.0)),
        st.tuples(st.just("429"), st.floats(0.0, 600.0)),
        st.tuples(st.just("invalid_client"), st.just(0.0)),
        st.tuples(st.just("invalidate_current"), st.just(0.0)),
        st.tuples(st.just("invalidate_old"), st.integers(1, 5).map(float)),
    ),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(ops=ops, seed=st.integers(0, 2**32))
def test_random_sequences_keep_the_invariants(ops: list[Op], seed: int) -> None:
    machine = TokenMachine(rng=random.Random(seed))
    now = 0.0
    in_flight = 0
    last_generation = 0
    fatal_seen = False
    published: list[int] = []

    for kind, arg in ops:
        event: TokenEvent | None
        if kind == "pass":
            now += arg
            event = Tick(now)
        elif kind == "timer":
            deadline = machine.deadline
            if deadline is None:
                continue
            now = max(now, deadline)
            event = Tick(now)
        elif kind == "get":
            event = GetRequested(now)
        elif kind == "get_ok":
            kind = "get"
            event = GetRequested(now)
            if in_flight == 0:
                in_flight += sum(isinstance(a, StartFetch) for a in machine.handle(event))
            if in_flight == 1:
                in_flight = 0
                kind = "ok"
                event = FetchSucceeded(now, arg)
        elif kind in ("ok", "err", "429", "invalid_client"):
            if in_flight == 0:
                continue  # a result only arrives for a request that was started
            in_flight -= 1
            if kind == "ok":
                event = FetchSucceeded(now, arg)
            elif kind == "err":
                event = FetchFailed(now, FetchError.TRANSIENT)
            elif kind == "429":
                event = FetchFailed(now, FetchError.RATE_LIMITED, retry_after=arg)
            else:
                event = FetchFailed(now, FetchError.INVALID_CLIENT)
        elif kind == "invalidate_current":
            event = Invalidate(now, machine.generation)
        else:
            event = Invalidate(now, max(0, machine.generation - int(arg)))

        actions = machine.handle(event)

        for action in actions:
            if isinstance(action, StartFetch):
                in_flight += 1
            elif isinstance(action, PublishToken):
                published.append(action.meta.generation)
            elif isinstance(action, TokenFatal):
                fatal_seen = True
        assert in_flight <= 1, "more than one token request in flight"
        assert machine.in_flight == (in_flight == 1) or fatal_seen
        assert machine.generation >= last_generation
        last_generation = machine.generation
        if fatal_seen:
            assert machine.state is TokenState.FATAL
            assert all(isinstance(a, TokenFatal) for a in actions)
            assert machine.usable_token(now) is None
        token = machine.usable_token(now)
        if token is not None:
            assert token.generation == machine.generation
            assert token.issued_at <= now < token.expires_at
        deadline = machine.deadline
        if machine.state is TokenState.BACKOFF:
            assert deadline is not None
            assert machine.retry_at is not None

    assert published == sorted(set(published)), "generations must be published once each, increasing"
