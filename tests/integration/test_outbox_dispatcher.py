"""The dispatcher against a real SqliteOutbox and fake sinks: retry storms, poison rows, exceptions, timeouts,
Retry-After, wake-ups, draining. Time is a fake clock: the loop never waits out a real backoff delay."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.outbox import Delivered, Dispatcher, OutboxItem, OutboxRow, Outcome, Reject, Retry, SqliteOutbox
from tests.library_logs import capture_logs

SECRET = "Bearer s3cr3t-t0ken-value"


class FastClock:
    """Wall-clock stand-in that moves 0.25 s forward on every read, so stored retry times come due quickly."""

    def __init__(self, start: float = 1_000_000.0, step: float = 0.25) -> None:
        self.t = start
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


class ManualClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def eventually(cond: Callable[[], Awaitable[bool]], limit: float = 30.0) -> None:
    """Wait until ``cond()`` holds (polling); fail with a clear message after a generous timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def item(n: int, key: str) -> OutboxItem:
    return OutboxItem(f"evt-{n}", key, "v2.conversations.x", f'{{"n":{n}}}'.encode(), 1000.0 + n)


def seq_of(dedup_key: str) -> int:
    return int(dedup_key.split("-")[1])


def seq(row: OutboxRow) -> int:
    return seq_of(row.dedup_key)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteOutbox]:
    s = await SqliteOutbox.open(tmp_path / "outbox.db", synchronous="NORMAL")
    yield s
    await s.close()


class FlakySink:
    """Rejects poison rows, answers Retry to storm rows for their first attempts, raises for some, and records
    every successful write; checks that no two rows of one key are ever delivered at the same time."""

    def __init__(self, poison: set[int], storm: set[int], raising: set[int], rng: random.Random) -> None:
        self.poison, self.storm, self.raising = poison, storm, raising
        self.rng = rng
        self.delivered: list[OutboxRow] = []
        self.busy_keys: set[str] = set()
        self.max_parallel = 0
        self.overlap_errors: list[str] = []

    async def deliver(self, row: OutboxRow) -> Outcome:
        if row.order_key in self.busy_keys:
            self.overlap_errors.append(row.order_key)
        self.busy_keys.add(row.order_key)
        self.max_parallel = max(self.max_parallel, len(self.busy_keys))
        try:
            await asyncio.sleep(self.rng.random() * 0.002)
            n = seq(row)
            if n in self.poison:
                return Reject(f"HTTP 400 transform failed for row {n}")
            if n in self.storm and row.attempts < 3:
                return Retry("HTTP 429", after=1.0 if row.attempts == 0 else None)
            if n in self.raising and row.attempts == 0:
                raise ConnectionResetError(f"peer reset while sending Authorization: {SECRET}")
            self.delivered.append(row)
            return Delivered()
        finally:
            self.busy_keys.discard(row.order_key)


async def run_until_idle(dispatcher: Dispatcher, store: SqliteOutbox, clock: Callable[[], float]) -> None:
    async def idle() -> bool:
        stats = await store.stats(clock())
        return stats.pending == 0 and stats.in_flight == 0

    await eventually(idle)


async def test_flaky_sink_gets_every_good_row_exactly_once_in_key_order(store: SqliteOutbox) -> None:
    rng = random.Random(4)
    keys = [f"conv-{k}" for k in range(12)]
    items = [item(n, rng.choice(keys)) for n in range(300)]
    poison = set(rng.sample(range(300), 6))
    storm = set(rng.sample(range(300), 40)) - poison
    raising = set(rng.sample(range(300), 20)) - poison - storm
    sink = FlakySink(poison, storm, raising, rng)
    clock = FastClock()
    dispatcher = Dispatcher(
        store,
        sink,
        concurrency=6,
        batch=4,
        backoff=BackoffPolicy(initial=1.0, factor=2.0, cap=4.0),
        idle_poll=0.01,
        clock=clock,
        rng=random.Random(1),
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        for start in range(0, 300, 25):  # arrives in batches while deliveries run
            await dispatcher.ingest(items[start : start + 25])
        await run_until_idle(dispatcher, store, clock)
    finally:
        assert await dispatcher.drain(timeout=10)
        await task

    delivered = [seq(r) for r in sink.delivered]
    assert sorted(delivered) == sorted(set(range(300)) - poison)  # everything else, exactly once
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in sink.delivered:
        by_key[row.order_key].append(seq(row))
    for key, ns in by_key.items():
        assert ns == sorted(ns), f"{key} delivered out of order"
    assert sink.overlap_errors == []
    assert sink.max_parallel > 1  # concurrency across keys did happen

    dead = await store.dead_letters(limit=100)
    assert {seq_of(d.dedup_key) for d in dead} == poison
    for d in dead:
        assert d.last_error == f"rejected: HTTP 400 transform failed for row {seq_of(d.dedup_key)}"
    stats = await store.stats(clock())
    assert (stats.delivered, stats.dead) == (300 - len(poison), len(poison))
    assert dispatcher.counters.delivered == 300 - len(poison)
    assert dispatcher.counters.sink_errors == len(raising)


async def test_sink_exception_is_a_retry_named_by_class_without_the_message(store: SqliteOutbox) -> None:
    class Exploding:
        calls = 0

        async def deliver(self, row: OutboxRow) -> Outcome:
            self.calls += 1
            raise ConnectionResetError(f"Authorization: {SECRET} payload={row.payload!r}")

    clock = ManualClock()
    sink = Exploding()
    dispatcher = Dispatcher(store, sink, clock=clock, idle_poll=0.01)
    task = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(1, "a")])

        async def retried() -> bool:
            info = await store.inspect(1)
            return info is not None and info.attempts == 1

        await eventually(retried)
        info = await store.inspect(1)
        assert info is not None
        assert info.last_error == "ConnectionResetError"
        assert info.state == "pending"
        assert clock.t < info.next_attempt_at <= clock.t + 1.0  # first backoff ceiling is 1 s
    finally:
        await dispatcher.drain(timeout=10)
        await task


