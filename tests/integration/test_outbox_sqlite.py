"""SqliteOutbox against a real database file: dedup, per-key order, durability, retries, dead letters,
retention, coalescing. Times are passed in (``now``), so nothing here waits on a real clock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gcbridge.outbox import OutboxItem, OutboxLockedError, SqliteOutbox


def item(n: int, key: str, *, topic: str = "v2.conversations.x", payload: bytes | None = None) -> OutboxItem:
    body = payload if payload is not None else f'{{"n":{n},"key":"{key}"}}'.encode()
    return OutboxItem(dedup_key=f"evt-{n}", order_key=key, topic=topic, payload=body, received_at=1000.0 + n)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteOutbox]:
    s = await SqliteOutbox.open(tmp_path / "outbox.db", lease_ttl=30.0, retention=3600.0)
    yield s
    await s.close()


async def test_rows_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    s = await SqliteOutbox.open(path)
    await s.put_many([item(i, f"k{i % 3}") for i in range(30)])
    rows = await s.claim(3, now=2000.0)
    await s.ack([rows[0].id], now=2000.0)
    await s.close()

    s2 = await SqliteOutbox.open(path)
    try:
        assert s2.recovered_on_open == 2  # the two claimed-but-unacked rows come back
        stats = await s2.stats(2000.0)
        assert (stats.pending, stats.in_flight, stats.delivered) == (29, 0, 1)
        assert await s2.put_many([item(0, "k0")]) == 0  # the delivered row still deduplicates
        again = await s2.claim(10, now=2001.0)
        assert sorted(r.id for r in again) == [*sorted(r.id for r in rows[1:]), rows[0].id + 3]
    finally:
        await s2.close()


async def test_second_open_of_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    s = await SqliteOutbox.open(path)
    try:
        with pytest.raises(OutboxLockedError, match="already open"):
            await SqliteOutbox.open(path)
    finally:
        await s.close()
    reopened = await SqliteOutbox.open(path)  # the lock goes with the closed store
    await reopened.close()


async def test_database_is_wal_with_the_chosen_synchronous_level(tmp_path: Path) -> None:
    s = await SqliteOutbox.open(tmp_path / "o.db", synchronous="FULL")
    await s.put_many([item(1, "a")])
    await s.close()
    conn = sqlite3.connect(tmp_path / "o.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    with pytest.raises(ValueError, match="synchronous"):
        await SqliteOutbox.open(tmp_path / "p.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_concurrent_puts_share_commits_and_all_land(store: SqliteOutbox) -> None:
    before = store.commits
    batches = [[item(b * 10 + i, f"k{i}") for i in range(10)] for b in range(50)]
    counts = await asyncio.gather(*(store.put_many(batch) for batch in batches))
    assert sum(counts) == 500
    assert (await store.stats(0.0)).pending == 500
    # 50 calls issued together must not each cost a commit (the stats read is one more)
    assert store.commits - before < 50


async def test_failed_operation_leaves_store_consistent(store: SqliteOutbox) -> None:
    await store.put_many([item(1, "a"), item(2, "a")])

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE outbox SET state = 1 WHERE id = 1")  # would corrupt the claim state if kept
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store._run(broken)
    (row,) = await store.claim(5, now=100.0)
    assert row.dedup_key == "evt-1"


async def test_only_groups_with_durable_writes_pay_for_the_fsync(store: SqliteOutbox) -> None:
    def level(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    full, normal = 2, 1
    assert await store._run(level, durable=True) == full  # like put_many, replay, purge
    await store.put_many([item(1, "a")])
    assert await store._run(level) == normal  # like claim, ack, retry, dead_letter


async def test_rows_are_committed_when_put_many_returns(store: SqliteOutbox) -> None:
    reader = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        for n in range(1, 6):
            await asyncio.gather(*(store.put_many([item(n * 10 + i, f"k{i}")]) for i in range(3)))
            # another connection sees them at once: each caller was released only after its commit
            assert reader.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == n * 3
    finally:
        reader.close()
