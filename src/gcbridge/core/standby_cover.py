"""What a hot standby covered, and what is left of a gap after it (pure: no I/O, no clock).

A hot standby is an instance on its own OAuth client that subscribes to the same topics as the instances that
own the shards, without owning any: both paths write into the one outbox, which keeps one copy of each event.
When an owner dies, the instance that takes its shards over finds an interval in which the dead owner's path
delivered nothing. That is a gap of the shard only where the standby did not deliver either.

A standby publishes :class:`CoverSpan` records: "all of my paths were live from ``since`` and verifiably
read frames up to ``seen`` (their last frame), for ``topics``". Only ``[since, seen - margin]`` counts: events
in flight when a socket failed may be lost (the same margin the client takes off its own gaps), and a silent
socket's coverage ends at its last frame, whatever happens later. :func:`uncovered` takes those spans off a
gap, topic by topic, and returns what no path covered, grouped into gaps with the same interval.

A takeover happens while the standby is still live, and its ``seen`` lags its latest frame by up to a publish
interval: the end of the gap is *undecided* while a live (recently published) standby may yet prove to have
covered it. :func:`split` separates the *definite* holes (not even a live standby can cover them) from the
*provisional* ones, which the taker checks again a few seconds later with :func:`uncovered` (strict).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CoverSpan", "Hole", "minus", "split", "subtract", "uncovered"]


@dataclass(frozen=True, slots=True)
class CoverSpan:
    """One standby's verified coverage: every path live from ``since``, frames read up to ``seen``."""

    instance: str
    since: float
    seen: float
    topics: frozenset[str]
    updated_at: float = float("-inf")  # when the standby last published it (is it still live?)


@dataclass(frozen=True, slots=True)
class Hole:
    """What is left of a gap: nothing delivered ``topics`` from ``start`` to ``end``."""

    start: float
    end: float
    topics: tuple[str, ...]


Interval = tuple[float, float]


def subtract(start: float, end: float, covers: Iterable[Interval]) -> list[Interval]:
    """``[start, end]`` less the union of ``covers``, as sorted disjoint intervals of positive length."""
    left: list[Interval] = []
    cursor = start
    for c_start, c_end in sorted(covers):
        if c_end <= cursor or c_start >= end:
            continue
        if c_start > cursor:
            left.append((cursor, min(c_start, end)))
        cursor = max(cursor, c_end)
        if cursor >= end:
            break
    if cursor < end:
        left.append((cursor, end))
    return left


def uncovered(
    start: float, end: float, topics: Sequence[str], spans: Iterable[CoverSpan], margin: float = 0.5
) -> list[Hole]:
    """The parts of the gap ``[start, end]`` on ``topics`` that no standby span covers.

    Empty when the standby delivered the whole gap. Topics left with the same intervals share a
    :class:`Hole`; holes come in order of start, topics in the order given.
    """
    spans = list(spans)
    by_intervals: dict[tuple[Interval, ...], list[str]] = {}
    for topic in topics:
        covers = [
            (s.since, s.seen - margin) for s in spans if topic in s.topics and s.seen - margin > s.since
        ]
        left = tuple(subtract(start, end, covers))
        if left:
            by_intervals.setdefault(left, []).append(topic)
    holes = [Hole(a, b, tuple(ts)) for intervals, ts in by_intervals.items() for a, b in intervals]
    return sorted(holes, key=lambda h: (h.start, h.end))


def minus(holes: Sequence[Hole], taken: Sequence[Hole]) -> list[Hole]:
    """``holes`` less ``taken``, topic by topic (what is in ``holes`` and not in ``taken``)."""
    left: dict[tuple[Interval, ...], list[str]] = {}
    for hole in holes:
        for topic in hole.topics:
            covers = [(t.start, t.end) for t in taken if topic in t.topics]
            parts = tuple(subtract(hole.start, hole.end, covers))
            if parts:
                left.setdefault(parts, []).append(topic)
    out = [Hole(a, b, tuple(dict.fromkeys(ts))) for parts, ts in left.items() for a, b in parts]
    return sorted(out, key=lambda h: (h.start, h.end))


def split(
    start: float,
    end: float,
    topics: Sequence[str],
    spans: Iterable[CoverSpan],
    *,
    now: float,
    fresh: float = 5.0,
    margin: float = 0.5,
) -> tuple[list[Hole], list[Hole]]:
    """(definite, provisional) holes of the gap. A span published within ``fresh`` seconds before ``now``
    belongs to a live standby: it may still cover up to ``end``, so what only it can cover is provisional."""
    spans = list(spans)
    hopeful = [
        CoverSpan(s.instance, s.since, max(s.seen, end + margin), s.topics, s.updated_at)
        if s.updated_at >= now - fresh
        else s
        for s in spans
    ]
    definite = uncovered(start, end, topics, hopeful, margin)
    provisional = minus(uncovered(start, end, topics, spans, margin), definite)
    return definite, provisional
