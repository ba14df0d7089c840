"""Coverage by evidence (core/coverage.py): Hypothesis interleaves 2-3 paths going live, delivering, stalling,
dropping and being detected, and checks the two promises against the truth of what each path delivered:
every moment no path delivered lies inside a reported gap, and no gap covers a moment a path delivered."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.core.coverage import UNPROVEN_AT_CLOSE, ShardCoverage, Uncovered

MARGIN = 0.5


@dataclass
class TruePath:
    """What one path really does, unknown to the coverage until evidence or a detected failure says so."""

    live_at: float | None = None  # live since (None: down)
    stopped_at: float | None = None  # stalled since (live, silent, not yet detected)
    delivered: list[tuple[float, float]] = field(default_factory=list)

    def last_frame(self, now: float) -> float:
        return now if self.stopped_at is None else self.stopped_at


@dataclass
class Timeline:
    paths: list[TruePath]
    cov: ShardCoverage = field(default_factory=lambda: ShardCoverage(MARGIN))
    now: float = 0.0
    gaps: list[Uncovered] = field(default_factory=list)
    first_live: float | None = None

    def up(self, i: int) -> None:
        p = self.paths[i]
        if p.live_at is not None:
            return
        p.live_at, p.stopped_at = self.now, None
        self.first_live = self.now if self.first_live is None else self.first_live
        self.gaps += self.cov.up(i, self.now)

    def stall(self, i: int) -> None:
        p = self.paths[i]
        if p.live_at is not None and p.stopped_at is None:
            p.stopped_at = self.now

    def fail(self, i: int) -> None:
        """The path's failure is detected now (a drop at once, a stall when its ping goes unanswered)."""
        p = self.paths[i]
        if p.live_at is None:
            return
        last = p.last_frame(self.now)
        p.delivered.append((p.live_at, last))
        p.live_at = p.stopped_at = None
        self.gaps += self.cov.down(i, last, "dropped")

    def evidence(self, i: int) -> None:
        p = self.paths[i]
        if p.live_at is not None:
            self.gaps += self.cov.seen(i, p.last_frame(self.now))

    def advance(self, dt: float) -> None:
        self.now += dt

    def finish(self) -> float:
        """Detect every failure, bring every path back and let them deliver: everything before is decided."""
        for i, p in enumerate(self.paths):
            if p.stopped_at is not None:
                self.fail(i)
        self.advance(1.0)
        end = self.now
        for i in range(len(self.paths)):
            self.up(i)
        self.advance(5.0)
        for i, p in enumerate(self.paths):
            self.evidence(i)
            assert p.live_at is not None
            p.delivered.append((p.live_at, self.now))  # still delivering: true so far
        return end


OPS = st.tuples(
    st.sampled_from(["up", "stall", "fail", "evidence", "advance", "advance"]),
    st.integers(0, 2),
    st.sampled_from([0.1, 0.4, 1.0, 3.0, 20.0]),
)


def run(n_paths: int, ops: list[tuple[str, int, float]]) -> tuple[Timeline, float]:
    t = Timeline([TruePath() for _ in range(n_paths)])
    t.up(0)
    for name, index, dt in ops:
        i = index % n_paths
        if name == "advance":
            t.advance(dt)
        else:
            getattr(t, name)(i)
    return t, t.finish()


def moments(t: Timeline, until: float) -> list[float]:
    """Every instant where something changed, and the midpoints between them."""
    start = t.first_live or 0.0
    marks = {start, until}
    for p in t.paths:
        for a, b in p.delivered:
            marks |= {a, b}
    for g in t.gaps:
        marks |= {g.start, g.end}
    ordered = sorted(m for m in marks if start <= m <= until)
    return ordered + [(a + b) / 2 for a, b in itertools.pairwise(ordered)]


@settings(max_examples=400, deadline=None)
@given(n_paths=st.sampled_from([2, 3]), ops=st.lists(OPS, max_size=60))
def test_every_undelivered_moment_is_in_a_gap_and_no_gap_hides_a_delivery(
    n_paths: int, ops: list[tuple[str, int, float]]
) -> None:
    t, end = run(n_paths, ops)
    delivered = [iv for p in t.paths for iv in p.delivered]
    for m in moments(t, end):
        if m >= end:
            continue
        if any(a <= m <= b for a, b in delivered):
            continue
        assert any(g.start <= m <= g.end for g in t.gaps), (m, t.gaps, delivered)
    for g in t.gaps:
        assert g.start < g.end or g.start == g.end
        for a, b in delivered:
            # a path verifiably delivered over (a, b - margin): no gap reaches inside that
            assert not (max(a, g.start) < min(b - MARGIN, g.end)), (g, (a, b))
    # everything before the last evidence is decided, and so forgotten: the books are empty again
    assert t.cov.pending_spans == 0
    assert t.cov.settled_until == pytest.approx(t.now - MARGIN)


