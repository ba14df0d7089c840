"""KeySchedule, the pure per-key claim logic: examples, then Hypothesis against a naive reference model."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gcbridge.outbox.schedule import Claim, KeySchedule


def test_only_the_head_of_a_free_key_is_claimable() -> None:
    s = KeySchedule()
    for row_id, key in [(1, "a"), (2, "b"), (3, "a"), (4, "b")]:
        s.add(row_id, key, "t", 0.0)
    assert [c.row_id for c in s.claim(10, now=0.0, lease_expires=30.0)] == [1, 2]
    assert s.claim(10, now=0.0, lease_expires=30.0) == []
    assert s.finish(1)
    assert s.claim(10, now=0.0, lease_expires=30.0) == [Claim(3, "a")]
    assert (s.pending, s.in_flight) == (1, 2)


def test_a_retrying_head_holds_back_its_key_until_due() -> None:
    s = KeySchedule()
    s.add(1, "a", "t", 0.0)
    s.add(2, "a", "t", 0.0)
    (c,) = s.claim(1, now=0.0, lease_expires=30.0)
    assert s.retry(c.row_id, due=50.0)
    assert s.next_due() == 50.0
    assert s.claim(5, now=49.0, lease_expires=79.0) == []
    assert s.claim(5, now=50.0, lease_expires=80.0) == [Claim(1, "a")]
    assert s.next_due() is None  # the only key is busy


def test_finish_and_retry_ignore_rows_that_are_not_in_flight() -> None:
    s = KeySchedule()
    s.add(1, "a", "t", 0.0)
    assert not s.finish(1)
    assert not s.retry(1, 5.0)
    assert not s.finish(99)
    with pytest.raises(ValueError, match="already scheduled"):
        s.add(1, "a", "t", 0.0)


def test_expired_leases_are_reported_once_per_claim() -> None:
    s = KeySchedule()
    s.add(1, "a", "t", 0.0)
    s.add(2, "b", "t", 0.0)
    s.claim(1, now=0.0, lease_expires=10.0)
    s.claim(1, now=0.0, lease_expires=20.0)
    assert s.expired_leases(9.9) == []
    assert s.expired_leases(10.0) == [1]
    s.retry(1, 10.0)
    s.claim(1, now=10.0, lease_expires=40.0)  # row 1 again, with a new lease
    assert s.expired_leases(25.0) == [2]
    assert s.expired_leases(39.0) == []


def test_the_lease_heap_holds_live_claims_not_every_claim_within_the_lease() -> None:
    """Finished claims' leases used to stay until their lease time (300 s in the store): at 500 rows/s
    150,000 entries. Now they are dropped once they outnumber the keys, and expiry still works."""
    s = KeySchedule()
    s.add(1, "slow", "t", 0.0)
    s.claim(1, now=0.0, lease_expires=300.0)  # stays in flight: its lease must survive every compaction
    for row_id in range(2, 10_002):
        s.add(row_id, f"key-{row_id % 8}", "t", 0.0)
        (claim,) = s.claim(1, now=1.0, lease_expires=301.0)
        assert s.finish(claim.row_id)
    assert s.lease_entries <= 2 * 9 + 64 + 1
    assert s.expired_leases(299.0) == []
    assert s.expired_leases(300.0) == [1]


def test_replayed_older_row_becomes_the_head_again() -> None:
    s = KeySchedule()
    s.add(5, "a", "t", 0.0)
    s.add(2, "a", "t", 0.0)  # a replayed dead row keeps its smaller id
    assert s.claim(5, now=0.0, lease_expires=1.0) == [Claim(2, "a")]


def test_coalesce_takes_the_newest_of_the_leading_same_topic_run() -> None:
    s = KeySchedule()
    for row_id, topic in [(1, "x"), (2, "x"), (3, "x"), (4, "y"), (5, "x")]:
        s.add(row_id, "a", topic, 0.0)
    assert s.claim(5, now=0.0, lease_expires=1.0, coalesce=True) == [Claim(3, "a", (1, 2))]
    s.finish(3)
    assert s.claim(5, now=0.0, lease_expires=1.0, coalesce=True) == [Claim(4, "a")]
    assert s.pending == 1


def test_mark_in_flight_restores_a_recorded_claim() -> None:
    s = KeySchedule()
    s.add(1, "a", "t", 0.0)
    s.add(2, "a", "t", 0.0)
    s.mark_in_flight(1, lease_expires=30.0)
    assert s.claim(5, now=0.0, lease_expires=1.0) == []
    assert s.expired_leases(30.0) == [1]


# -- model-based ------------------------------------------------------------------------------------


@dataclass
class RefRow:
    id: int
    key: str
    topic: str
    due: float
    state: str = "pending"  # pending | in_flight | gone


def eligible_heads(rows: dict[int, RefRow], now: float | None) -> dict[str, RefRow]:
    busy = {r.key for r in rows.values() if r.state == "in_flight"}
    heads: dict[str, RefRow] = {}
    for r in sorted(rows.values(), key=lambda r: r.id):
        if r.state == "pending" and r.key not in heads:
            heads[r.key] = r
    return {k: r for k, r in heads.items() if k not in busy and (now is None or r.due <= now)}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abcd"), st.sampled_from(["x", "y"])),
        st.tuples(st.just("claim"), st.integers(1, 4), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("retry"), st.integers(0, 50), st.integers(0, 20)),
        st.tuples(st.just("drop"), st.integers(0, 50)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops)
@example([("add", "a", "y"), ("add", "a", "x"), ("drop", 2), ("add", "a", "y"), ("claim", 1, 0, True)])
def test_schedule_matches_the_reference_model(program: list[tuple[object, ...]]) -> None:
    s = KeySchedule()
    ref: dict[int, RefRow] = {}
    next_id = 1
    for op in program:
        match op:
            case ("add", str(key), str(topic)):
                s.add(next_id, key, topic, 0.0)
                ref[next_id] = RefRow(next_id, key, topic, 0.0)
                next_id += 1
            case ("claim", int(limit), int(now), bool(coalesce)):
                heads = eligible_heads(ref, float(now))
                claims = s.claim(limit, float(now), float(now) + 100.0, coalesce=coalesce)
                assert len(claims) == min(limit, len(heads))  # nothing eligible is left out
                for c in claims:
                    head = heads[c.order_key]
                    chosen = ref[c.row_id]
                    assert (chosen.key, chosen.state) == (c.order_key, "pending")
                    if c.superseded:
                        assert coalesce
                        assert c.superseded[0] == head.id
                    else:
                        assert c.row_id == head.id
                    # every row still pending from the head up to the chosen one has the head's topic (a row
                    # dropped in between is gone: it neither breaks nor joins the run)
                    run = [
                        r
                        for r in ref.values()
                        if r.key == c.order_key and head.id <= r.id <= c.row_id and r.state != "gone"
                    ]
                    assert [r.id for r in run] == [*c.superseded, c.row_id]
                    assert all(r.topic == head.topic and r.state == "pending" for r in run)
                    for gone in c.superseded:
                        ref[gone].state = "gone"
                    chosen.state = "in_flight"
            case ("finish", int(row_id)):
                expect = row_id in ref and ref[row_id].state == "in_flight"
                assert s.finish(row_id) == expect
                if expect:
                    ref[row_id].state = "gone"
            case ("retry", int(row_id), int(due)):
                expect = row_id in ref and ref[row_id].state == "in_flight"
                assert s.retry(row_id, float(due)) == expect
                if expect:
                    ref[row_id].state = "pending"
                    ref[row_id].due = float(due)
            case ("drop", int(row_id)):
                s.drop_pending([row_id])
                if row_id in ref and ref[row_id].state == "pending":
                    ref[row_id].state = "gone"
            case _:
                raise AssertionError(f"unknown op {op!r}")
        heads_any = eligible_heads(ref, None)
        assert s.next_due() == (min(r.due for r in heads_any.values()) if heads_any else None)
        assert s.pending == sum(r.state == "pending" for r in ref.values())
        assert s.in_flight == sum(r.state == "in_flight" for r in ref.values())
