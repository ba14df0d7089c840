"""Hypothesis drives random event sequences through the pure client core and checks its invariants."""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gcbridge.core.path import Notice, PathState
from gcbridge.core.topics import TopicCapacityError

from ._path_world import World

TOPICS = [f"v2.users.u{i}.presence" for i in range(10)]


class CoreMachine(RuleBasedStateMachine):
    world: World

    @initialize(
        exclusive=st.booleans(),
        credentials=st.sampled_from([1, 1, 2]),
        initial=st.lists(st.sampled_from(TOPICS), min_size=1, max_size=6, unique=True),
    )
    def start(self, exclusive: bool, credentials: int, initial: list[str]) -> None:
        self.world = World(credentials=credentials, exclusive=exclusive)
        self.world.take(self.world.core.subscribe(0.0, initial))

    @rule(index=st.integers(0, 50), ok=st.booleans())
    def complete_operation(self, index: int, ok: bool) -> None:
        self.world.complete(index, ok)

    @rule(index=st.integers(0, 50))
    def complete_operation_ok(self, index: int) -> None:
        self.world.complete(index, True)

    @rule(index=st.integers(0, 50))
    def deliver_notice(self, index: int) -> None:
        self.world.deliver_notice(index)

    @rule(index=st.integers(0, 50), gone=st.booleans())
    def drop_socket(self, index: int, gone: bool) -> None:
        self.world.drop(index, gone)

    @rule(index=st.integers(0, 50), notice=st.sampled_from(list(Notice)))
    def system_notice(self, index: int, notice: Notice) -> None:
        self.world.notify(index, notice)

    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 3.0, 10.0]))
    def advance(self, dt: float) -> None:
        self.world.advance(dt)

    @rule(topics=st.lists(st.sampled_from(TOPICS), min_size=1, max_size=3, unique=True), add=st.booleans())
    def change_topics(self, topics: list[str], add: bool) -> None:
        w = self.world
        if add:
            with contextlib.suppress(TopicCapacityError):  # 3 shards x 3 topics: refusing is right
                w.take(w.core.subscribe(w.now, topics))
        elif len(w.core.planner) > len(topics):
            w.take(w.core.unsubscribe(w.now, topics))

    @precondition(lambda self: hasattr(self, "world"))
    @invariant()
    def invariants_hold(self) -> None:
        self.world.check()
        self.world.record()

    def teardown(self) -> None:
        if not hasattr(self, "world"):
            return
        w = self.world
        # recovery: with every operation succeeding and time passing, every shard is served again
        for _ in range(200):
            w.settle()
            w.record()
            settled = all(p.state is PathState.LIVE for p in w.core.paths.values()) and not w.ops
            if settled and all(w.served(s) for s in w.core.planner.shards()):
                break
            w.advance(2.0)
            w.check()
        for shard in w.core.planner.shards():
            assert w.served(shard), f"shard {shard} not recovered"
        assert w.uncovered() == []
        w.take(w.core.shutdown(w.now))
        w.settle()
        assert not w.sockets
        assert all(b.held == 0 for b in w.core.budgets)


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_seeded_random_walks_keep_every_interruption_covered() -> None:
    """A cheaper, wider walk than the state machine above: 200 fixed seeds, two credentials half the time."""
    import random

    rotations = gaps = 0
    for seed in range(200):
        r = random.Random(seed)
        w = World(credentials=r.choice([1, 2]), exclusive=r.random() < 0.5)
        w.take(w.core.subscribe(0.0, TOPICS[: r.randint(1, 8)]))
        for _ in range(60):
            k = r.random()
            if k < 0.4:
                w.complete(r.randint(0, 50), r.random() < 0.8)
            elif k < 0.5:
                w.drop(r.randint(0, 50), r.random() < 0.5)
            elif k < 0.6:
                w.notify(r.randint(0, 50), r.choice(list(Notice)))
            elif k < 0.65:
                w.deliver_notice(r.randint(0, 50))
            else:
                w.advance(r.choice([0.1, 0.5, 1.0, 3.0, 10.0]))
            w.check()
            w.record()
        for _ in range(60):
            w.settle()
            w.advance(2.0)
            w.check()
        w.settle()
        w.record()
        assert w.uncovered() == [], seed
        gaps += len(w.gaps)
        rotations += sum(sum(p.counters.rotations.values()) for p in w.core.paths.values())
    assert rotations > 100
    assert gaps > 50
