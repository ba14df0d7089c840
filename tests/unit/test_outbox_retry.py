"""decide(): the pure outcome-to-action mapping of the dispatcher."""

from __future__ import annotations

import random

import pytest

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.outbox import Delivered, Reject, Retry
from gcbridge.outbox.retry import Ack, Bury, Reschedule, decide

NO_JITTER = BackoffPolicy(initial=1.0, factor=2.0, cap=60.0, jitter="none")


def test_delivered_is_acked_with_its_detail() -> None:
    assert decide(Delivered("sys_id=abc"), attempts=3, now=10.0) == Ack("sys_id=abc")


def test_reject_is_buried_at_once_with_the_reason() -> None:
    assert decide(Reject("HTTP 400 bad field"), attempts=0, now=10.0) == Bury("rejected: HTTP 400 bad field")


@pytest.mark.parametrize(("attempts", "delay"), [(0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0), (500, 60.0)])
def test_retry_delay_grows_from_the_stored_attempts_to_the_cap(attempts: int, delay: float) -> None:
    action = decide(Retry("503"), attempts=attempts, now=100.0, policy=NO_JITTER, max_attempts=None)
    assert action == Reschedule(100.0 + delay, "503")


def test_full_jitter_stays_within_the_ceiling() -> None:
    rng = random.Random(3)
    policy = BackoffPolicy(initial=1.0, factor=2.0, cap=60.0)
    ats = [decide(Retry("x"), attempts=4, now=0.0, policy=policy, rng=rng) for _ in range(200)]
    delays = [a.at for a in ats if isinstance(a, Reschedule)]
    assert len(delays) == 200
    assert all(0.0 <= d < 16.0 for d in delays)
    assert max(delays) - min(delays) > 4.0  # actually jittered


def test_retry_after_is_a_floor_but_capped() -> None:
    assert decide(Retry("429", after=30.0), attempts=0, now=0.0, policy=NO_JITTER) == Reschedule(30.0, "429")
    assert decide(Retry("429", after=0.5), attempts=2, now=0.0, policy=NO_JITTER) == Reschedule(4.0, "429")
    huge = decide(Retry("429", after=10 * 86400.0), attempts=0, now=0.0, policy=NO_JITTER)
    assert huge == Reschedule(3600.0, "429")  # the policy's retry_after_cap


def test_the_last_allowed_attempt_is_buried_with_the_last_error() -> None:
    assert isinstance(decide(Retry("503"), attempts=3, now=0.0, max_attempts=5), Reschedule)
    assert decide(Retry("503"), attempts=4, now=0.0, max_attempts=5) == Bury(
        "gave up after 5 attempts; last error: 503"
    )


def test_anything_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="got NoneType"):
        decide(None, attempts=0, now=0.0)  # type: ignore[arg-type]
