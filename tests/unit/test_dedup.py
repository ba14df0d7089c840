from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.core.dedup import CopyMatcher, dedup_key


def test_key_ignores_key_order_but_not_content() -> None:
    a = dedup_key("v2.users.u1.presence", {"a": 1, "b": {"x": 1, "y": 2}})
    b = dedup_key("v2.users.u1.presence", {"b": {"y": 2, "x": 1}, "a": 1})
    assert a == b
    assert a != dedup_key("v2.users.u2.presence", {"a": 1, "b": {"x": 1, "y": 2}})
    assert a != dedup_key("v2.users.u1.presence", {"a": 2, "b": {"x": 1, "y": 2}})
    assert len(a) == 32


# DedupWindow (the resend window of the client's intake) is tested in test_intake.py.


def test_identical_events_on_two_sockets_are_each_delivered_once() -> None:
    m = CopyMatcher(window=10.0)
    m.joined(1, 0.0)
    m.joined(2, 0.0)
    # three distinct events with one key; socket 2 lags, then overtakes
    arrivals = [(1, 0.1), (2, 0.2), (1, 0.3), (1, 0.4), (2, 0.5), (2, 0.6)]
    assert [m.first("k", src, t) for src, t in arrivals] == [True, False, True, True, False, False]
    assert [m.first("k", src, t) for src, t in [(2, 0.7), (1, 0.8)]] == [True, False]  # a fourth


def test_a_socket_that_joined_later_is_not_held_back_by_earlier_events() -> None:
    m = CopyMatcher(window=100.0)
    m.joined(1, 0.0)
    assert m.first("k", 1, 1.0)
    assert m.first("k", 1, 2.0)
    m.joined(2, 5.0)  # a rotation's new socket: it did not receive the two above
    assert m.first("k", 2, 6.0)  # a third event, first seen on the new socket
    assert not m.first("k", 1, 6.1)  # ... and its copy on the old one
    m.left(1)
    assert m.first("k", 2, 7.0)  # the old socket is gone: the new one alone delivers


def test_copies_older_than_the_window_are_not_matched_and_keys_expire_whole() -> None:
    m = CopyMatcher(window=10.0, max_entries=100)
    assert m.first("k", 1, 0.0)
    assert not m.first("k", 2, 9.0)  # a copy, 9 s late
    assert m.first("k", 2, 30.0)  # nothing delivered in the last 10 s: a new event
    assert not m.first("k", 1, 31.0)
    m.expire(41.5)
    assert "k" not in m
    assert m.first("k", 1, 42.0)


def test_copy_matcher_size_bound_forgets_oldest_keys_first() -> None:
    m = CopyMatcher(window=1000.0, max_entries=2)
    for i, k in enumerate("abc"):
        assert m.first(k, 1, float(i))
    assert len(m) == 2
    assert "a" not in m
    assert m.evicted_early == 1
    with pytest.raises(ValueError, match="window"):
        CopyMatcher(window=-1)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.sampled_from("abc"), min_size=1, max_size=30),
    order=st.lists(st.integers(0, 2), min_size=200, max_size=200),
)
def test_every_event_is_delivered_once_however_three_sockets_interleave(
    events: list[str], order: list[int]
) -> None:
    # every socket delivers the same events in the same order; the interleaving is arbitrary
    m = CopyMatcher(window=1000.0)
    for src in range(3):
        m.joined(src, 0.0)
    pos = [0, 0, 0]
    delivered: list[str] = []
    steps = iter(order)
    now = 0.0
    while min(pos) < len(events):
        src = next(steps, -1)
        if src < 0 or pos[src] >= len(events):
            src = min(range(3), key=lambda s: pos[s])
        now += 0.001
        if m.first(events[pos[src]], src, now):
            delivered.append(events[pos[src]])
        pos[src] += 1
    assert sorted(delivered) == sorted(events)


class _Reference:
    """The matching rule of CopyMatcher written plainly (every delivered copy kept, no fast paths)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.delivered: dict[str, list[float]] = {}
        self.matched: dict[tuple[str, int], int] = {}
        self.joined: dict[int, float] = {}

    def first(self, key: str, source: int, now: float) -> bool:
        times = self.delivered.setdefault(key, [])
        horizon = now - self.window
        live = [i for i, t in enumerate(times) if t >= horizon]
        start = live[0] if live else len(times)
        if (key, source) not in self.matched:
            since = self.joined.get(source, horizon)
            start = next((i for i in range(start, len(times)) if times[i] >= since), len(times))
        done = max(self.matched.get((key, source), 0), start)
        if done < len(times):
            self.matched[key, source] = done + 1
            return False
        times.append(now)
        self.matched[key, source] = len(times)
        return True


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["copy", "copy", "copy", "join"]),
            st.sampled_from("ab"),
            st.integers(0, 2),
            st.sampled_from([0.0, 0.1, 1.0, 4.0]),
        ),
        max_size=60,
    )
)
def test_copy_matcher_decides_as_the_plain_rule_does(steps: list[tuple[str, str, int, float]]) -> None:
    m, ref = CopyMatcher(window=5.0), _Reference(window=5.0)
    now = 0.0
    for action, key, source, dt in steps:
        now += dt
        if action == "join":
            m.joined(source, now)
            ref.joined[source] = now
        else:
            assert m.first(key, source, now) == ref.first(key, source, now), (key, source, now)
