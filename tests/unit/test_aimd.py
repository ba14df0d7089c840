"""The adaptive delivery window: one slot more per window of deliveries, half on failure, within bounds."""

from __future__ import annotations

import pytest

from gcbridge.core.aimd import AimdWindow


def test_grows_one_slot_per_window_of_deliveries_up_to_the_ceiling() -> None:
    window = AimdWindow(4, 6)
    assert window.limit == 4
    for _ in range(4):
        window.grow()
    assert window.limit == 5  # four deliveries at four slots: one more slot
    for _ in range(5):
        window.grow()
    assert window.limit == 6
    for _ in range(100):
        window.grow()
    assert window.limit == 6  # never past the ceiling


def test_a_failure_halves_the_window_but_never_below_the_floor() -> None:
    window = AimdWindow(4, 64)
    for _ in range(5000):
        window.grow()
    assert window.limit == 64
    assert window.shrink(window.epoch)
    assert window.limit == 32
    assert window.shrink(window.epoch)
    assert window.shrink(window.epoch)
    assert window.limit == 8
    assert window.shrink(window.epoch)
    assert window.limit == 4
    assert not window.shrink(window.epoch)  # at the floor: the fixed limit's behaviour from here
    assert window.limit == 4


def test_failures_of_requests_sent_before_the_last_decrease_count_once() -> None:
    window = AimdWindow(2, 32)
    for _ in range(1000):
        window.grow()
    sent_at = window.epoch  # 32 requests go out, then every one of them fails
    assert window.shrink(sent_at)
    for _ in range(31):
        assert not window.shrink(sent_at)
    assert window.limit == 16
    assert window.shrink(window.epoch)  # a request sent after the decrease is a new signal
    assert window.limit == 8


def test_a_fixed_window_never_moves() -> None:
    window = AimdWindow(32, 32)
    for _ in range(100):
        window.grow()
    assert not window.shrink(window.epoch)
    assert window.limit == 32


@pytest.mark.parametrize(("floor", "ceiling"), [(0, 4), (5, 4)])
def test_bounds_are_checked(floor: int, ceiling: int) -> None:
    with pytest.raises(ValueError, match="floor"):
        AimdWindow(floor, ceiling)
