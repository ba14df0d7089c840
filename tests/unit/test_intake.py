"""The socket readers' per-frame work, both implementations: the compiled one (``_intake_c``, Cython) and its
Python reference (``_intake_py``) must behave the same, frame for frame."""

from __future__ import annotations

import os
import time
from collections import deque
from types import ModuleType
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcbridge.core.dedup import CopyMatcher, dedup_key
from gcbridge.core.health import HealthMonitor
from gcbridge.genesys import _intake_c, _intake_py, intake
from gcbridge.genesys._intake_py import take_shared
from gcbridge.genesys.events import Event

IMPLEMENTATIONS = [pytest.param(_intake_py, id="python"), pytest.param(_intake_c, id="compiled")]
TOPIC = "v2.users.u1.presence"
CHANNEL = "streaming-0-abc"


def frame(topic: str = TOPIC, body: Any = None, **extra: Any) -> str:
    data: dict[str, Any] = {"topicName": topic, "version": "2", "eventBody": body if body is not None else {}}
    data.update(extra)
    return orjson.dumps(data).decode()


def event(i: int, cid: Any = None, topic: str = TOPIC) -> str:
    extra = {} if cid is None else {"metadata": {"CorrelationId": cid}}
    return frame(topic, {"id": i}, **extra)


class Buffer:
    def __init__(self, limit: int = 1000) -> None:
        self.items: deque[Any] = deque()
        self.limit = limit
        self.waiting: list[Any] = [None]
        self.woken = 0

    def wake_getter(self) -> None:
        self.woken += 1
        self.waiting[0] = None


def make(mod: ModuleType, where: dict[str, int] | None = None, limit: int = 1000) -> tuple[Any, Buffer]:
    buffer = Buffer(limit)
    return mod.Intake(buffer.items, {TOPIC: 0} if where is None else where, mod.DedupWindow()), buffer


def test_the_compiled_twin_is_built_and_chosen() -> None:
    # CI builds it (gcc and Cython are there); a silent fall-back would hide a 2x slower reader
    if os.environ.get("GCBRIDGE_PURE_PYTHON", "") not in ("", "0"):
        assert not intake.COMPILED
    else:
        assert intake.COMPILED
        assert intake.Intake is _intake_c.Intake


def test_both_use_the_same_codes() -> None:
    names = ["EVENT", "DUPLICATE", "UNKNOWN_TOPIC", "OTHER", "CLOSED", "MALFORMED", "SHARED", "FULL", "TAKEN"]
    assert [getattr(_intake_c, n) for n in names] == [getattr(_intake_py, n) for n in names]
    assert len({getattr(_intake_py, n) for n in names}) == len(names)


