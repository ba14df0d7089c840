"""The socket readers' per-frame work (:class:`gcbridge.genesys.intake.Intake`): parse, classify, drop
resends and copies, build the Event; and the resend window it uses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.core.dedup import CopyMatcher, DedupWindow, dedup_key
from gcbridge.genesys.events import Event
from gcbridge.genesys.intake import Intake, Kind

TOPIC = "v2.users.u1.presence"
CHANNEL = "streaming-0-abc"


def frame(topic: str = TOPIC, body: Any = None, **extra: Any) -> str:
    data: dict[str, Any] = {"topicName": topic, "version": "2", "eventBody": body if body is not None else {}}
    data.update(extra)
    return orjson.dumps(data).decode()


def event(i: int, cid: Any = None, topic: str = TOPIC) -> str:
    extra = {} if cid is None else {"metadata": {"CorrelationId": cid}}
    return frame(topic, {"id": i}, **extra)


def make(where: dict[str, int] | None = None) -> Intake:
    index = {TOPIC: 0} if where is None else where
    return Intake(index.get, DedupWindow(), CopyMatcher(window=60.0))


def take(it: Intake, raw: str | bytes, now: float, conn: int = 1, shared: bool = False) -> tuple[Kind, Any]:
    return it.take(raw, now, 1.7e9 + now, CHANNEL, conn, shared)


def kinds(it: Intake, raws: list[str | bytes], shared: bool = False) -> list[Kind]:
    return [take(it, raw, float(i), shared=shared)[0] for i, raw in enumerate(raws)]


# == one socket per shard: resends ========================================================================
def test_an_event_frame_becomes_an_event() -> None:
    it = make()
    raw = frame(body={"presence": "Available"}, metadata={"CorrelationId": "c1"})
    kind, ev = it.take(raw, 1.0, 1_700_000_000.5, CHANNEL, 1, False)
    assert kind is Kind.EVENT
    assert type(ev) is Event
    assert (ev.topic, ev.body, ev.version, ev.metadata, ev.received_at, ev.channel_id) == (
        TOPIC,
        {"presence": "Available"},
        "2",
        {"CorrelationId": "c1"},
        1_700_000_000.5,
        CHANNEL,
    )
    assert ev.dedup_key == dedup_key(TOPIC, {"presence": "Available"})
    assert (it.events, it.duplicates, it.unknown_topic) == (1, 0, 0)


def test_bytes_frames_are_taken_like_text() -> None:
    kind, ev = take(make(), event(1, "c1").encode(), 1.0)
    assert kind is Kind.EVENT
    assert ev.body == {"id": 1}


def test_a_resend_with_the_same_correlation_id_is_dropped() -> None:
    it = make()
    # same CorrelationId on another topic, or another CorrelationId with the same body: distinct events
    raws = [event(1, "c1"), event(1, "c1"), event(1, "c1", topic="v2.users.u2.presence"), event(1, "c2")]
    assert kinds(it, raws) == [Kind.EVENT, Kind.DUPLICATE, Kind.UNKNOWN_TOPIC, Kind.EVENT]
    assert (it.events, it.duplicates, it.unknown_topic) == (3, 1, 1)


@pytest.mark.parametrize(
    "cid", [None, "", 7, {"x": 1}, ["a"]], ids=["missing", "empty", "int", "dict", "list"]
)
def test_without_a_usable_correlation_id_the_frame_itself_is_the_key(cid: Any) -> None:
    # an unhashable CorrelationId must not break the reader
    raw = frame(body={"id": 1}, metadata={"CorrelationId": cid})
    other = frame(body={"id": 2}, metadata={"CorrelationId": cid})
    assert kinds(make(), [raw, raw, other]) == [Kind.EVENT, Kind.DUPLICATE, Kind.EVENT]


def test_a_resend_is_forgotten_after_the_window() -> None:
    it = Intake({TOPIC: 0}.get, DedupWindow(window=10.0), CopyMatcher(window=10.0))
    assert take(it, event(1, "c1"), 0.0)[0] is Kind.EVENT
    it.resends.expire(10.5)
    assert take(it, event(1, "c1"), 10.5)[0] is Kind.EVENT


def test_odd_bodies_and_metadata_are_normalised() -> None:
    it = make()
    _, first = take(it, orjson.dumps({"topicName": TOPIC, "eventBody": [1, 2], "metadata": "x"}), 1.0)
    _, second = take(it, orjson.dumps({"topicName": TOPIC}), 2.0)
    assert (first.body, first.metadata, first.version) == ({"value": [1, 2]}, {}, None)
    assert (second.body, second.metadata) == ({"value": None}, {})


@pytest.mark.parametrize(
    "raw",
    [
        '{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}',
        '{"topicName":"v2.system.socket_closing","eventBody":{}}',
        '{"message":"pong"}',
        '{"topicName":5}',
        "[1,2,3]",
        '"just a string"',
        "null",
    ],
    ids=["heartbeat", "system", "pong", "topic-not-a-string", "array", "string", "null"],
)
@pytest.mark.parametrize("shared", [False, True], ids=["one-socket", "shared"])
def test_frames_that_are_not_events_are_handed_back_parsed(raw: str, shared: bool) -> None:
    it = make()
    assert take(it, raw, 1.0, shared=shared) == (Kind.OTHER, orjson.loads(raw))
    assert it.events == 0


@pytest.mark.parametrize("shared", [False, True], ids=["one-socket", "shared"])
def test_not_json_is_reported_with_the_decoders_message_and_the_next_frame_goes_on(shared: bool) -> None:
    it = make()
    kind, message = take(it, '{"topicName": ', 1.0, shared=shared)
    assert kind is Kind.MALFORMED
    assert isinstance(message, str)
    assert message
    assert take(it, event(1, "c1"), 2.0, shared=shared)[0] is Kind.EVENT


def test_the_topic_index_is_read_live() -> None:
    where: dict[str, int] = {}
    it = make(where)
    assert take(it, event(1, "c1"), 1.0)[0] is Kind.UNKNOWN_TOPIC
    where[TOPIC] = 0
    assert take(it, event(2, "c2"), 2.0)[0] is Kind.EVENT


def test_a_single_socket_event_leaves_its_key_to_be_computed_on_first_use() -> None:
    _, ev = take(make(), event(1, "c1"), 1.0)
    assert ev == Event(TOPIC, {"id": 1}, "2", {"CorrelationId": "c1"}, "", ev.received_at, CHANNEL)
    assert ev.dedup_key == dedup_key(TOPIC, {"id": 1})


@given(st.lists(st.binary(max_size=40) | st.text(max_size=40), max_size=30), st.booleans())
def test_any_input_gives_an_outcome_and_never_raises(raws: list[str | bytes], shared: bool) -> None:
    it = make()
    got = kinds(it, raws, shared)
    assert it.events + it.duplicates + got.count(Kind.OTHER) + got.count(Kind.MALFORMED) == len(raws)


# == a shard served by more than one socket: copies ======================================================
def test_while_shared_copies_from_other_sockets_are_matched_and_resends_dropped() -> None:
    it = make()
    it.copies.joined(1, 0.0)
    it.copies.joined(2, 0.0)
    same = {"routingStatus": {"status": "IDLE"}}
    # socket 1 delivers two distinct events with the same body, socket 2 the same two (its own serialisation)
    one = frame(body=same, metadata={"CorrelationId": "a"})
    two = frame(body=same, metadata={"CorrelationId": "b"})
    copy = orjson.dumps({"metadata": {"CorrelationId": "x"}, "eventBody": same, "topicName": TOPIC})
    got = [
        take(it, one, 1.0, conn=1, shared=True),
        take(it, one, 1.1, conn=1, shared=True),  # a resend on socket 1
        take(it, two, 1.2, conn=1, shared=True),
        take(it, copy, 1.3, conn=2, shared=True),
        take(it, copy.replace(b'"x"', b'"y"'), 1.4, conn=2, shared=True),
        take(it, copy.replace(b'"x"', b'"z"'), 1.5, conn=2, shared=True),  # a third one
    ]
    assert [kind for kind, _ in got] == [
        Kind.EVENT,
        Kind.DUPLICATE,
        Kind.EVENT,
        Kind.DUPLICATE,
        Kind.DUPLICATE,
        Kind.EVENT,
    ]
    events = [ev for kind, ev in got if kind is Kind.EVENT]
    assert all(ev.dedup_key == dedup_key(TOPIC, same) for ev in events)
    assert (it.events, it.duplicates) == (3, 3)


def test_while_shared_unknown_topics_are_counted_and_delivered() -> None:
    it = make()
    kind, ev = take(it, event(1, "c", topic="v2.users.zz.presence"), 1.0, shared=True)
    assert kind is Kind.UNKNOWN_TOPIC
    assert ev.topic == "v2.users.zz.presence"
    assert it.unknown_topic == 1


# == DedupWindow ==========================================================================================
def test_window_drops_repeats_then_forgets_them() -> None:
    w = DedupWindow(window=10.0, max_entries=100)
    assert w.first("k", 0.0)
    assert not w.first("k", 5.0)
    assert w.first("other", 10.5)
    w.expire(10.5)  # also done every 64 inserts
    assert "k" not in w
    assert "other" in w
    assert w.first("k", 11.0)


def test_window_size_bound_forgets_oldest_first() -> None:
    w = DedupWindow(window=1000.0, max_entries=3)
    for i, k in enumerate("abcd"):
        assert w.first(k, float(i))
    assert len(w) == 3
    assert "a" not in w
    assert w.evicted_early == 1
    assert not w.first("d", 5.0)


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        DedupWindow(window=0)
    with pytest.raises(ValueError, match="max_entries"):
        DedupWindow(window=1.0, max_entries=0)


def test_window_holds_many_keys_through_growth_and_expiry() -> None:
    w = DedupWindow(window=50.0, max_entries=50_000)
    for i in range(30_000):
        assert w.first(i * 7919, i / 1000)  # 30 s of keys
    assert len(w) == 30_000
    assert not any(w.first(i * 7919, 30.0) for i in range(0, 30_000, 97))
    for i in range(30_000, 60_000):
        assert w.first(i * 7919, i / 1000)
    w.expire(60.0)  # keys older than 10 s are gone, the rest still found
    # the size bound went first (10,000 evicted), then expiry took key 10,000 (at 10.0 s, the horizon)
    assert (len(w), w.evicted_early) == (49_999, 10_000)
    assert all((i * 7919) in w for i in range(10_001, 60_000, 101))
    assert not any((i * 7919) in w for i in range(0, 10_000, 101))
