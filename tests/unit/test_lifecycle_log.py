"""Which lifecycle notices become log lines: one per change of a path, retries at debug, a periodic info."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.core.lifecycle_log import LifecycleLog, failure_streak_level

PATH = "0/0"


def levels(log: LifecycleLog, notices: list[tuple[str, float]]) -> list[int | None]:
    out = []
    for kind, now in notices:
        line = log.notice(PATH, kind, now, reason="closed_1006")
        out.append(None if line is None else line.level)
    return out


def test_an_outage_is_one_warning_then_debug_then_one_info_when_back() -> None:
    log = LifecycleLog(summary_every=10)
    assert levels(log, [("connected", 0.0)]) == [logging.INFO]
    outage = [("reconnecting", 10.0 + i) for i in range(5)]
    assert levels(log, outage) == [logging.WARNING] + [logging.DEBUG] * 4
    back = log.notice(PATH, "connected", 20.0)
    assert back is not None
    assert back.level == logging.INFO
    assert back.event == "notification path reconnected"
    assert back.fields["attempts"] == 5
    assert back.fields["down_for"] == 10.0
    # the next outage warns again
    assert levels(log, [("reconnecting", 30.0)]) == [logging.WARNING]


def test_a_long_outage_shows_an_info_every_summary_every_attempts() -> None:
    log = LifecycleLog(summary_every=4)
    log.notice(PATH, "connected", 0.0)
    got = levels(log, [("reconnecting", float(i)) for i in range(1, 13)])
    assert got.count(logging.WARNING) == 1
    assert [i + 1 for i, level in enumerate(got) if level == logging.INFO] == [4, 8, 12]
    summary = log.notice(PATH, "reconnecting", 16.0)
    assert summary is not None
    assert summary.fields["attempts"] == 13


def test_a_first_connection_that_fails_says_it_could_not_connect() -> None:
    line = LifecycleLog().notice(PATH, "reconnecting", 0.0, reason="create_failed", detail="HTTP 403")
    assert line is not None
    assert line.level == logging.WARNING
    assert "could not connect" in line.event
    assert line.fields["detail"] == "HTTP 403"


def test_a_rotation_logs_one_info_and_its_reconnect_is_quiet() -> None:
    log = LifecycleLog()
    log.notice(PATH, "connected", 0.0)
    rotating = log.notice(PATH, "rotating", 1.0, reason="socket_closing")
    live_again = log.notice(PATH, "connected", 2.0)
    rotated = log.notice(PATH, "rotated", 2.0, reason="socket_closing")
    assert rotating is not None
    assert rotating.level == logging.DEBUG
    assert live_again is not None
    assert live_again.level == logging.DEBUG
    assert rotated is not None
    assert rotated.level == logging.INFO
    failed = log.notice(PATH, "rotating", 3.0, reason="failed")
    assert failed is not None
    assert failed.level == logging.INFO


def test_paths_are_tracked_apart_and_unknown_kinds_are_not_logged() -> None:
    log = LifecycleLog()
    log.notice("0/0", "connected", 0.0)
    log.notice("0/0", "reconnecting", 1.0)
    other = log.notice("1/0", "connected", 1.0)
    assert other is not None
    assert other.event == "notification path connected"
    assert log.notice("0/0", "token_refreshed", 2.0) is None
    with pytest.raises(ValueError, match="summary_every"):
        LifecycleLog(summary_every=0)


@given(st.lists(st.sampled_from(["connected", "reconnecting", "rotating", "rotated"]), max_size=200))
def test_warnings_never_outnumber_the_outages(kinds: list[str]) -> None:
    log = LifecycleLog()
    warnings = outages = 0
    up = None  # unknown before the first notice
    for i, kind in enumerate(kinds):
        line = log.notice(PATH, kind, float(i))
        if kind == "reconnecting" and up is not False:
            outages += 1
            up = False
        elif kind == "connected":
            up = True
        warnings += line is not None and line.level == logging.WARNING
    assert warnings == outages


def test_failure_streak_level() -> None:
    got = [failure_streak_level(n, summary_every=5) for n in range(1, 12)]
    assert got[0] == logging.WARNING
    assert [n for n, level in enumerate(got, 1) if level == logging.INFO] == [5, 10]
    assert got.count(logging.DEBUG) == 8
