"""The periodic summary of delivery retries (pure; the clock is a number the test passes in)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.bridge.retry_summary import RETRYING_MESSAGE, RetrySummary
from gcbridge.outbox.base import OutboxStats


def stats(pending: int = 0, oldest: float = 0.0) -> OutboxStats:
    return OutboxStats(pending=pending, in_flight=0, dead=0, delivered=0, oldest_pending_age=oldest)


def test_one_line_a_period_while_retrying_then_one_when_recovered() -> None:
    summary = RetrySummary(period=60.0)
    assert summary.observe(0.0, 0, stats(), None) is None
    # 300 retries within the first minute: no line until the period ends
    for second in range(1, 60):
        assert summary.observe(float(second), second * 5, stats(40, second), "HTTP 503") is None
    first = summary.observe(60.0, 300, stats(40, 60.0), "HTTP 503")
    assert first is not None
    assert first.message == RETRYING_MESSAGE
    assert first.fields() == {
        "retries": 300,
        "period_seconds": 60.0,
        "pending": 40,
        "oldest_pending_seconds": 60.0,
        "last_reason": "HTTP 503",
        "what_to_do": first.fields()["what_to_do"],
    }
    assert "gcbridge outbox list" in str(first.fields()["what_to_do"])
    second = summary.observe(120.0, 310, stats(3, 100.0), "HTTP 429")
    assert second is not None
    assert (second.line, second.retries, second.last_reason) == (
        "retrying",
        10,
        "HTTP 429",
    )
    recovered = summary.observe(180.0, 310, stats(), None)
    assert recovered is not None
    assert recovered.line == "recovered"
    assert "what_to_do" not in recovered.fields()
    assert summary.observe(240.0, 310, stats(), None) is None  # quiet stays quiet, silently


def test_retries_before_the_first_look_count_in_the_first_period() -> None:
    summary = RetrySummary(period=10.0)
    summary.observe(1.0, 6, None, None)  # six retries happened before the service first looked
    line = summary.observe(11.0, 6, None, "HTTP 503")
    assert line is not None
    assert line.retries == 6


def test_a_lower_total_counts_from_zero_rather_than_negative() -> None:
    summary = RetrySummary(period=10.0)
    summary.observe(0.0, 50, None, None)
    assert summary.observe(5.0, 2, None, None) is None
    line = summary.observe(15.0, 4, None, "x")
    assert line is not None
    assert line.retries == 4


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="period must be positive"):
        RetrySummary(period=0)


@given(st.lists(st.tuples(st.floats(0.1, 30.0), st.integers(0, 20)), max_size=300))
def test_never_more_than_one_line_a_period(steps: list[tuple[float, int]]) -> None:
    summary = RetrySummary(period=60.0)
    now, total = 0.0, 0
    summary.observe(now, total, None, None)
    lines: list[float] = []
    for dt, n in steps:
        now, total = now + dt, total + n
        if summary.observe(now, total, None, "r") is not None:
            lines.append(now)
    assert all(b - a >= 60.0 for a, b in itertools.pairwise(lines))
