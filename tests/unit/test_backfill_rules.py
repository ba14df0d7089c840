"""The pure decisions of back-fill jobs: when a job is due, the backoff, what an outcome makes of it; and the
pure helpers around it (the by-hand request, the permission verdict, the outcome for people)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.bridge.backfill_cli import exit_code, outcome_lines, parse_when
from gcbridge.bridge.backfill_permissions import found_from_status, needs, verdict
from gcbridge.core.backfill_rules import RetryPolicy, first_run_at, settle_error, settle_run
from gcbridge.outbox.backfill_jobs import (
    BackfillJob,
    JobGap,
    JobOutcome,
    Unfilled,
    gap_key,
    outcome_from_json,
    outcome_to_json,
)


def test_a_job_is_due_delay_after_its_gap() -> None:
    assert first_run_at(1000.0, 120.0) == 1120.0


def test_a_finished_run_is_done_or_partial() -> None:
    assert settle_run(0, 0).state == "done"
    assert settle_run(1, 0).state == "partial"
    assert settle_run(0, 2).state == "partial"


def test_errors_back_off_doubling_up_to_the_cap_then_fail() -> None:
    policy = RetryPolicy(initial=60.0, cap=200.0, max_attempts=4)
    assert [settle_error(n, 1000.0, policy).next_at for n in (1, 2, 3)] == [1060.0, 1120.0, 1200.0]
    assert {settle_error(n, 0.0, policy).state for n in (1, 2, 3)} == {"pending"}
    assert settle_error(4, 0.0, policy).state == "failed"


@given(st.integers(min_value=1, max_value=10_000))
def test_the_backoff_is_never_beyond_the_cap(attempts: int) -> None:
    policy = RetryPolicy(initial=1.0, cap=300.0, max_attempts=10_001)
    assert 1.0 <= policy.delay(attempts) <= 300.0


def test_a_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        RetryPolicy(initial=0.0)


def test_the_same_gap_has_one_key_and_by_hand_requests_each_their_own() -> None:
    gap = JobGap(1.0, 2.0, ("b", "a"), "socket_dropped", detail="x")
    assert gap_key(gap) == gap_key(JobGap(1.0, 2.0, ("a", "b", "a"), "socket_dropped", detail="other"))
    assert gap_key(gap) != gap_key(JobGap(1.0, 2.0, ("a", "b"), "stall"))
    assert gap_key(JobGap(1.0, 2.0, ("a",), "manual", "r1")) != gap_key(
        JobGap(1.0, 2.0, ("a",), "manual", "r2")
    )


def test_an_outcome_survives_its_json() -> None:
    outcome = JobOutcome(3, 2, 1, 0, 7, 2, (Unfilled(("t1", "t2"), "missing permission x"),), ("e",), "boom")
    assert outcome_from_json(outcome_to_json(outcome)) == outcome
    assert outcome_from_json(None) == JobOutcome()


def test_the_outcome_for_people_names_what_was_not_repaired() -> None:
    job = BackfillJob(
        7,
        JobGap(1_800_000_000.0, 1_800_000_060.0, ("t",) * 30, "manual"),
        "partial",
        1,
        0.0,
        JobOutcome(5, 4, 1, unfillable=(Unfilled(("v2.users.u1.presence",), "missing permission p"),)),
    )
    lines = outcome_lines(job.document(), by_service=False)
    assert lines[0].startswith(
        "back-fill job 7: partial  (2027-01-15T08:00:00Z .. 2027-01-15T08:01:00Z, 30 topics"
    )
    assert "written 4" in lines[1]
    assert "not repaired: 1 topics (v2.users.u1.presence, ...): missing permission p" in lines
    assert lines[-1] == "4 events wait in the outbox; the service delivers them when it runs"
    assert exit_code(job.document()) == 1
    assert len(job.document()["topics_sample"]) == 20  # capped for people; the job keeps all 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T10:00:00Z", 1796378400.0),
        ("2026-12-04T10:00:00", 1796378400.0),
        ("2026-12-04T11:00:00+01:00", 1796378400.0),
    ],
)
def test_times_are_iso_8601_and_utc_without_a_zone(text: str, expected: float) -> None:
    assert parse_when(text, "--from") == expected


def test_a_bad_time_says_how_to_write_one() -> None:
    with pytest.raises(
        ValueError, match=r"--to '10 am' is not an ISO-8601 time; write it like 2026-12-04T10:00:00Z"
    ):
        parse_when("10 am", "--to")


def test_permission_probes_read_403_as_missing_and_their_own_answers_as_granted() -> None:
    details, conversation, observations = needs(1_800_000_000.0)
    assert found_from_status(details, 403) == "missing"
    assert found_from_status(details, 200) == "granted"
    assert found_from_status(details, 404) == "unknown"  # no such endpoint here: cannot tell
    assert found_from_status(conversation, 404) == "granted"  # the made-up conversation is not there
    assert found_from_status(observations, 503) == "unknown"
    level, detail = verdict([(details, "granted", "HTTP 200"), (observations, "missing", "HTTP 403")])
    assert level == "warn"
    assert detail.startswith(
        "missing analytics:queueObservation:view: back-fill of queue observations will be"
    )
    assert verdict([(details, "granted", "HTTP 200")])[0] == "ok"


def test_record_state_joins_a_conversations_topics_and_separates_presence_from_routing_status() -> None:
    from gcbridge.bridge.backfill_runner import record_state

    conversation = {
        record_state("v2.routing.queues.q-1.conversations"),
        record_state("v2.users.u-1.conversations"),
        record_state("v2.detail.events.conversation.c-1.acd.end"),
    }
    assert len(conversation) == 1
    user = {record_state("v2.users.u-1.presence"), record_state("v2.users.u-1.routingStatus")}
    assert len(user) == 2
    assert not user & conversation
    assert record_state("v2.users.u-1.presence") == record_state("v2.users.u-2.presence")