async def test_retry_after_is_a_floor_and_the_stored_time_is_honoured(store: SqliteOutbox) -> None:
    answers: list[Outcome] = [Retry("HTTP 429", after=30.0), Delivered()]
    calls: list[float] = []
    clock = ManualClock(5000.0)

    class RateLimited:
        async def deliver(self, row: OutboxRow) -> Outcome:
            calls.append(clock.t)
            return answers[len(calls) - 1]

    dispatcher = Dispatcher(store, RateLimited(), clock=clock, idle_poll=0.01)
    task = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(1, "a")])

        async def rescheduled() -> bool:
            info = await store.inspect(1)
            return info is not None and info.attempts == 1

        await eventually(rescheduled)
        info = await store.inspect(1)
        assert info is not None
        assert info.next_attempt_at == 5030.0  # Retry-After 30 s beats the 1 s backoff ceiling
        assert await store.next_due() == 5030.0
        clock.t = 5030.0
        dispatcher.notify()

        async def delivered() -> bool:
            return (await store.stats(clock.t)).delivered == 1

        await eventually(delivered)
        assert calls == [5000.0, 5030.0]
    finally:
        await dispatcher.drain(timeout=10)
        await task


async def test_max_attempts_dead_letters_with_the_last_error(store: SqliteOutbox) -> None:
    class AlwaysBusy:
        async def deliver(self, row: OutboxRow) -> Outcome:
            return Retry("HTTP 503 Service Unavailable")

    clock = FastClock(step=10.0)
    dispatcher = Dispatcher(store, AlwaysBusy(), max_attempts=4, clock=clock, idle_poll=0.01)
    task = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(1, "a"), item(2, "a")])

        async def buried() -> bool:
            return (await store.stats(clock.t)).dead == 2

        await eventually(buried)
        dead = await store.dead_letters()
        assert [d.attempts for d in dead] == [4, 4]
        assert dead[0].last_error == "gave up after 4 attempts; last error: HTTP 503 Service Unavailable"
    finally:
        await dispatcher.drain(timeout=10)
        await task


async def test_retry_and_dead_letter_logs_carry_the_row_context(store: SqliteOutbox) -> None:
    class FailsTwice:
        async def deliver(self, row: OutboxRow) -> Outcome:
            if row.attempts == 0:
                raise ConnectionResetError(f"Authorization: {SECRET}")
            return Retry("HTTP 503 Service Unavailable")

    clock = FastClock(step=10.0)
    dispatcher = Dispatcher(store, FailsTwice(), max_attempts=2, clock=clock, idle_poll=0.01)
    with capture_logs() as logs:
        task = asyncio.create_task(dispatcher.run())
        try:
            await dispatcher.ingest([item(7, "conv-7")])

            async def buried() -> bool:
                return (await store.stats(clock.t)).dead == 1

            await eventually(buried)
        finally:
            await dispatcher.drain(timeout=10)
            await task
    retried = [e for e in logs if e["event"] == "outbox delivery will be retried"]
    dead = [e for e in logs if e["event"] == "outbox row dead-lettered"]
    assert len(retried) == 1
    assert len(dead) == 1
    context = {"row_id": 1, "order_key": "conv-7", "topic": "v2.conversations.x"}
    assert retried[0].items() >= {**context, "attempt": 1, "reason": "ConnectionResetError"}.items()
    assert dead[0].items() >= {**context, "attempt": 2}.items()
    assert "HTTP 503 Service Unavailable" in dead[0]["reason"]
    assert SECRET not in repr(logs)


