"""The sink's outage state machine: sink-wide failures become one outage, row failures stay per row (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.outbox.base import Delivered, Outcome, Reject, Retry, SinkCondition
from gcbridge.outbox.outage import Paused, Resumed, SinkHealth, probe_policy
from gcbridge.servicenow import conditions

CREDENTIALS = Retry("HTTP 401", condition=conditions.bad_credentials(401))
FIVE_HUNDRED = Retry("HTTP 500", condition=conditions.unavailable(500))


def test_a_definite_condition_pauses_at_once_and_only_once() -> None:
    health = SinkHealth()
    assert health.observe(CREDENTIALS, 100.0) == Paused(conditions.bad_credentials(401))
    assert health.paused
    # the other rows that were in flight fail the same way: no second pause (one error line per outage)
    assert health.observe(CREDENTIALS, 100.1) is None
    assert health.observe(CREDENTIALS, 100.2) is None
    assert health.condition is not None
    assert health.condition.summary == "ServiceNow rejected the credentials (HTTP 401)"
    assert health.holds(CREDENTIALS)


def test_row_failures_never_start_an_outage() -> None:
    health = SinkHealth()
    for outcome in (Reject("HTTP 400: bad field"), Retry("HTTP 429"), Retry("HTTP 202"), Delivered()):
        assert health.observe(outcome, 1.0) is None
        assert not health.paused
        assert not health.holds(outcome)
    assert health.may_claim(1.0) is None


def test_5xx_needs_a_run_and_one_answer_in_between_resets_the_count() -> None:
    health = SinkHealth()
    threshold = conditions.RUN_OF_FAILURES
    for _ in range(threshold - 1):
        assert health.observe(FIVE_HUNDRED, 1.0) is None
    assert not health.paused
    assert not health.holds(FIVE_HUNDRED)  # before the outage a 5xx row keeps its own backoff
    assert health.observe(Delivered(), 1.0) is None
    for _ in range(threshold - 1):
        assert health.observe(FIVE_HUNDRED, 2.0) is None
    assert isinstance(health.observe(FIVE_HUNDRED, 2.0), Paused)
    assert health.holds(FIVE_HUNDRED)


def test_paused_sink_is_probed_one_row_at_a_time_with_growing_gaps() -> None:
    health = SinkHealth()
    health.observe(CREDENTIALS, 0.0)
    assert health.may_claim(0.5) == 0  # first probe 1 s after the outage began
    gaps = []
    now = 0.0
    for _ in range(8):
        now = health.next_probe_at
        assert health.may_claim(now) == 1
        assert health.may_claim(now) == 0  # one probe in flight at a time
        health.observe(CREDENTIALS, now)
        gaps.append(health.next_probe_at - now)
    assert gaps[:6] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert max(gaps) == 60.0


def test_probes_follow_the_rows_backoff_and_cap_at_a_minute() -> None:
    """A compressed configuration (the soak's ``backoff_max = 3``) probes 3 s apart, not 60: the probe cap is
    min(``backoff_max``, 60). The soak's long outages came from counted 5xx answers consumed one probe at a
    time (``bench/README.md``), not from this cap."""

    def gaps(rows: BackoffPolicy, probes: int) -> list[float]:
        health = SinkHealth(probe_policy(rows))
        health.observe(CREDENTIALS, 0.0)
        out = [health.next_probe_at]
        for _ in range(probes):
            now = health.next_probe_at
            assert health.may_claim(now) == 1
            health.observe(FIVE_HUNDRED, now)
            out.append(health.next_probe_at - now)
        return out

    soak = gaps(BackoffPolicy(initial=0.1, factor=2.0, cap=3.0), 8)
    assert soak[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert max(soak) == pytest.approx(3.0)
    assert max(gaps(BackoffPolicy(initial=1.0, factor=2.0, cap=300.0), 12)) == 60.0


def test_rows_in_flight_when_the_outage_began_do_not_push_the_first_probe_out() -> None:
    """32 rows in flight all fail alike; only failed probes grow the gap between probes."""
    health = SinkHealth()
    for _ in range(conditions.RUN_OF_FAILURES - 1):
        health.observe(FIVE_HUNDRED, 0.0)
    assert isinstance(health.observe(FIVE_HUNDRED, 0.0), Paused)
    for i in range(27):
        assert health.observe(FIVE_HUNDRED, 0.001 * i) is None
    assert health.next_probe_at == 1.0
    assert health.may_claim(1.0) == 1
    health.observe(FIVE_HUNDRED, 1.0)
    assert health.next_probe_at == 3.0
    # a late row's Retry-After still holds the next probe back
    health.observe(Retry("HTTP 503", after=10.0, condition=conditions.unavailable(503)), 1.5)
    assert health.next_probe_at == 11.5


def test_an_unused_probe_is_given_back() -> None:
    health = SinkHealth()
    health.observe(CREDENTIALS, 0.0)
    assert health.may_claim(5.0) == 1
    health.probe_unused()
    assert health.may_claim(5.0) == 1


def test_any_answer_without_a_condition_ends_the_outage() -> None:
    for answer in (Delivered(), Reject("HTTP 400: bad field"), Retry("HTTP 429")):
        health = SinkHealth()
        health.observe(CREDENTIALS, 10.0)
        assert health.may_claim(11.0) == 1
        assert health.observe(answer, 25.0) == Resumed(conditions.bad_credentials(401), 15.0)
        assert not health.paused
        assert health.condition is None
        assert health.may_claim(25.0) is None


def test_the_condition_shown_is_the_latest_one() -> None:
    health = SinkHealth()
    health.observe(CREDENTIALS, 0.0)
    gone = Retry(
        "HTTP 400: Invalid table u_x", condition=conditions.missing_table("HTTP 400: Invalid table u_x")
    )
    health.observe(gone, 1.0)
    assert health.condition is not None
    assert health.condition.kind == "missing_table"
    assert "u_x" in health.condition.summary


def test_condition_text_builders() -> None:
    assert conditions.missing_table("HTTP 400: Bad request") is None
    table = conditions.missing_table("HTTP 400: Invalid table u_genesys_import")
    assert isinstance(table, SinkCondition)
    assert table.summary == "ServiceNow table u_genesys_import does not exist (HTTP 400 Invalid table)"
    assert conditions.is_acl_denial("Insufficient rights to query records")
    assert not conditions.is_acl_denial("Data Policy Exception: field is mandatory")


def test_a_retry_after_on_the_failure_is_a_floor_for_the_next_probe() -> None:
    health = SinkHealth()
    busy = Retry("HTTP 503", after=120.0, condition=conditions.unavailable(503))
    for _ in range(conditions.RUN_OF_FAILURES):
        health.observe(busy, 0.0)
    assert health.paused
    assert health.next_probe_at == 120.0


OUTCOMES = [Delivered(), Reject("HTTP 400: bad"), Retry("HTTP 429"), CREDENTIALS, FIVE_HUNDRED]


@given(st.lists(st.tuples(st.sampled_from(OUTCOMES), st.floats(0, 100)), max_size=60))
def test_pauses_and_resumes_alternate_and_probes_never_overlap(steps: list[tuple[Outcome, float]]) -> None:
    health = SinkHealth()
    now = 0.0
    last: type[Paused | Resumed] = Resumed
    for outcome, dt in steps:
        now += dt
        allowed = health.may_claim(now)
        assert allowed in (None, 0, 1)
        if allowed == 1:
            assert health.may_claim(now) == 0
        transition = health.observe(outcome, now)
        if transition is not None:
            assert type(transition) is not last  # never two pauses (two error lines) in a row
            last = type(transition)
        assert health.paused == (last is Paused)
        if not isinstance(outcome, Retry) or outcome.condition is None:  # ServiceNow answered properly
            assert not health.paused
            assert not health.holds(outcome)
