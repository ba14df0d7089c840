"""The pure shard-lease decisions: stable sharding, fair targets, and a simulated database in which instances
join, leave and die while each acts only on its own plan."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.core.shard_leases import Lease, ShardMap, plan, shard_of, targets

TTL = 15.0
HANDOFF = 30.0


def test_shard_of_is_stable_and_in_range() -> None:
    # fixed values: a change of the function would move every shard of every running deployment
    assert [shard_of(t, 16) for t in ("a", "v2.users.x.presence", "")] == [
        shard_of("a", 16),
        shard_of("v2.users.x.presence", 16),
        shard_of("", 16),
    ]
    assert shard_of("v2.routing.queues.q1.conversations", 1) == 0
    assert all(0 <= shard_of(f"t{i}", 7) < 7 for i in range(200))
    assert len({shard_of(f"t{i}", 8) for i in range(200)}) == 8  # spreads


def test_shard_map_puts_a_combined_topics_single_topics_in_its_shard() -> None:
    combined = "v2.users.u1?presence&routingStatus"
    m = ShardMap([combined, "v2.routing.queues.q1.conversations"], 4)
    shard = shard_of(combined, 4)
    assert combined in m.topics(shard)
    assert m.shard_for_event("v2.users.u1.presence") == shard
    assert m.shard_for_event("v2.users.u1.routingStatus") == shard
    assert set(m.single_topics(shard)) >= {"v2.users.u1.presence", "v2.users.u1.routingStatus"}


def test_targets_give_the_extra_shards_to_the_richest() -> None:
    assert targets(["a", "b", "c"], {"a": 0, "b": 5, "c": 3}, 8) == {"b": 3, "c": 3, "a": 2}
    assert targets([], {}, 8) == {}


class World:
    """A lease table and instances acting on it, one conditional update at a time, like the SQL does."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.now = 1000.0
        self.rows = {s: Lease(s) for s in range(shards)}
        self.live: set[str] = set()
        self.leaving: set[str] = set()
        self.moves = 0  # ownership changed from one instance to another

    def members(self) -> list[str]:
        return sorted(self.live - self.leaving)

    def act(self, me: str) -> bool:
        """One round of ``me``: renew, then run its plan. Returns whether anything changed."""
        changed = False
        for s, r in self.rows.items():
            if r.owner == me and r.held(self.now):
                self.rows[s] = dataclasses.replace(r, expires_at=self.now + TTL)
        p = plan(me, self.members(), self.rows, self.shards, self.now, handoff_timeout=HANDOFF)
        for s in p.withdraw:
            r = self.rows[s]
            if r.owner == me:
                self.rows[s] = dataclasses.replace(r, handoff_to=None, handoff_at=None)
                changed = True
        for s, to in p.offer:
            r = self.rows[s]
            if r.owner == me and r.handoff_to is None:
                self.rows[s] = dataclasses.replace(r, handoff_to=to, handoff_at=self.now)
                changed = True
        for s in p.take:
            r = self.rows[s]
            if not r.held(self.now):
                if r.owner is not None and r.owner != me:
                    self.moves += 1
                self.rows[s] = Lease(s, me, r.epoch + 1, self.now + TTL)
                changed = True
        for s in p.accept:
            r = self.rows[s]
            if r.held(self.now) and r.handoff_to == me:
                self.moves += 1
                self.rows[s] = Lease(s, me, r.epoch + 1, self.now + TTL)
                changed = True
        return changed

    def round(self) -> bool:
        changed = False
        for inst in sorted(self.live):
            changed |= self.act(inst)
        self.now += TTL / 3
        return changed

    def settle(self, limit: int = 200) -> int:
        for i in range(limit):
            if not self.round() and self.balanced():
                return i
        raise AssertionError(f"no balance after {limit} rounds: {self.rows}")

    def owners(self) -> dict[str, int]:
        out = dict.fromkeys(self.members(), 0)
        for r in self.rows.values():
            if r.held(self.now) and r.owner is not None:
                out[r.owner] = out.get(r.owner, 0) + 1
        return out

    def balanced(self) -> bool:
        members = self.members()
        if not members:
            return True
        counts = self.owners()
        every_shard_owned = all(
            r.held(self.now) and r.owner in members and r.handoff_to is None for r in self.rows.values()
        )
        values = [counts[m] for m in members]
        return every_shard_owned and max(values) - min(values) <= 1

    def kill(self, inst: str) -> None:
        self.live.discard(inst)  # its leases expire on their own

    def leave(self, inst: str) -> None:
        self.leaving.add(inst)


ops = st.lists(
    st.tuples(st.sampled_from(["join", "kill", "leave"]), st.integers(0, 4)), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None)
@given(shards=st.integers(1, 24), steps=ops)
def test_membership_changes_always_settle_balanced_with_every_shard_owned(
    shards: int, steps: list[tuple[str, int]]
) -> None:
    w = World(shards)
    w.live.add("i0")
    w.settle()
    for op, n in steps:
        name = f"i{n}"
        if op == "join" and name not in w.live:
            w.live.add(name)
            w.leaving.discard(name)
        elif op == "kill" and len(w.members()) > 1:
            w.kill(name)
        elif op == "leave" and name in w.members() and len(w.members()) > 1:
            w.leave(name)
        w.settle()
        # a leaving instance holds nothing once the others have taken its shards
        for gone in w.leaving:
            assert w.owners().get(gone, 0) == 0
            w.live.discard(gone)
        w.leaving.clear()
        assert w.balanced()


@settings(max_examples=150, deadline=None)
@given(shards=st.integers(1, 32), instances=st.integers(1, 6))
def test_a_join_moves_only_the_new_instances_share_and_a_balanced_state_never_moves(
    shards: int, instances: int
) -> None:
    w = World(shards)
    w.live.update(f"i{k}" for k in range(instances))
    w.settle()
    before = w.moves
    for _ in range(10):
        assert not w.round(), "a balanced state must not move anything"
    assert w.moves == before
    w.live.add("new")
    w.settle()
    fair = shards // (instances + 1)
    assert w.moves - before <= fair + 1
    assert w.owners()["new"] >= fair


def test_an_offer_nobody_takes_is_withdrawn_after_the_timeout() -> None:
    rows = {0: Lease(0, "a", 3, 2000.0, handoff_to="b", handoff_at=900.0), 1: Lease(1, "a", 1, 2000.0)}
    p = plan("a", ["a", "b"], rows, 2, 1000.0, handoff_timeout=HANDOFF)
    assert p.withdraw == [0]
    fresh = {0: dataclasses.replace(rows[0], handoff_at=995.0), 1: rows[1]}
    assert plan("a", ["a", "b"], fresh, 2, 1000.0, handoff_timeout=HANDOFF).withdraw == []
    # the taker left: withdraw at once
    assert plan("a", ["a"], fresh, 2, 1000.0, handoff_timeout=HANDOFF).withdraw == [0]


def test_a_leaving_instance_offers_everything_and_takes_nothing() -> None:
    rows = {s: Lease(s, "a", 1, 2000.0) for s in range(3)}
    rows[3] = Lease(3)
    p = plan("a", ["b"], rows, 4, 1000.0, handoff_timeout=HANDOFF)
    assert p.take == []
    assert p.accept == []
    assert p.offer == [(0, "b"), (1, "b"), (2, "b")]
    assert plan("b", ["b"], rows, 4, 1000.0, handoff_timeout=HANDOFF).take == [3]