# == Intake.take ==========================================================================================
@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_an_event_becomes_an_event_in_the_buffer(mod: ModuleType) -> None:
    it, buf = make(mod)
    before = time.time()
    raw = frame(body={"presence": "Available"}, metadata={"CorrelationId": "c1"})
    assert it.take(raw, 1.0, CHANNEL) == mod.EVENT
    (ev,) = buf.items
    assert type(ev) is Event
    assert (ev.topic, ev.body, ev.version, ev.metadata, ev.channel_id) == (
        TOPIC,
        {"presence": "Available"},
        "2",
        {"CorrelationId": "c1"},
        CHANNEL,
    )
    assert before <= ev.received_at <= time.time()
    assert ev.dedup_key == Event(TOPIC, {"presence": "Available"}, "2", {}, "", 0.0).dedup_key
    assert (it.events, it.duplicates, it.unknown_topic) == (1, 0, 0)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_bytes_frames_are_taken_like_text(mod: ModuleType) -> None:
    it, buf = make(mod)
    assert it.take(event(1, "c1").encode(), 1.0, CHANNEL) == mod.EVENT
    assert buf.items[0].body == {"id": 1}


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_a_resend_with_the_same_correlation_id_is_dropped(mod: ModuleType) -> None:
    it, buf = make(mod)
    assert it.take(event(1, "c1"), 1.0, CHANNEL) == mod.EVENT
    assert it.take(event(1, "c1"), 2.0, CHANNEL) == mod.DUPLICATE
    # same CorrelationId on another topic, or another CorrelationId with the same body: distinct events
    assert it.take(event(1, "c1", topic="v2.users.u2.presence"), 3.0, CHANNEL) == mod.UNKNOWN_TOPIC
    assert it.take(event(1, "c2"), 4.0, CHANNEL) == mod.EVENT
    assert len(buf.items) == 3
    assert (it.events, it.duplicates, it.unknown_topic) == (3, 1, 1)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "cid", [None, "", 7, {"x": 1}, ["a"]], ids=["missing", "empty", "int", "dict", "list"]
)
def test_without_a_usable_correlation_id_the_frame_itself_is_the_key(mod: ModuleType, cid: Any) -> None:
    # an unhashable CorrelationId must not break the reader (it used to raise TypeError)
    it, buf = make(mod)
    raw = frame(body={"id": 1}, metadata={"CorrelationId": cid})
    assert it.take(raw, 1.0, CHANNEL) == mod.EVENT
    assert it.take(raw, 2.0, CHANNEL) == mod.DUPLICATE
    assert it.take(frame(body={"id": 2}, metadata={"CorrelationId": cid}), 3.0, CHANNEL) == mod.EVENT
    assert len(buf.items) == 2


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_odd_bodies_and_metadata_are_normalised(mod: ModuleType) -> None:
    it, buf = make(mod)
    odd = orjson.dumps({"topicName": TOPIC, "eventBody": [1, 2], "metadata": "x"})
    assert it.take(odd, 1.0, CHANNEL) == mod.EVENT
    assert it.take(orjson.dumps({"topicName": TOPIC}), 2.0, CHANNEL) == mod.EVENT
    first, second = buf.items
    assert (first.body, first.metadata, first.version) == ({"value": [1, 2]}, {}, None)
    assert (second.body, second.metadata) == ({"value": None}, {})


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "raw",
    [
        '{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}',
        '{"topicName":"v2.system.socket_closing","eventBody":{}}',
        '{"message":"pong"}',
        '{"topicName":5}',
        "[1,2,3]",
        '"just a string"',
    ],
    ids=["heartbeat", "system", "pong", "topic-not-a-string", "array", "string"],
)
def test_frames_that_are_not_events_go_back_to_the_caller(mod: ModuleType, raw: str) -> None:
    it, buf = make(mod)
    assert it.take(raw, 1.0, CHANNEL) == mod.OTHER
    assert it.other == orjson.loads(raw)
    assert not buf.items
    assert it.events == 0


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_not_json_raises_the_decoder_error_and_keeps_nothing(mod: ModuleType) -> None:
    it, buf = make(mod)
    with pytest.raises(orjson.JSONDecodeError):
        it.take('{"topicName": ', 1.0, CHANNEL)
    assert not buf.items
    assert it.take(event(1, "c1"), 2.0, CHANNEL) == mod.EVENT  # and goes on


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_the_topic_index_is_read_live(mod: ModuleType) -> None:
    where: dict[str, int] = {}
    it, _ = make(mod, where)
    assert it.take(event(1, "c1"), 1.0, CHANNEL) == mod.UNKNOWN_TOPIC
    where[TOPIC] = 0
    assert it.take(event(2, "c2"), 2.0, CHANNEL) == mod.EVENT


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_the_counters_can_be_added_to_by_the_rare_path(mod: ModuleType) -> None:
    it, _ = make(mod)
    it.events += 2
    it.duplicates += 1
    it.unknown_topic += 1
    assert (it.events, it.duplicates, it.unknown_topic) == (2, 1, 1)


