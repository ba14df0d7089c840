"""The per-minute ring behind the status page's charts (pure; times are passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.bridge.history import MinuteHistory, Sample

T0 = 1_800_000_000.0  # a multiple of 60


def sample(
    at: float, received: int = 0, written: int = 0, depth: int = 0, lat: float = 0.0, req: int = 0
) -> Sample:
    return Sample(
        at=at, received=received, written=written, outbox_depth=depth, latency_seconds=lat, requests=req
    )


def test_counts_what_changed_in_each_minute() -> None:
    h = MinuteHistory()
    h.record(sample(T0 + 1, received=100, written=90))  # this run's totals: counted from zero
    h.record(sample(T0 + 30, received=130, written=95, depth=7, lat=0.5, req=5))
    h.record(sample(T0 + 61, received=140, written=140, depth=2, lat=0.8, req=8))
    first, second = h.documents()
    assert first == {
        "start": T0,
        "events_in": 130,
        "records_written": 95,
        "outbox_depth": 7,
        "servicenow_latency_ms": 100.0,
    }
    assert second["start"] == T0 + 60
    assert (second["events_in"], second["records_written"], second["outbox_depth"]) == (10, 45, 2)
    assert second["servicenow_latency_ms"] == 100.0  # 0.3 s over 3 requests


def test_a_minute_without_requests_has_no_latency() -> None:
    h = MinuteHistory()
    h.record(sample(T0))
    h.record(sample(T0 + 10, received=3))
    assert h.documents()[0]["servicenow_latency_ms"] is None


def test_the_ring_keeps_only_the_last_hour() -> None:
    h = MinuteHistory(minutes=60)
    for minute in range(24 * 60):  # a day of samples, one a minute
        h.record(sample(T0 + minute * 60, received=minute))
    docs = h.documents()
    assert len(docs) == 60
    assert docs[0]["start"] == T0 + (24 * 60 - 60) * 60
    assert docs[-1]["start"] == T0 + (24 * 60 - 1) * 60
    assert all(d["events_in"] == 1 for d in docs)  # a day of growth, but only the last hour is kept


def test_a_counter_reset_counts_its_new_value_not_a_negative() -> None:
    h = MinuteHistory()
    h.record(sample(T0, received=500))
    h.record(sample(T0 + 5, received=4))
    assert h.documents()[0]["events_in"] == 504


def test_a_clock_stepping_back_adds_to_the_newest_minute() -> None:
    h = MinuteHistory()
    h.record(sample(T0 + 120, received=0))
    h.record(sample(T0 + 10, received=6))  # stepped back two minutes
    docs = h.documents()
    assert [d["start"] for d in docs] == [T0 + 120]
    assert docs[0]["events_in"] == 6


def test_minutes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="minutes must be at least 1"):
        MinuteHistory(minutes=0)


@given(st.lists(st.tuples(st.floats(0, 600), st.integers(0, 50)), min_size=1, max_size=200))
def test_every_event_of_the_run_is_counted_once(
    steps: list[tuple[float, int]],
) -> None:
    h = MinuteHistory(minutes=1000)
    at, total = T0, 0
    h.record(sample(at, received=total))
    for dt, n in steps:
        at, total = at + dt, total + n
        h.record(sample(at, received=total))
    docs = h.documents()
    assert sum(d["events_in"] for d in docs) == total
    starts = [d["start"] for d in docs]
    assert starts == sorted(set(starts))