def test_a_stalled_path_does_not_cover_its_siblings_drop() -> None:
    """Issue #12's case: path 0 stalls; path 1 drops and comes back; the stall is found later. The gap is
    the stretch neither delivered, reported once the stall is detected, with its true start and end."""
    t = Timeline([TruePath(), TruePath()])
    t.up(0)
    t.up(1)
    t.advance(10.0)
    t.evidence(0)
    t.evidence(1)
    t.stall(0)  # t=10
    t.advance(5.0)
    t.fail(1)  # t=15: a drop, detected at once
    t.advance(3.0)
    t.up(1)  # t=18
    assert t.gaps == []  # path 0 may still prove to have covered 15..18
    t.advance(2.0)
    t.evidence(1)
    assert t.gaps == []
    t.fail(0)  # t=20: path 0's ping went unanswered; its last frame was at 10
    assert t.gaps == [Uncovered(14.5, 18.0, "dropped")]


def test_a_live_path_that_delivers_settles_the_past() -> None:
    """A path that keeps delivering while its sibling flaps keeps the books small and reports no gap."""
    t = Timeline([TruePath(), TruePath()])
    t.up(0)
    for _ in range(1000):
        t.up(1)
        t.advance(1.0)
        t.fail(1)
        t.evidence(0)
    assert t.gaps == []
    assert t.cov.pending_spans <= 1


def test_gap_reported_when_the_last_path_comes_back() -> None:
    t = Timeline([TruePath(), TruePath()])
    t.up(0)
    t.advance(4.0)
    t.fail(0)
    t.advance(1.0)
    assert t.gaps == []  # path 1 never went live, so the shard is down from 3.5 on: the end is not known
    t.up(1)
    assert t.gaps == [Uncovered(3.5, 5.0, "dropped")]


def test_a_removed_shard_closes_its_open_gap() -> None:
    cov = ShardCoverage(MARGIN)
    cov.up("a", 0.0)
    assert cov.down("a", 3.0, "dropped") == []
    assert cov.end(7.0) == [Uncovered(2.5, 7.0, "dropped")]


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin"):
        ShardCoverage(-1.0)


def test_closing_reports_what_the_last_evidence_decides() -> None:
    """The client closes before a stall is found: the outage the silent path seemed to cover is still
    reported; the stretch after the last proof is not (nothing is known to be missing there)."""
    t = Timeline([TruePath(), TruePath()])
    t.up(0)
    t.up(1)
    t.advance(10.0)
    t.stall(0)  # t=10
    t.advance(2.0)
    t.fail(1)  # t=12
    t.advance(1.0)
    t.up(1)  # t=13
    t.advance(1.0)
    for i in (0, 1):
        t.evidence(i)
    assert t.gaps == []
    assert t.cov.close() == [Uncovered(11.5, 13.0, "dropped")]


def test_closing_a_healthy_shard_reports_nothing() -> None:
    t = Timeline([TruePath(), TruePath()])
    t.up(0)
    t.advance(3.0)
    t.up(1)
    t.advance(0.1)
    for i in (0, 1):
        t.evidence(i)
    assert t.cov.close() == []


def test_a_gap_after_a_rotation_is_named_for_the_successor_that_failed() -> None:
    # A rotation capped the old connection at 10 (its successor went live then; the old one delivered up to
    # it). The successor never delivered and dropped: the gap that follows is its drop's, not the rotation's
    # (the soak journalled such a gap as "rotated", which tells an operator a planned rotation lost events).
    cov = ShardCoverage(MARGIN)
    cov.up("old", 0.0)
    cov.seen("old", 9.0)
    cov.up("new", 10.0)
    cov.cap("old", 10.0)
    cov.seen("old", 10.5)  # the old socket answered the probe: covered until the cap
    cov.down("new", 10.0, "closed_1006")
    gaps = cov.up("third", 11.0)
    assert gaps == [Uncovered(10.0, 11.0, "closed_1006")]


def test_a_drained_close_reports_what_no_path_proved_up_to_the_drain() -> None:
    # The client pinged every socket at 8 and read until each answered: path 0 answered (proven to 8), path
    # 1 did not (last proven at 5). One proof is enough for the shard: no gap.
    cov = ShardCoverage(MARGIN)
    cov.up(0, 0.0)
    cov.up(1, 0.0)
    cov.seen(0, 8.0)
    cov.seen(1, 5.0)
    assert cov.close(drained_at=8.0) == []


def test_a_drained_close_without_an_answer_is_a_gap_from_the_last_proof() -> None:
    # Neither answered: what the sockets held after 6 may have been lost with them.
    cov = ShardCoverage(MARGIN)
    cov.up(0, 0.0)
    cov.up(1, 0.0)
    cov.seen(0, 6.0)
    cov.seen(1, 5.0)
    assert cov.close(drained_at=8.0) == [Uncovered(6.0, 8.0, UNPROVEN_AT_CLOSE)]


def test_a_drained_close_while_the_shard_is_down_reports_the_outage_until_the_drain() -> None:
    # The only path dropped at 4 (last frame then) and was not back when the client closed at 8: without
    # the drain this ongoing outage was never reported.
    cov = ShardCoverage(MARGIN)
    cov.up(0, 0.0)
    cov.seen(0, 3.0)
    assert cov.down(0, 4.0, "dropped") == []
    assert cov.close(drained_at=8.0) == [Uncovered(3.5, 8.0, "dropped")]


def test_a_close_without_a_drain_still_leaves_the_stretch_after_the_last_proof_alone() -> None:
    cov = ShardCoverage(MARGIN)
    cov.up(0, 0.0)
    cov.seen(0, 6.0)
    assert cov.close() == []
