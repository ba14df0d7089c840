"""Gap accounting for one shard, by evidence: a path covers the shard only over what it is known to have
delivered.

A live path's coverage runs from the moment it went live to its *last good moment* (its last frame read, as
reported through :meth:`ShardCoverage.seen`). Beyond that it is only provisional: a silent socket may be
stalled, and when the stall is detected later the path's coverage ends *retroactively* at its last good
moment (:meth:`ShardCoverage.down`); a failure may also have lost what was in flight, so the gap after it
starts ``margin`` earlier, and evidence settles time only up to ``margin`` before a path's last good
moment. Connections replaced by a rotation are capped (:meth:`ShardCoverage.cap`). So a moment of the
shard's time is

* *covered* once some path verifiably delivered over it (nothing can take that back);
* *undecided* while a live path, silent since before it, may still prove to have covered it;
* *uncovered* (a gap) once no path covered it and no live path can any more.

Gaps are reported as soon as they are decided, with their true start and end, even when that is after
another path came back. Decided time is *settled* and forgotten, so the bookkeeping holds no more than the
intervals since the earliest live path's last good moment: bounded as long as live paths deliver.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Uncovered:
    """A decided gap: no path of the shard delivered from ``start`` to ``end``. ``reason`` is why the path
    whose coverage ended at ``start`` stopped."""

    start: float
    end: float
    reason: str


@dataclass(slots=True)
class _Live:
    since: float  # when the path went live
    seen: float  # its last good moment, known so far (the frontier of its verified coverage)
    cap: float | None = None  # it was replaced then: whatever it delivers later covers nothing new


@dataclass(frozen=True, slots=True)
class _Span:
    start: float
    end: float
    reason: str = ""  # why the coverage ended (for the gap that may follow it)
    # where a gap that follows it starts, when that is before ``end``: a failure's last good moment less the
    # margin (what was in flight may be lost)
    claimed: float | None = None
    mark: bool = False  # only where a live path began: no coverage, but the end of any gap before it

    @property
    def ended(self) -> float:
        return self.end if self.claimed is None else min(self.claimed, self.end)


_NO_END = float("-inf")
#: How the coverage of a connection replaced by a rotation ends: never the cause of a gap by itself (its
#: successor went live where it ends), so a gap after it is named for the successor's failure when known.
ROTATED = "rotated"
#: How a gap at a drained close is named when the coverage before it ended only because the client closed: a
#: socket did not prove in time (answer the last ping) that it had delivered everything sent before the close.
UNPROVEN_AT_CLOSE = "unproven_at_close"


class ShardCoverage:
    """The coverage of one shard by its paths. Pure: every call takes the moment it is about.

    ``margin`` is taken off the start of a gap that follows a path's failure (events sent just before its
    last good moment may still have been in flight), so a gap starts a little early rather than late.
    """

    __slots__ = ("_ended_by", "_gap_from", "_live", "_margin", "_settled", "_spans")

    def __init__(self, margin: float = 0.0) -> None:
        if margin < 0:
            raise ValueError("margin must not be negative")
        self._margin = margin
        self._live: dict[Hashable, _Live] = {}
        self._spans: list[_Span] = []  # finished (or verified) coverage not yet settled
        self._settled: float | None = None  # up to here every moment is decided and reported
        self._ended_by = ""  # why the coverage that reached ``_settled`` ended, if it did
        self._gap_from = _NO_END  # where a gap that begins at ``_settled`` is to start

    # -- observations ------------------------------------------------------------------------------------
    @property
    def live_paths(self) -> frozenset[Hashable]:
        return frozenset(self._live)

    @property
    def settled_until(self) -> float | None:
        """Up to when every moment is decided (covered, or inside a reported gap); None before any path."""
        return self._settled

    @property
    def pending_spans(self) -> int:
        """How many coverage intervals wait to be settled (bounded while live paths deliver)."""
        return len(self._spans)

    # -- inputs ------------------------------------------------------------------------------------------
    def up(self, path: Hashable, at: float) -> list[Uncovered]:
        """A path became live (again) at ``at``; a path already live stays as it was (a gap-free rotation)."""
        if self._settled is None:
            self._settled = at  # the shard's time begins with its first live path: nothing was wanted before
        if path not in self._live:
            self._live[path] = _Live(at, at)
        return self._settle()

    def seen(self, path: Hashable, last_good: float) -> list[Uncovered]:
        """Evidence: a live path is known to have delivered everything sent until ``last_good``."""
        live = self._live.get(path)
        if live is None or last_good <= live.seen:
            return []
        live.seen = last_good
        return self._settle()

    def cap(self, path: Hashable, at: float) -> list[Uncovered]:
        """A live path was replaced at ``at`` (a rotation: its successor went live then). It may still deliver
        (copies, while it drains) but covers at most until ``at``, and only as far as its evidence shows:
        a socket that was silently stalled when it was rotated away covered only up to its last frame. Any
        frame read from it at or after ``at`` (a pong to a probe) proves it covered until ``at``."""
        live = self._live.get(path)
        if live is not None:
            live.cap = at if live.cap is None else min(live.cap, at)
        return self._settle()

    def down(self, path: Hashable, since: float, reason: str, *, abrupt: bool = True) -> list[Uncovered]:
        """A live path stopped; it was last known to deliver at ``since`` (its last good moment). Its
        coverage ends there, however long ago that was. ``abrupt`` (a failure, not a close after draining):
        events sent up to ``margin`` before ``since`` may have been in flight and lost with the socket, so a
        gap that follows it starts that much earlier."""
        live = self._live.pop(path, None)
        if live is not None:
            # what was verified stays verified, whatever the failure says
            end = max(since, live.seen)
            if live.cap is not None:
                end = min(end, live.cap)
            claimed = min(end, since) - self._margin if abrupt else None
            self._spans.append(_Span(live.since, max(end, live.since), reason, claimed=claimed))
        return self._settle()

    def end(self, at: float) -> list[Uncovered]:
        """The shard is being removed at ``at`` (its topics were wanted until then): decide everything. Live
        paths are closed on purpose, so they count as covering until ``at``."""
        for live in self._live.values():
            self._spans.append(_Span(live.since, max(at, live.since), "closed"))
        self._live.clear()
        gaps = self._settle()
        settled, gap_from = self._settled, self._gap_from
        if settled is not None and (settled < at or _NO_END < gap_from < settled):
            start = gap_from if gap_from > _NO_END else settled
            gaps.append(Uncovered(start, at, self._ended_by or "dropped"))
        self._spans.clear()
        self._settled, self._gap_from = None, _NO_END
        self._ended_by = ""
        return gaps

    def close(self, drained_at: float | None = None) -> list[Uncovered]:
        """The client is closing: decide what the evidence decides and report it. Each live path counts as
        covering up to its last good moment (give it fresh evidence first); a stretch before some path's
        proven coverage that no path covered is a gap (a silent stall not found in time).

        Without ``drained_at`` the stretch after the last proof is not a gap: nothing is known to be missing
        there. With it (the client asked every socket for proof at ``drained_at`` and read what answered
        before closing), the coverage was wanted until then: what no path proved up to ``drained_at`` is a
        gap (a socket that did not answer in time may have held unread events), named for how the coverage
        before it ended, or :data:`UNPROVEN_AT_CLOSE`."""
        for live in self._live.values():
            end = live.seen if live.cap is None else min(live.seen, live.cap)
            self._spans.append(_Span(live.since, max(live.since, end), "closed"))
        self._live.clear()
        gaps = self._settle()
        if drained_at is not None and self._settled is not None:
            start = self._gap_from if self._gap_from > _NO_END else self._settled
            if start < drained_at:
                reason = self._ended_by if self._ended_by not in ("", "closed") else UNPROVEN_AT_CLOSE
                gaps.append(Uncovered(start, drained_at, reason))
        self._spans.clear()
        self._settled, self._gap_from = None, _NO_END
        self._ended_by = ""
        return gaps

    def forget(self, path: Hashable, at: float) -> list[Uncovered]:
        """A path was closed on purpose at ``at``: it covered until then."""
        live = self._live.pop(path, None)
        if live is not None:
            self._spans.append(_Span(live.since, max(at, live.since), "closed"))
        return self._settle()

    # -- the decision ------------------------------------------------------------------------------------
    def _horizon(self) -> float:
        """The first moment that is not yet decided: where the earliest live path's proof runs out."""
        return min(
            # a failure found later may still take back up to ``margin`` before a path's last good moment
            (max(v.since, v.seen - self._margin) for v in self._live.values()),
            default=float("inf"),
        )

    def _settle(self) -> list[Uncovered]:
        """Report every decided gap and forget the decided past."""
        for path, live in list(self._live.items()):
            if live.cap is not None and live.seen >= live.cap:
                # a replaced path proven up to its replacement: nothing it does from now on matters
                del self._live[path]
                self._spans.append(_Span(live.since, max(live.cap, live.since), ROTATED))
        if self._settled is None:
            return []
        cursor = self._settled
        # where a gap that begins at ``cursor`` starts: the latest way the coverage reaching ``cursor`` ended
        # (a failure's margin reaches back); NO_END while nothing has reached it (only a path's start)
        gap_from = self._gap_from
        ended_by = self._ended_by
        horizon = self._horizon()
        # a live path's start is decided (it may not have delivered since, but nothing before it is its)
        spans = [*self._spans, *(_Span(v.since, v.since, mark=True) for v in self._live.values())]
        spans += [_Span(v.since, v.seen) for v in self._live.values() if v.seen > v.since]
        gaps: list[Uncovered] = []
        for span in sorted(spans, key=lambda s: (s.start, s.mark)):
            if span.start > horizon:
                break
            if span.start > cursor or (span.start == cursor and _NO_END < gap_from < cursor):
                start = gap_from if gap_from > _NO_END else cursor
                gaps.append(Uncovered(start, span.start, ended_by or "dropped"))
                cursor = gap_from = span.start
            if span.end > cursor:
                cursor = span.end
                gap_from = span.ended
                ended_by = span.reason or ended_by
            elif span.end == cursor and not span.mark and span.ended > gap_from:
                gap_from = span.ended
                ended_by = span.reason or ended_by
            elif span.end == cursor and not span.mark and ended_by == ROTATED and span.reason:
                # the successor that took over where a rotated connection was capped ended there too (it
                # never delivered): what follows is its failure, not the rotation's
                ended_by = span.reason
        if cursor > horizon:
            cursor = gap_from = horizon  # beyond the horizon nothing is decided yet
        self._settled, self._gap_from, self._ended_by = cursor, gap_from, ended_by
        self._spans = [s for s in self._spans if s.end > cursor]
        return gaps
