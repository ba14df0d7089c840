from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.core.topics import (
    MAX_COMBINED_LENGTH,
    InvalidTopicError,
    TopicCapacityError,
    TopicPlanner,
    combine_group,
    expand_topic,
    normalise_topics,
    topic_matches,
)


def users(n: int, leaf: str = "presence") -> list[str]:
    return [f"v2.users.{i:08d}-aaaa-bbbb-cccc-{i:012d}.{leaf}" for i in range(n)]


def test_expand_combined_topic() -> None:
    assert expand_topic("v2.users.u1?presence&routingStatus") == (
        "v2.users.u1.presence",
        "v2.users.u1.routingStatus",
    )
    assert expand_topic("v2.users.u1.presence") == ("v2.users.u1.presence",)


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("", "non-empty"),
        ("v2.system.socket_closing", "implicitly"),
        ("channel.metadata", "implicitly"),
        ("nodots", "malformed"),
        ("v2.users..presence", "malformed"),
        ("v2.users.x y.presence", "malformed"),
        ("v2." + "a" * 300, "longer than"),
    ],
)
def test_invalid_topics_are_named(topic: str, fragment: str) -> None:
    with pytest.raises(InvalidTopicError, match=fragment):
        normalise_topics([topic])


def test_single_string_is_refused() -> None:
    with pytest.raises(InvalidTopicError, match="list"):
        normalise_topics("v2.users.u1.presence")


def test_combine_group_respects_length_limit() -> None:
    leaves = [f"leaf{i:03d}" for i in range(60)]
    combined = combine_group("v2.users.abc", leaves)
    assert len(combined) > 1
    assert all(len(t) <= MAX_COMBINED_LENGTH for t in combined)
    expanded = [t for c in combined for t in expand_topic(c)]
    assert sorted(expanded) == sorted(f"v2.users.abc.{leaf}" for leaf in leaves)


def test_planner_combines_and_expands_back() -> None:
    p = TopicPlanner(max_shards=3)
    p.add(["v2.users.u1.presence", "v2.users.u1.routingStatus", "v2.routing.queues.q1.conversations"])
    wire = p.wire_topics(0)
    assert "v2.users.u1?presence&routingStatus" in wire
    assert p.entries(0) == 2
    assert {t for w in wire for t in expand_topic(w)} == p.topics(0)


def test_adding_topics_never_moves_existing_ones() -> None:
    p = TopicPlanner(max_shards=5, max_topics_per_shard=10, combine=False)
    first = users(25)
    p.add(first)
    before = {t: p.shard_of(t) for t in first}
    change = p.add(users(40)[25:])
    assert all(p.shard_of(t) == s for t, s in before.items())
    assert set(change.changed) == {2, 3}  # shard 2 had room for 5, shard 3 is new


def test_capacity_error_is_all_or_nothing() -> None:
    p = TopicPlanner(max_shards=2, max_topics_per_shard=10, combine=False)
    p.add(users(15))
    with pytest.raises(TopicCapacityError, match="do not fit") as info:
        p.add(users(30)[15:])
    assert len(info.value.overflow) == 10
    assert len(p) == 15
    assert p.entries(0) + p.entries(1) == 15


def test_a_refused_add_keeps_the_topic_index_object() -> None:
    # the client's frame intake holds the planner's topic -> shard dict; a rollback must not swap it out
    p = TopicPlanner(max_shards=1, max_topics_per_shard=10, combine=False)
    p.add(users(5))
    index = p._where
    with pytest.raises(TopicCapacityError):
        p.add(users(20)[5:])
    assert p._where is index
    assert set(index) == set(users(5))


def test_removing_empties_a_shard() -> None:
    p = TopicPlanner(max_shards=2, max_topics_per_shard=10, combine=False)
    p.add(users(12))
    change = p.remove(users(12)[10:])
    assert change.changed == {1: frozenset()}
    assert list(p.shards()) == [0]


def test_topic_matches() -> None:
    assert topic_matches("v2.users.*.presence", "v2.users.abc.presence")
    assert not topic_matches("v2.users.*.presence", "v2.users.abc.routingStatus")
    assert not topic_matches("v2.users.*", "v2.users.abc.presence")
    assert topic_matches("v2.users.#", "v2.users.abc.presence")


ops = st.lists(
    st.tuples(st.booleans(), st.lists(st.integers(0, 60), max_size=15)),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, combine=st.booleans())
def test_planner_invariants(ops: list[tuple[bool, list[int]]], combine: bool) -> None:
    p = TopicPlanner(max_shards=4, max_topics_per_shard=7, combine=combine)
    leaves = ["presence", "routingStatus", "station"]
    model: set[str] = set()
    for add, idxs in ops:
        topics = [f"v2.users.u{i // 3}.{leaves[i % 3]}" for i in idxs]
        where = {t: p.shard_of(t) for t in model}
        if add:
            try:
                p.add(topics)
                model |= set(topics)
            except TopicCapacityError:
                pass
        else:
            p.remove(topics)
            model -= set(topics)
        assert {t: p.shard_of(t) for t in model if t in where} == {t: where[t] for t in model if t in where}
        assert set().union(*p.shards().values()) == model if model else not p.shards()
        for shard, topics_in in p.shards().items():
            wire = p.wire_topics(shard)
            assert len(wire) == p.entries(shard) <= 7
            assert {t for w in wire for t in expand_topic(w)} == topics_in
