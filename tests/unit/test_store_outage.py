"""Failed outbox store calls as one outage: the pure tracker, and a dispatcher over a store that stops
answering for a while (a restarting database) says so once, delivers everything and acks every row once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gcbridge.outbox import Delivered, Dispatcher, OutboxItem, OutboxRow, Outcome, SqliteOutbox
from gcbridge.outbox.store_outage import Began, Ended, StoreOutage
from tests.library_logs import capture_logs


def test_one_outage_begins_once_and_ends_once() -> None:
    outage = StoreOutage()
    assert outage.succeeded(1.0) is None
    assert outage.problem is None
    assert outage.failed("claim", ConnectionRefusedError("[Errno 111] refused\nmore"), 10.0) == Began(
        "claim", "ConnectionRefusedError: [Errno 111] refused"
    )
    assert outage.failed("write", OSError("refused"), 11.0) is None
    assert outage.failed("ack", OSError(), 12.0) is None
    assert outage.failing
    problem = outage.problem
    assert problem is not None
    assert "\n" not in problem
    assert "OSError" in problem  # the latest error
    assert outage.succeeded(14.5) == Ended(seconds=4.5, failures=3)
    assert outage.succeeded(15.0) is None
    assert outage.problem is None
    assert outage.failed("claim", OSError("again"), 20.0) is not None  # a new outage is a new line


class Down:
    """A store whose calls all fail while ``down`` (as a stopped PostgreSQL's would)."""

    def __init__(self, inner: SqliteOutbox) -> None:
        self.inner = inner
        self.down = False
        self.lease_ttl = inner.lease_ttl

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise ConnectionRefusedError("[Errno 111] Connect call failed ('127.0.0.1', 5432)")
            return await attr(*args, **kwargs)

        return call


class CountingSink:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def deliver(self, row: OutboxRow) -> Outcome:
        self.seen.append(row.dedup_key)
        return Delivered()


def items(start: int, n: int) -> Sequence[OutboxItem]:
    return [OutboxItem(f"e{i}", f"k{i % 7}", "t", b"{}", float(i)) for i in range(start, start + n)]


async def test_a_store_outage_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    inner = await SqliteOutbox.open(tmp_path / "o.db", synchronous="NORMAL")
    store = Down(inner)
    sink = CountingSink()
    dispatcher = Dispatcher(store, sink, idle_poll=0.01, housekeeping_interval=0.01)  # type: ignore[arg-type]
    with capture_logs() as logs:
        task = asyncio.create_task(dispatcher.run())
        await dispatcher.ingest(items(0, 20))
        await _until(lambda: len(sink.seen) >= 20)
        store.down = True
        await inner.put_many(items(20, 20))  # written by another instance meanwhile
        await _until(lambda: dispatcher.counters.store_errors >= 20)  # many failed calls ...
        store.down = False
        dispatcher.notify()
        await _until(lambda: dispatcher.counters.delivered == 40)
        await dispatcher.drain(timeout=5)
        await task
    await inner.close()
    assert sorted(sink.seen) == sorted(f"e{i}" for i in range(40))  # each once
    problems = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert [e["event"] for e in problems] == ["outbox database unreachable; waiting for it"]  # ... one line
    assert problems[0]["what_to_do"]
    assert [e["event"] for e in logs if "reachable again" in e["event"]] == [
        "outbox database reachable again; resuming"
    ]
    assert dispatcher.store_outage.problem is None


async def _until(cond: Any, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)