async def test_timeouts_and_wrong_return_types_are_retried_not_fatal(store: SqliteOutbox) -> None:
    calls: dict[int, int] = defaultdict(int)

    class Misbehaving:
        async def deliver(self, row: OutboxRow) -> Outcome:
            calls[row.id] += 1
            if calls[row.id] == 1 and row.id == 1:
                await asyncio.sleep(3600)  # hangs: the deliver timeout must cut it off
            if calls[row.id] == 1 and row.id == 2:
                return None  # type: ignore[return-value]
            return Delivered()

    clock = FastClock()
    dispatcher = Dispatcher(
        store,
        Misbehaving(),
        deliver_timeout=0.2,
        backoff=BackoffPolicy(initial=0.5, cap=0.5),
        clock=clock,
        idle_poll=0.01,
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(1, "a"), item(2, "b")])

        async def both() -> bool:
            return (await store.stats(clock.t)).delivered == 2

        await eventually(both)
        assert dict(calls) == {1: 2, 2: 2}
        assert dispatcher.counters.sink_errors == 1
    finally:
        await dispatcher.drain(timeout=10)
        await task


async def test_ingest_wakes_an_idle_loop(store: SqliteOutbox) -> None:
    got: list[int] = []

    class Recorder:
        async def deliver(self, row: OutboxRow) -> Outcome:
            got.append(row.id)
            return Delivered()

    dispatcher = Dispatcher(store, Recorder(), idle_poll=3600.0, housekeeping_interval=0)
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.sleep(0.05)  # let it go idle with nothing to do (a one-hour poll)
        await dispatcher.ingest([item(1, "a")])

        async def delivered() -> bool:
            return got == [1]

        await eventually(delivered, limit=20)  # far below the hour: the put woke it
    finally:
        await dispatcher.drain(timeout=10)
        await task


async def test_drain_finishes_in_flight_work_or_releases_it(store: SqliteOutbox) -> None:
    release = asyncio.Event()
    started: list[int] = []

    class Slow:
        async def deliver(self, row: OutboxRow) -> Outcome:
            started.append(row.id)
            if row.order_key == "stuck":
                await asyncio.sleep(3600)
            await release.wait()
            return Delivered()

    clock = ManualClock()
    dispatcher = Dispatcher(store, Slow(), clock=clock, idle_poll=0.01)
    task = asyncio.create_task(dispatcher.run())
    await dispatcher.ingest([item(1, "ok"), item(2, "stuck"), item(3, "ok")])

    async def both_started() -> bool:
        return sorted(started) == [1, 2]

    await eventually(both_started)
    release.set()
    assert await dispatcher.drain(timeout=0.5) is False  # "stuck" never finishes
    await task
    stats = await store.stats(clock.t)
    assert (stats.delivered, stats.in_flight, stats.pending) == (1, 0, 2)  # row 3 was never claimed
    info = await store.inspect(2)
    assert info is not None
    assert (info.state, info.last_error) == ("pending", "cancelled at shutdown")


async def test_housekeeping_expires_delivered_rows_after_retention(tmp_path: Path) -> None:
    store = await SqliteOutbox.open(tmp_path / "o.db", retention=3600.0)
    clock = ManualClock(10_000.0)

    class Ok:
        async def deliver(self, row: OutboxRow) -> Outcome:
            return Delivered()

    dispatcher = Dispatcher(
        store, Ok(), clock=clock, idle_poll=0.01, housekeeping_interval=60.0, expire_batch=3
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(n, f"k{n}") for n in range(10)])

        async def delivered() -> bool:
            return (await store.stats(clock.t)).delivered == 10

        await eventually(delivered)
        clock.t += 3600.0 + 61.0  # a retention period and a housekeeping interval later
        dispatcher.notify()

        async def expired() -> bool:
            return (await store.stats(clock.t)).delivered == 0

        await eventually(expired)
        assert dispatcher.counters.expired == 10
    finally:
        await dispatcher.drain(timeout=10)
        await task
        await store.close()


async def test_deliver_timeout_must_be_shorter_than_the_lease(tmp_path: Path) -> None:
    store = await SqliteOutbox.open(tmp_path / "o.db", lease_ttl=30.0)
    try:
        with pytest.raises(
            ValueError, match=r"deliver_timeout \(30s\) must be shorter than .* lease_ttl \(30s\)"
        ):
            Dispatcher(store, FlakySink(set(), set(), set(), random.Random()), deliver_timeout=30.0)
    finally:
        await store.close()


