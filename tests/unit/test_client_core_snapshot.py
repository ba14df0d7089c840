"""ClientCore.snapshot(): what stats() reports, read without reaching into the core's parts."""

from __future__ import annotations

from ._path_world import World

TOPICS = [f"v2.users.u{i}.presence" for i in range(4)]


def test_snapshot_shows_every_path_and_counts_what_happened() -> None:
    w = World(credentials=2)
    w.take(w.core.subscribe(0.0, TOPICS[:2]))
    w.settle()
    snap = w.core.snapshot()
    assert [(p.shard, p.credential, p.state) for p in snap.paths] == [(0, 0, "live"), (0, 1, "live")]
    assert all(p.conn in w.sockets and p.channel_id and p.topics == 2 for p in snap.paths)
    assert all(p.live_since == 0.0 and p.deadline is not None and p.deadline > 0.0 for p in snap.paths)
    assert (snap.topics, snap.channels_held, snap.channels_created) == (2, 2, 2)
    w.advance(1.0)
    w.drop(0)
    w.settle()
    snap = w.core.snapshot()
    assert snap.reconnects_by_reason == {"abrupt": 1}
    assert snap.channels_held == 2
    assert snap.rejected == {}


def test_copies_are_compared_while_sockets_overlap_and_a_little_after() -> None:
    one, two = World(credentials=1).core, World(credentials=2).core
    assert one.compare_copies_until(1, 10.0, opened=True) == 10.0  # a lone socket: nothing to compare
    assert one.compare_copies_until(2, 10.0, opened=True) == float("inf")  # a rotation's overlap
    assert one.compare_copies_until(1, 10.0, opened=False) == 15.0  # copies may still be in flight
    assert two.compare_copies_until(1, 10.0, opened=True) == float("inf")  # two paths: always