# == Reader.step ==========================================================================================
def msg(data: str | bytes, kind: aiohttp.WSMsgType = aiohttp.WSMsgType.TEXT) -> aiohttp.WSMessage:
    return aiohttp.WSMessage(kind, data, None)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def reader(mod: ModuleType, limit: int = 1000, shared_until: float = 0.0) -> tuple[Any, Any, Buffer, Any]:
    it, buf = make(mod, limit=limit)
    health = HealthMonitor(0.0, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    return it, it.reader(health, buf, [shared_until], CHANNEL, Clock()), buf, health


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_a_step_takes_an_event_stamps_health_and_wakes_the_consumer(mod: ModuleType) -> None:
    _, r, buf, health = reader(mod)
    assert r.step(msg(event(1, "c1"))) == mod.TAKEN
    assert health.last_frame == r.now == 101.0
    assert buf.woken == 0  # nobody waiting
    buf.waiting[0] = object()
    assert r.step(msg(event(2, "c2"))) == mod.TAKEN
    assert buf.woken == 1
    assert r.step(msg(event(2, "c2"))) == mod.TAKEN  # a resend: dropped, nothing to do
    assert len(buf.items) == 2


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_a_step_reports_what_the_caller_must_handle(mod: ModuleType) -> None:
    it, r, buf, _ = reader(mod, limit=2)
    closed = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, 1000, "")
    assert r.step(closed) == mod.CLOSED
    assert r.payload is closed
    assert r.step(msg('{"message":"pong"}')) == mod.OTHER
    assert r.payload == {"message": "pong"}
    assert r.step(msg("{nope")) == mod.MALFORMED
    assert isinstance(r.payload, orjson.JSONDecodeError)
    assert r.step(msg(event(1, "c1", topic="v2.users.zz.presence"))) == mod.UNKNOWN_TOPIC
    assert r.step(msg(event(2, "c2").encode(), aiohttp.WSMsgType.BINARY)) == mod.FULL  # 2 of 2 buffered
    assert len(buf.items) == 2
    assert it.events == 2


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_while_the_shard_is_shared_frames_go_back_untouched(mod: ModuleType) -> None:
    it, r, buf, health = reader(mod, shared_until=102.5)
    raw = event(1, "c1")
    assert r.step(msg(raw)) == mod.SHARED
    assert (r.payload, r.now, health.last_frame) == (raw, 101.0, 101.0)
    assert not buf.items
    assert it.events == 0
    assert r.step(msg(raw)) == mod.SHARED  # 102.0
    assert r.step(msg(raw)) == mod.TAKEN  # 103.0: the overlap is over


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_the_standard_clock_is_read_directly(mod: ModuleType) -> None:
    it, buf = make(mod)
    health = HealthMonitor(0.0, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    r = it.reader(health, buf, [0.0], CHANNEL, time.monotonic)
    before, wall_before = time.monotonic(), time.time()
    for i in range(200):  # the compiled reader re-anchors received_at to the system clock every 64 frames
        assert r.step(msg(event(i, f"c{i}"))) == mod.TAKEN
    assert before <= health.last_frame <= time.monotonic()
    wall_after = time.time()
    assert all(wall_before - 0.01 <= e.received_at <= wall_after + 0.01 for e in buf.items)


# == DedupWindow ==========================================================================================
@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_window_drops_repeats_then_forgets_them(mod: ModuleType) -> None:
    w = mod.DedupWindow(window=10.0, max_entries=100)
    assert w.first("k", 0.0)
    assert not w.first("k", 5.0)
    assert w.first("other", 10.5)
    w.expire(10.5)  # also done every 64 inserts
    assert "k" not in w
    assert "other" in w
    assert w.first("k", 11.0)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_window_size_bound_forgets_oldest_first(mod: ModuleType) -> None:
    w = mod.DedupWindow(window=1000.0, max_entries=3)
    for i, k in enumerate("abcd"):
        assert w.first(k, float(i))
    assert len(w) == 3
    assert "a" not in w
    assert w.evicted_early == 1
    assert not w.first("d", 5.0)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_bad_window_settings_are_refused(mod: ModuleType) -> None:
    with pytest.raises(ValueError, match="window"):
        mod.DedupWindow(window=0)
    with pytest.raises(ValueError, match="max_entries"):
        mod.DedupWindow(window=1.0, max_entries=0)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_window_holds_many_keys_through_growth_and_expiry(mod: ModuleType) -> None:
    w = mod.DedupWindow(window=50.0, max_entries=50_000)
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


def _home(key: int, bits: int = 10) -> int:
    """The compiled table's home slot for a small int key (hash(k) == k) while it has 2**bits slots."""
    return ((key * 0x9E3779B97F4A7C15) % 2**64) >> (64 - bits)


# keys that crowd three neighbouring home slots, so that probing and backward-shift deletion are exercised
CROWDED = [k for k in range(1, 400_000) if _home(k) in (500, 501, 502)][:40]

ops = st.lists(
    st.tuples(st.sampled_from(["first", "expire"]), st.sampled_from(range(41)), st.floats(0.0, 3.0)),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=ops,
    window=st.sampled_from([0.5, 2.0, 100.0]),
    max_entries=st.sampled_from([1, 5, 64, 1000]),
    crowded=st.booleans(),
)
def test_the_compiled_window_answers_like_the_python_one(
    ops: list[tuple[str, int, float]], window: float, max_entries: int, crowded: bool
) -> None:
    py, c = _intake_py.DedupWindow(window, max_entries), _intake_c.DedupWindow(window, max_entries)
    keys = [*CROWDED, 0] if crowded else list(range(41))
    now = 0.0
    for op, index, step in ops:
        key = keys[index]
        now += step
        if op == "first":
            assert c.first(key, now) == py.first(key, now), (op, key, now)
        else:
            c.expire(now)
            py.expire(now)
        assert len(c) == len(py)
        assert c.evicted_early == py.evicted_early
    assert all((k in c) == (k in py) for k in keys)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_a_step_reads_any_message_shaped_like_aiohttps(mod: ModuleType) -> None:
    # aiohttp's WSMessage is a NamedTuple today; a plain sequence of (type, data, extra) works too
    _, r, buf, _ = reader(mod)
    text = aiohttp.WSMsgType.TEXT
    assert r.step((text, event(1, "c1"), None)) == mod.TAKEN
    assert r.step([text, event(2, "c2"), None]) == mod.TAKEN
    assert r.step([aiohttp.WSMsgType.CLOSED, None, None]) == mod.CLOSED
    assert [e.body["id"] for e in buf.items] == [1, 2]


# == take_shared: a shard served by more than one socket =================================================
@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_while_shared_copies_from_other_sockets_are_matched_and_resends_dropped(mod: ModuleType) -> None:
    it, buf = make(mod)
    copies = CopyMatcher(window=60.0)
    copies.joined(1, 0.0)
    copies.joined(2, 0.0)
    same = {"routingStatus": {"status": "IDLE"}}
    # socket 1 delivers two distinct events with the same body, socket 2 the same two (its own serialisation)
    assert (
        take_shared(it, copies, 1, frame(body=same, metadata={"CorrelationId": "a"}), 1.0, "ch1") == mod.EVENT
    )
    resend = frame(body=same, metadata={"CorrelationId": "a"})
    assert take_shared(it, copies, 1, resend, 1.1, "ch1") == mod.DUPLICATE
    assert take_shared(it, copies, 1, frame(body=same, metadata={"CorrelationId": "b"}), 1.2, "ch1") == 0
    copy = orjson.dumps({"metadata": {"CorrelationId": "x"}, "eventBody": same, "topicName": TOPIC})
    assert take_shared(it, copies, 2, copy, 1.3, "ch2") == mod.DUPLICATE
    assert take_shared(it, copies, 2, copy.replace(b'"x"', b'"y"'), 1.4, "ch2") == mod.DUPLICATE
    assert take_shared(it, copies, 2, copy.replace(b'"x"', b'"z"'), 1.5, "ch2") == mod.EVENT  # a third one
    assert [e.channel_id for e in buf.items] == ["ch1", "ch1", "ch2"]
    assert buf.items[0].dedup_key == buf.items[2].dedup_key == dedup_key(TOPIC, same)
    assert (it.events, it.duplicates) == (3, 3)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_while_shared_other_frames_and_unknown_topics_are_reported(mod: ModuleType) -> None:
    it, _ = make(mod)
    copies = CopyMatcher(window=60.0)
    assert take_shared(it, copies, 1, '{"message":"pong"}', 1.0, "ch") == mod.OTHER
    assert it.other == {"message": "pong"}
    assert (
        take_shared(it, copies, 1, event(1, "c", topic="v2.users.zz.presence"), 1.0, "ch")
        == mod.UNKNOWN_TOPIC
    )
    assert it.unknown_topic == 1
    with pytest.raises(orjson.JSONDecodeError):
        take_shared(it, copies, 1, "{", 1.0, "ch")
