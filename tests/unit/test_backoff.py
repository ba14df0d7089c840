from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.core.backoff import Backoff, BackoffPolicy, parse_retry_after


def test_defaults_are_documented_values() -> None:
    policy = BackoffPolicy()
    assert (policy.initial, policy.factor, policy.cap, policy.jitter) == (1.0, 2.0, 60.0, "full")


def test_no_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff(BackoffPolicy(initial=1.0, factor=2.0, cap=10.0, jitter="none"))
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.attempts == 6


def test_full_jitter_scales_the_draw_by_the_ceiling() -> None:
    draws = iter([0.5, 0.25, 0.999, 0.0])
    backoff = Backoff(BackoffPolicy(initial=2.0, factor=3.0, cap=100.0), rng=lambda: next(draws))
    assert backoff.next_delay() == pytest.approx(1.0)  # 0.5 * 2
    assert backoff.next_delay() == pytest.approx(1.5)  # 0.25 * 6
    assert backoff.next_delay() == pytest.approx(17.982)  # 0.999 * 18
    assert backoff.next_delay() == 0.0


def test_equal_jitter_never_below_half_the_ceiling() -> None:
    backoff = Backoff(BackoffPolicy(initial=4.0, jitter="equal"), rng=lambda: 0.0)
    assert backoff.next_delay() == 2.0


def test_retry_after_is_a_floor_even_with_zero_jitter() -> None:
    backoff = Backoff(BackoffPolicy(initial=1.0), rng=lambda: 0.0)
    assert backoff.next_delay(retry_after=7.0) == 7.0
    # a huge Retry-After is capped, so a bogus header cannot park the client for days
    assert Backoff(BackoffPolicy(retry_after_cap=300.0), rng=lambda: 0.0).next_delay(1e9) == 300.0


def test_retry_after_does_not_shorten_a_longer_backoff() -> None:
    backoff = Backoff(BackoffPolicy(initial=50.0, jitter="none"))
    assert backoff.next_delay(retry_after=1.0) == 50.0


def test_reset_only_after_a_healthy_period() -> None:
    backoff = Backoff(BackoffPolicy(jitter="none"))
    for _ in range(4):
        backoff.next_delay()
    backoff.healthy_for(5.0, threshold=30.0)  # accepted then dropped at once: not healthy
    assert backoff.next_delay() == 16.0
    backoff.healthy_for(30.0, threshold=30.0)
    assert backoff.attempts == 0
    assert backoff.next_delay() == 1.0


def test_thousands_of_attempts_do_not_overflow() -> None:
    backoff = Backoff(BackoffPolicy(jitter="none", cap=60.0))
    backoff.attempts = 100_000
    assert backoff.next_delay() == 60.0


def test_seeded_rng_is_reproducible() -> None:
    a = Backoff(rng=random.Random(42))
    b = Backoff(rng=random.Random(42))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


def test_rng_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Backoff(rng=lambda: 1.0).next_delay()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0.0}, "initial"),
        ({"factor": 0.5}, "factor"),
        ({"initial": 10.0, "cap": 5.0}, "cap"),
        ({"jitter": "some"}, "jitter"),
    ],
)
def test_bad_policy_is_rejected_with_a_specific_message(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]


@given(
    initial=st.floats(0.001, 10.0),
    factor=st.floats(1.0, 5.0),
    extra=st.floats(0.0, 100.0),
    seed=st.integers(0, 2**32),
    retry_after=st.one_of(st.none(), st.floats(0.0, 500.0)),
    n=st.integers(1, 80),
)
def test_full_jitter_delay_is_within_bounds(
    initial: float, factor: float, extra: float, seed: int, retry_after: float | None, n: int
) -> None:
    policy = BackoffPolicy(initial=initial, factor=factor, cap=initial + extra)
    backoff = Backoff(policy, rng=random.Random(seed))
    for attempt in range(n):
        delay = backoff.next_delay(retry_after)
        ceiling = min(policy.cap, initial * factor**attempt) if attempt < 1000 else policy.cap
        upper = max(ceiling, retry_after or 0.0)
        assert 0.0 <= delay <= upper
        if retry_after is not None:
            assert delay >= retry_after


def test_parse_retry_after_seconds_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("2", now=now) == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    when = datetime.fromtimestamp(now + 30, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == pytest.approx(30.0)
    for bad in (None, "", "soon", "inf", "nan"):
        assert parse_retry_after(bad, now=now) is None
    # a date without "now" cannot become a delay
    assert parse_retry_after(format_datetime(when, usegmt=True)) is None
