"""A shard's gap less what a hot standby covered: what is left is exactly what no path delivered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gcbridge.core.standby_cover import CoverSpan, Hole, minus, split, subtract, uncovered

A, B = "v2.users.a.presence", "v2.users.b.presence"


def span(since: float, seen: float, *topics: str) -> CoverSpan:
    return CoverSpan("standby-1", since, seen, frozenset(topics or (A, B)))


def test_a_standby_live_throughout_leaves_no_gap() -> None:
    assert uncovered(100.0, 110.0, [A, B], [span(50.0, 200.0)]) == []


def test_coverage_ends_a_margin_before_the_standbys_last_frame() -> None:
    # the standby's socket went silent at 105: what it had in flight then may be lost
    assert uncovered(100.0, 110.0, [A, B], [span(50.0, 105.0)], margin=0.5) == [Hole(104.5, 110.0, (A, B))]


def test_a_standby_without_a_topic_covers_nothing_of_it() -> None:
    assert uncovered(100.0, 110.0, [A, B], [span(50.0, 200.0, A)]) == [Hole(100.0, 110.0, (B,))]


def test_holes_between_spans_are_reported_with_their_own_ends() -> None:
    spans = [span(50.0, 103.5), span(106.0, 200.0)]  # the standby reconnected at 106
    assert uncovered(100.0, 110.0, [A], spans, margin=0.5) == [Hole(103.0, 106.0, (A,))]


def test_no_standby_leaves_the_gap_as_it_was() -> None:
    assert uncovered(100.0, 110.0, [A, B], []) == [Hole(100.0, 110.0, (A, B))]


intervals = st.tuples(st.floats(0, 100), st.floats(0, 30)).map(lambda t: (t[0], t[0] + t[1]))


@given(gap=intervals, covers=st.lists(intervals, max_size=6), probe=st.floats(0, 130))
def test_subtract_keeps_exactly_the_uncovered_moments(
    gap: tuple[float, float], covers: list[tuple[float, float]], probe: float
) -> None:
    left = subtract(gap[0], gap[1], covers)
    assert all(a < b for a, b in left)
    assert all(left[i][1] <= left[i + 1][0] for i in range(len(left) - 1))
    in_gap = gap[0] < probe < gap[1]
    covered = any(a <= probe <= b for a, b in covers)
    in_left = any(a < probe < b for a, b in left)
    on_edge = any(probe in (a, b) for a, b in [*left, *covers])
    if not on_edge:
        assert in_left == (in_gap and not covered)


def test_a_live_standby_lagging_behind_leaves_only_a_provisional_tail() -> None:
    live = CoverSpan("standby-1", 50.0, 109.0, frozenset({A, B}), updated_at=109.5)
    definite, provisional = split(100.0, 110.0, [A, B], [live], now=110.0, margin=0.5)
    assert definite == []
    assert provisional == [Hole(108.5, 110.0, (A, B))]
    # a few seconds later it has published frames past the end: nothing is left
    later = CoverSpan("standby-1", 50.0, 113.0, frozenset({A, B}), updated_at=113.2)
    assert uncovered(provisional[0].start, provisional[0].end, [A, B], [later]) == []


def test_a_silent_standby_is_no_hope() -> None:
    stale = CoverSpan("standby-1", 50.0, 104.0, frozenset({A}), updated_at=104.2)
    definite, provisional = split(100.0, 110.0, [A], [stale], now=110.0, margin=0.5)
    assert definite == [Hole(103.5, 110.0, (A,))]
    assert provisional == []


def test_minus_takes_holes_away_topic_by_topic() -> None:
    holes = [Hole(0.0, 10.0, (A, B))]
    assert minus(holes, [Hole(2.0, 4.0, (A,))]) == [
        Hole(0.0, 2.0, (A,)),
        Hole(0.0, 10.0, (B,)),
        Hole(4.0, 10.0, (A,)),
    ]
    assert minus(holes, holes) == []
