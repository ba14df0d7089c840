"""Deferred frames: a reader that knows its shard leaves event frames unparsed for the consumer, who finishes
them (``Intake.finish``) as it takes them; and ``Stream``, the client's ``async for``. Both implementations
(compiled and Python) must give the same results as parsing in the reader."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import deque
from types import ModuleType
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.core.health import HealthMonitor
from gcbridge.genesys import _intake_c, _intake_py
from gcbridge.genesys.events import Event, Gap, make_event

IMPLEMENTATIONS = [pytest.param(_intake_py, id="python"), pytest.param(_intake_c, id="compiled")]
TOPIC = "v2.users.u1.presence"
CHANNEL = "streaming-0-abc"
SHARD = 3


def event(i: int, cid: str | None = None, topic: str = TOPIC) -> str:
    data: dict[str, Any] = {"topicName": topic, "version": "2", "eventBody": {"id": i}}
    if cid is not None:
        data["metadata"] = {"CorrelationId": cid}
    return orjson.dumps(data).decode()


def msg(data: str | bytes) -> aiohttp.WSMessage:
    return aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, data, None)


class Buffer:
    def __init__(self, limit: int = 1000) -> None:
        self.items: deque[Any] = deque()
        self.limit = limit
        self.waiting: list[Any] = [None]
        self.putting: list[Any] = [None]

    def wake_getter(self) -> None:
        self.waiting[0] = None


def deferring(mod: ModuleType, clock: Any = time.monotonic) -> tuple[Any, Any, Buffer]:
    buf = Buffer()
    it = mod.Intake(buf.items, {TOPIC: SHARD}, mod.DedupWindow())
    health = HealthMonitor(0.0, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    return it, it.reader(health, buf, [0.0], CHANNEL, clock, SHARD), buf


def finish_everything(it: Any, buf: Buffer) -> list[Any]:
    out = it.finish_all(list(buf.items))
    buf.items.clear()
    return list(out)


# == which frames a reader defers ==========================================================================
@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("raw", "deferred"),
    [
        (event(1), True),
        (' \n{ "topicName" :\t"v2.users.u1.presence", "eventBody": {}}', True),  # JSON's whitespace
        ('{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}', False),
        ('{"topicName":"v2.system.socket_closing","eventBody":{}}', False),
        ('{"eventBody":{},"topicName":"v2.users.u1.presence"}', False),  # topicName is not the first key
        ('{"topicName":"v2.users.\\u00751.presence","eventBody":{}}', False),  # an escape: for the parser
        ('{"topicName":"","eventBody":{}}', False),
        ('{"topicName":5}', False),
        ('{"topicName":"v2.users.u1.presence', False),  # cut off inside the topic
        ('{"topicName":"v2.users.u1.presence",', True),  # cut off after it: the consumer finds it malformed
        ("not json", False),
        (b'{"topicName":"v2.users.u1.presence"}', False),  # binary frames are parsed in the reader
    ],
)
def test_a_frame_is_deferred_when_its_first_key_names_an_event_topic(
    mod: ModuleType, raw: str | bytes, deferred: bool
) -> None:
    assert mod.starts_as_event(raw) is deferred


def test_the_compiled_reader_declines_text_wider_than_a_byte_per_character() -> None:
    wide = '{"topicName":"v2.users.u1.presence","eventBody":{"name":"\u20ac"}}'  # the euro sign: 2 bytes wide
    latin = '{"topicName":"v2.users.u1.presence","eventBody":{"name":"\u00e9"}}'  # e acute: still one byte
    assert (_intake_c.starts_as_event(wide), _intake_py.starts_as_event(wide)) == (False, True)
    assert _intake_c.starts_as_event(latin)
    assert _intake_py.starts_as_event(latin)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
@given(
    topic=st.one_of(
        st.text(st.characters(codec="latin-1"), max_size=30),
        st.sampled_from([TOPIC, "channel.metadata", "v2.system.socket_closing", "v2.system."]),
    ),
    pad=st.sampled_from(["", " ", "\n\t "]),
    rest=st.dictionaries(st.sampled_from(["eventBody", "version"]), st.integers(-9, 9), max_size=2),
)
def test_a_deferred_frame_is_one_the_parser_calls_an_event(
    mod: ModuleType, topic: str, pad: str, rest: dict[str, int]
) -> None:
    raw = pad + orjson.dumps({"topicName": topic, **rest}).decode()
    if mod.starts_as_event(raw):
        assert _intake_py.parse(raw)[1] == topic  # what the reader guessed is what the consumer's parse finds


# == finishing deferred frames =============================================================================
@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_a_deferred_event_is_finished_into_the_event_the_reader_would_have_built(mod: ModuleType) -> None:
    it, r, buf = deferring(mod)
    wall_before = time.time()
    assert r.step(msg(event(1, "c1"))) == mod.TAKEN
    wall_after = time.time()
    assert list(buf.items) == [event(1, "c1")]  # the text, unparsed
    assert (it.deferred, it.events) == (1, 0)  # counted when the consumer takes it
    got = it.finish(buf.items.popleft())
    assert type(got) is Event
    assert (got.topic, got.body, got.version, got.metadata, got.channel_id) == (
        TOPIC,
        {"id": 1},
        "2",
        {"CorrelationId": "c1"},
        CHANNEL,
    )
    assert wall_before - 0.01 <= got.received_at <= wall_after + 0.01  # when it arrived, not when finished
    assert got == make_event(TOPIC, {"id": 1}, "2", {"CorrelationId": "c1"}, got.received_at, CHANNEL)
    assert (it.deferred, it.events, it.problems) == (0, 1, [])


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_resends_are_dropped_when_finished(mod: ModuleType) -> None:
    it, r, buf = deferring(mod)
    for raw in (event(1, "c1"), event(1, "c1"), event(2, "c2"), event(2, "c2")):
        r.step(msg(raw))
    got = finish_everything(it, buf)
    assert [e.body["id"] for e in got] == [1, 2]
    assert (it.events, it.duplicates) == (2, 2)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_deferred_and_reader_parsed_frames_keep_their_arrival_order(mod: ModuleType) -> None:
    it, r, buf = deferring(mod)
    reordered = '{"eventBody":{"id":2},"topicName":"v2.users.u1.presence","version":"2"}'
    heartbeat = '{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}'
    assert r.step(msg(event(1))) == mod.TAKEN
    assert r.step(msg(reordered)) == mod.TAKEN  # parsed by the reader: an Event in the buffer
    assert r.step(msg(heartbeat)) == mod.OTHER  # control frames are never deferred
    assert r.step(msg(event(3))) == mod.TAKEN
    assert [type(x) for x in buf.items] == [str, Event, str]
    assert [e.body["id"] for e in finish_everything(it, buf)] == [1, 2, 3]


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_what_a_deferred_frame_held_besides_an_event_is_noted_for_the_consumer(mod: ModuleType) -> None:
    it, r, buf = deferring(mod)
    cut = '{"topicName":"v2.users.u1.presence","eventBody":{'
    stranger = event(9, topic="v2.users.someone-else.presence")
    twice = '{"topicName":"v2.users.u1.presence","topicName":"v2.system.socket_closing"}'
    for raw in (cut, stranger, twice, event(1)):
        assert r.step(msg(raw)) == mod.TAKEN
    got = finish_everything(it, buf)
    assert [e.topic for e in got] == ["v2.users.someone-else.presence", TOPIC]  # unknown topics are delivered
    (c1, s1, k1, p1), (c2, s2, k2, p2), (c3, s3, k3, p3) = it.problems
    assert (c1, s1, k1) == (CHANNEL, SHARD, mod.MALFORMED)
    assert isinstance(p1, orjson.JSONDecodeError)
    assert (c2, s2, k2, p2) == (CHANNEL, SHARD, mod.UNKNOWN_TOPIC, got[0])
    assert (c3, s3, k3, p3) == (CHANNEL, SHARD, mod.OTHER, {"topicName": "v2.system.socket_closing"})
    assert (it.events, it.unknown_topic) == (2, 1)


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_finishing_without_a_deferred_frame_is_refused(mod: ModuleType) -> None:
    it, _, _ = deferring(mod)
    with pytest.raises(RuntimeError, match="without a deferred frame"):
        it.finish(event(1))


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
def test_many_frames_wait_in_order_through_growth_and_wrap_around(mod: ModuleType) -> None:
    it, r, buf = deferring(mod)
    ids: list[int] = []
    sent = 0
    for burst, take in ((200, 150), (700, 600), (50, 200)):  # the compiled ring starts at 256 slots
        for _ in range(burst):
            r.step(msg(event(sent, f"c{sent}")))
            sent += 1
        for _ in range(take):
            ids.append(it.finish(buf.items.popleft()).body["id"])
    ids += [e.body["id"] for e in finish_everything(it, buf)]
    assert ids == list(range(sent))
    assert it.deferred == 0


def test_the_compiled_ring_holds_and_releases_its_references() -> None:
    channel = "".join(["streaming-", "refcount"])  # a string of its own
    before = sys.getrefcount(channel)
    buf = Buffer()
    it = _intake_c.Intake(buf.items, {TOPIC: 0}, _intake_c.DedupWindow())
    health = HealthMonitor(0.0, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    r = it.reader(health, buf, [0.0], channel, time.monotonic, 0)
    for i in range(5):
        r.step(msg(event(i)))
    held = sys.getrefcount(channel)
    assert held >= before + 5  # one per waiting frame
    it.finish(buf.items.popleft())
    assert sys.getrefcount(channel) == held - 1
    del r, it  # dropped with frames still waiting
    gc.collect()
    assert sys.getrefcount(channel) == before


# == Stream: async for item in client ======================================================================
END = object()


def stream_for(mod: ModuleType) -> tuple[Any, Any, Buffer, list[Any]]:
    it, r, buf = deferring(mod)
    slow_calls: list[Any] = []

    async def slow(item: Any) -> Any:  # what the client's _next does, simplified: no waiting
        slow_calls.append(item)
        while True:
            if item is None:
                if not buf.items:
                    raise StopAsyncIteration
                item = buf.items.popleft()
            if type(item) is str:
                item = it.finish(item)
                continue
            if item is END:
                raise StopAsyncIteration
            return item

    return mod.Stream(it, buf, END, slow), r, buf, slow_calls


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
async def test_the_stream_hands_out_items_in_order_and_whole(mod: ModuleType) -> None:
    stream, r, buf, slow_calls = stream_for(mod)
    gap = Gap(1.0, 2.0, (TOPIC,), "dropped")
    r.step(msg(event(1, "c1")))
    ready = make_event(TOPIC, {"id": 2}, "2", {}, 5.0, CHANNEL)
    buf.items.append(ready)
    buf.items.append(gap)
    r.step(msg(event(1, "c1")))  # a resend: finished into nothing
    r.step(msg(event(3, "c3")))
    buf.items.append(END)
    got = [item async for item in stream]
    assert [type(x) for x in got] == [Event, Event, Gap, Event]  # an Event (a tuple) is not unpacked
    assert got[1] is ready
    assert got[2] is gap
    assert [e.body["id"] for e in got if isinstance(e, Event)] == [1, 2, 3]
    if mod is _intake_c:  # the compiled stream asks the slow path only for the resend and the end
        assert slow_calls == [None, END]
    else:
        assert slow_calls == [None] * 5


@pytest.mark.parametrize("mod", IMPLEMENTATIONS)
async def test_the_stream_leaves_waiting_readers_to_the_slow_path(mod: ModuleType) -> None:
    stream, r, buf, slow_calls = stream_for(mod)
    r.step(msg(event(1, "c1")))
    buf.putting[0] = asyncio.get_running_loop().create_future()  # a reader waits for space
    assert (await stream.__anext__()).body == {"id": 1}
    assert slow_calls == [None]


async def test_a_ready_item_is_given_by_await_and_by_the_iterator_protocol() -> None:
    stream, _, buf, _ = stream_for(_intake_c)
    e = make_event(TOPIC, {"id": 1}, "2", {}, 5.0, CHANNEL)
    buf.items.extend([e, e])
    assert await stream.__anext__() is e  # Python 3.11: through am_send
    with pytest.raises(StopIteration) as stop:  # what Python 3.12+ does: __next__ raises StopIteration(value)
        stream.__anext__().__await__().__next__()
    assert stop.value.value is e


# == both implementations, any mix of frames ===============================================================
FRAMES = st.one_of(
    st.builds(event, st.integers(0, 5), st.sampled_from(["c1", "c2", "c3", None])),  # resends among them
    st.builds(event, st.integers(0, 5), st.just("c9"), st.just("v2.users.someone-else.presence")),
    st.sampled_from(
        [
            '{"topicName":"v2.users.u1.presence","eventBody":{',
            '{"topicName":"v2.users.u1.presence","topicName":"v2.system.socket_closing"}',
            '{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}',
            '{"eventBody":{"id":7},"topicName":"v2.users.u1.presence"}',
        ]
    ),
)


def _outcome(mod: ModuleType, frames: list[str], cuts: list[int]) -> tuple[Any, ...]:
    it, r, buf = deferring(mod, clock=iter(range(1, 10_000)).__next__)
    for raw in frames:
        r.step(msg(raw))
    got: list[Any] = []
    for cut in cuts:  # batches of these sizes, then one by one
        before = len(buf.items)
        got += it.take_batch(cut)
        assert len(buf.items) == max(0, before - cut)
    while buf.items:
        item = buf.items.popleft()
        item = it.finish(item) if type(item) is str else item
        if item is not None:
            got.append(item)
    problems = [
        (c, s, k, p.topic if isinstance(p, Event) else type(p).__name__) for c, s, k, p in it.problems
    ]
    events = [(e.topic, e.body, e.metadata) for e in got]
    return events, problems, it.events, it.duplicates, it.unknown_topic, it.deferred


@given(frames=st.lists(FRAMES, max_size=40), cuts=st.lists(st.integers(0, 12), max_size=5))
def test_both_implementations_finish_any_mix_of_frames_alike(frames: list[str], cuts: list[int]) -> None:
    compiled = _outcome(_intake_c, frames, cuts)
    assert compiled == _outcome(_intake_py, frames, cuts)
    assert compiled[-1] == 0  # nothing left waiting
    # and alike to parsing everything in the reader, one by one
    buf = Buffer()
    it = _intake_py.Intake(buf.items, {TOPIC: SHARD}, _intake_py.DedupWindow())
    for raw in frames:
        try:
            it.take(raw, 1.0, CHANNEL)
        except orjson.JSONDecodeError:
            continue
    assert compiled[0] == [(e.topic, e.body, e.metadata) for e in buf.items]


def test_a_deferring_reader_stamps_health_once_a_millisecond_and_exactly_for_other_frames() -> None:
    clock = iter([10.0, 10.0002, 10.0004, 10.0011, 10.0012, 10.0013, 9.5]).__next__
    buf = Buffer()
    it = _intake_c.Intake(buf.items, {TOPIC: SHARD}, _intake_c.DedupWindow())
    health = HealthMonitor(0.0, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    r = it.reader(health, buf, [0.0], CHANNEL, clock, SHARD)
    heartbeat = '{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}'
    stamps, nows = [], []
    for raw in (event(1), event(2), event(3), event(4), heartbeat, event(5), event(6)):
        r.step(msg(raw))
        stamps.append(health.last_frame)
        nows.append(r.now)
    assert nows == [10.0, 10.0002, 10.0004, 10.0011, 10.0012, 10.0013, 9.5]  # every frame's own time
    # event frames: at most a millisecond old; the heartbeat (parsed by the reader): exact; a clock that
    # went back: stamped again
    assert stamps == [10.0, 10.0, 10.0, 10.0011, 10.0012, 10.0012, 9.5]
