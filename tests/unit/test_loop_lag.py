"""The loop's recent lateness (the pure window behind a failed socket's gap start)."""

from __future__ import annotations

import pytest

from gcbridge.core.loop_lag import LagWindow


def test_the_worst_lateness_since_a_moment() -> None:
    window = LagWindow(keep=100.0)
    for at, late in [(1.0, 0.01), (2.0, 1.4), (3.0, 0.02), (4.0, 0.6), (5.0, 0.01)]:
        window.observe(at, late)
    assert window.worst_since(0.0) == 1.4
    assert window.worst_since(2.0) == 1.4
    assert window.worst_since(2.5) == 0.6
    assert window.worst_since(4.5) == 0.01
    assert window.worst_since(6.0) == 0.0  # nothing measured since


def test_measurements_older_than_keep_are_forgotten_and_only_a_staircase_is_kept() -> None:
    window = LagWindow(keep=10.0)
    window.observe(0.0, 3.0)
    for i in range(1, 1000):  # a quiet loop after one bad moment: a few ms late, now more now less
        window.observe(i * 0.25, 0.001 * (i % 7))
    assert window.worst_since(0.0) < 3.0  # the bad moment is more than ``keep`` ago
    assert len(window) <= 8  # falling values only: at most one entry per distinct smaller value
    window.observe(300.0, -0.002)  # a timer may fire a hair early: never negative lateness
    assert window.worst_since(300.0) == 0.0


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep"):
        LagWindow(keep=0.0)