async def test_coalescing_dispatcher_writes_the_final_state_with_fewer_writes(store: SqliteOutbox) -> None:
    writes: list[tuple[str, int]] = []
    gate = asyncio.Event()

    class WholeState:
        async def deliver(self, row: OutboxRow) -> Outcome:
            await gate.wait()  # hold the first write of each key so that the burst queues up behind it
            writes.append((row.order_key, seq(row)))
            return Delivered()

    dispatcher = Dispatcher(store, WholeState(), coalesce=True, idle_poll=0.01)
    task = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(n, f"conv-{n % 2}") for n in range(2)])

        async def both_in_flight() -> bool:
            return dispatcher.in_flight == 2

        await eventually(both_in_flight)
        await dispatcher.ingest([item(n, f"conv-{n % 2}") for n in range(2, 40)])
        gate.set()

        async def idle() -> bool:
            stats = await store.stats(0.0)
            return stats.pending == 0 and stats.in_flight == 0

        await eventually(idle)
    finally:
        await dispatcher.drain(timeout=10)
        await task
    final = dict(writes)
    assert final == {"conv-0": 38, "conv-1": 39}  # the newest update of each conversation
    assert len(writes) == 4  # the first row of each key, then one write for the 19 queued behind it
    assert (await store.stats(0.0)).delivered == 40


class WindowFillingSink:
    """Holds every delivery until the dispatcher has filled its window (or has nothing more to claim), so the
    most deliveries seen at once is the window the dispatcher allowed; answers ``answer`` to each."""

    def __init__(self, store: SqliteOutbox) -> None:
        self.store = store
        self.dispatcher: Dispatcher | None = None
        self.answer: Outcome = Delivered()
        self.in_flight = 0
        self.max_parallel = 0

    async def deliver(self, row: OutboxRow) -> Outcome:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        self.in_flight += 1
        self.max_parallel = max(self.max_parallel, self.in_flight)
        await asyncio.sleep(0)  # the other rows of this claim start their deliveries too

        async def window_full() -> bool:
            return dispatcher.in_flight >= dispatcher.window.limit or await self.store.next_due() is None

        await eventually(window_full)
        self.in_flight -= 1
        return self.answer


async def deliver_all(dispatcher: Dispatcher, store: SqliteOutbox, items: list[OutboxItem]) -> None:
    await dispatcher.ingest(items)

    async def idle() -> bool:
        stats = await store.stats(0.0)
        return stats.pending == 0 and stats.in_flight == 0

    await eventually(idle)


async def test_the_window_grows_to_max_concurrency_while_rows_wait_and_no_further(
    store: SqliteOutbox,
) -> None:
    sink = WindowFillingSink(store)
    dispatcher = Dispatcher(
        store, sink, concurrency=2, max_concurrency=6, idle_poll=0.01, clock=ManualClock()
    )
    sink.dispatcher = dispatcher
    task = asyncio.create_task(dispatcher.run())
    try:
        await deliver_all(dispatcher, store, [item(n, f"conv-{n}") for n in range(80)])
    finally:
        assert await dispatcher.drain(timeout=10)
        await task
    assert dispatcher.window.limit == 6
    assert sink.max_parallel == 6  # grown from 2 while the backlog waited, never past the ceiling
    assert dispatcher.counters.delivered == 80


async def test_without_max_concurrency_the_window_stays_fixed(store: SqliteOutbox) -> None:
    sink = WindowFillingSink(store)
    dispatcher = Dispatcher(store, sink, concurrency=2, idle_poll=0.01, clock=ManualClock())
    sink.dispatcher = dispatcher
    task = asyncio.create_task(dispatcher.run())
    try:
        await deliver_all(dispatcher, store, [item(n, f"conv-{n}") for n in range(40)])
    finally:
        assert await dispatcher.drain(timeout=10)
        await task
    assert (dispatcher.window.limit, sink.max_parallel) == (2, 2)


async def test_a_wave_of_failures_from_one_window_halves_it_once(store: SqliteOutbox) -> None:
    sink = WindowFillingSink(store)
    clock = ManualClock()
    dispatcher = Dispatcher(store, sink, concurrency=2, max_concurrency=6, idle_poll=0.01, clock=clock)
    sink.dispatcher = dispatcher
    task = asyncio.create_task(dispatcher.run())
    try:
        await deliver_all(dispatcher, store, [item(n, f"conv-{n}") for n in range(80)])
        assert dispatcher.window.limit == 6
        sink.answer = Retry("HTTP 429: rate limited")  # every request of the next full window fails
        await dispatcher.ingest([item(n, f"busy-{n}") for n in range(100, 106)])

        async def all_retried() -> bool:
            return dispatcher.counters.retried == 6

        await eventually(all_retried)
    finally:
        await dispatcher.drain(timeout=10)
        await task
    assert sink.max_parallel == 6
    assert (dispatcher.window.limit, dispatcher.window.epoch) == (3, 1)  # one halving, not six
