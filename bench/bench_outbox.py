"""Outbox benchmark: durable ingest (and delivery) rate of SqliteOutbox next to a bare SQLite loop, and of
PostgresOutbox beside them.

Ingest: ``--producers`` asyncio tasks (one per shard/socket) each call ``put_many`` with ``--batch`` events of
about 1.1 KB, as the notification client hands them over. Baseline: a bare ``sqlite3`` loop in one thread
inserting the same batches (same table, same unique dedup key, same ``ON CONFLICT DO NOTHING``), one
transaction per batch, same journal mode and ``synchronous`` level. Both are printed with their ratio.

Mixed: the ingest rate again while the dispatcher delivers at the same time (one writer serves both).

Delivery: the dispatcher draining the stored rows into a sink that accepts at once (claim, deliver, ack
through the store), next to a bare loop that selects a batch of pending rows and marks them delivered per
transaction (no per-key order, no leases: the physical limit, not an equivalent).

PostgreSQL: the same ingest and delivery through ``PostgresOutbox`` against a database created for the run on
``--pg-dsn`` (default: ``GCBRIDGE_TEST_PG_DSN`` or ``postgresql://postgres@127.0.0.1:5432/postgres``) and
dropped after; ``--pg-dsn none`` leaves it out.

    .venv/bin/python bench/bench_outbox.py                  # defaults: 50,000 events, batch 50, 4 producers
    .venv/bin/python bench/bench_outbox.py --events 200000 --batch 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from gcbridge.outbox import Delivered, Dispatcher, OutboxItem, OutboxRow, OutboxStore, Outcome, SqliteOutbox
from gcbridge.outbox.postgres import PostgresOutbox

Opener = Callable[[], Awaitable[SqliteOutbox | PostgresOutbox]]

SCHEMA = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE, order_key TEXT NOT NULL,
    topic TEXT NOT NULL, payload BLOB NOT NULL, received_at REAL NOT NULL, state INTEGER NOT NULL DEFAULT 0,
    finished_at REAL
);
CREATE INDEX outbox_state ON outbox(state, finished_at);
"""


def make_events(n: int, conversations: int) -> list[OutboxItem]:
    """Conversation events of about 1.1 KB of JSON each, spread over ``conversations`` order keys."""
    filler = "x" * 820
    now = time.time()
    items = []
    for i in range(n):
        conv = f"c0ffee00-0000-4000-8000-{i % conversations:012d}"
        body = {
            "topicName": f"v2.routing.queues.q1.conversations.{conv}",
            "version": "2",
            "eventBody": {
                "id": conv,
                "sequence": i,
                "participants": [{"purpose": "agent", "state": "connected"}],
            },
            "metadata": {"CorrelationId": f"{i:032x}"},
            "pad": filler,
        }
        items.append(
            OutboxItem(f"evt-{i:09d}", conv, "v2.routing.queues.q1.conversations", orjson.dumps(body), now)
        )
    return items


def batches(items: list[OutboxItem], size: int) -> list[list[OutboxItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def sqlite_opener(path: Path, sync: str) -> Opener:
    async def open_store() -> SqliteOutbox | PostgresOutbox:
        return await SqliteOutbox.open(path, synchronous=sync)  # type: ignore[arg-type]

    return open_store


def pg_opener(url: str) -> Opener:
    async def open_store() -> SqliteOutbox | PostgresOutbox:
        return await PostgresOutbox.open(url)

    return open_store


async def outbox_ingest(
    open_store: Opener, items: list[OutboxItem], batch: int, producers: int
) -> tuple[float, float]:
    store = await open_store()
    work = batches(items, batch)
    commits_before = store.commits if isinstance(store, SqliteOutbox) else 0
    start = time.perf_counter()

    async def producer(k: int) -> None:
        for chunk in work[k::producers]:
            await store.put_many(chunk)

    await asyncio.gather(*(producer(k) for k in range(producers)))
    elapsed = time.perf_counter() - start
    commits = store.commits - commits_before if isinstance(store, SqliteOutbox) else len(work)
    calls_per_commit = len(work) / max(1, commits)
    stats = await store.stats(time.time())
    assert stats.pending == len(items), stats
    await store.close()
    return len(items) / elapsed, calls_per_commit


def bare_ingest(path: Path, items: list[OutboxItem], batch: int, sync: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.executescript(SCHEMA)
    work = [
        [(i.dedup_key, i.order_key, i.topic, i.payload, i.received_at) for i in chunk]
        for chunk in batches(items, batch)
    ]
    start = time.perf_counter()
    for chunk in work:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO outbox(dedup_key, order_key, topic, payload, received_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(dedup_key) DO NOTHING",
            chunk,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(items) / elapsed


class NullSink:
    """Accepts every row at once; sets ``done`` when ``expected`` rows were delivered."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.delivered = 0
        self.done = asyncio.Event()

    async def deliver(self, row: OutboxRow) -> Outcome:
        self.delivered += 1
        if self.delivered >= self.expected:
            self.done.set()
        return Delivered()


async def outbox_dispatch(open_store: Opener, n: int, concurrency: int, batch: int) -> float:
    store: OutboxStore = await open_store()
    sink = NullSink(n)
    dispatcher = Dispatcher(store, sink, concurrency=concurrency, batch=batch, idle_poll=0.05)
    start = time.perf_counter()
    task = asyncio.create_task(dispatcher.run())
    await sink.done.wait()
    await dispatcher.drain(timeout=10)  # the last acks
    elapsed = time.perf_counter() - start
    await task
    stats = await store.stats(time.time())
    assert stats.delivered == n, stats
    await store.close()
    return n / elapsed


def bare_dispatch(path: Path, n: int, sync: str, batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={sync}")
    done = 0
    start = time.perf_counter()
    while done < n:
        conn.execute("BEGIN IMMEDIATE")
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id, payload FROM outbox WHERE state = 0 AND finished_at IS NULL ORDER BY id LIMIT ?",
                (batch,),
            )
        ]
        conn.executemany(
            "UPDATE outbox SET state = 2, finished_at = ? WHERE id = ?", [(time.time(), i) for i in ids]
        )
        conn.execute("COMMIT")
        done += len(ids)
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def mixed(
    path: Path, items: list[OutboxItem], batch: int, producers: int, sync: str, concurrency: int
) -> float:
    """Ingest rate while the dispatcher delivers the same rows: claims and acks share the writer with puts."""
    store = await SqliteOutbox.open(path, synchronous=sync)  # type: ignore[arg-type]
    sink = NullSink(len(items))
    dispatcher = Dispatcher(store, sink, concurrency=concurrency, batch=64, idle_poll=0.05)
    task = asyncio.create_task(dispatcher.run())
    work = batches(items, batch)
    start = time.perf_counter()

    async def producer(k: int) -> None:
        for chunk in work[k::producers]:
            await dispatcher.ingest(chunk)

    await asyncio.gather(*(producer(k) for k in range(producers)))
    elapsed = time.perf_counter() - start
    await sink.done.wait()
    await dispatcher.drain(timeout=10)
    await task
    stats = await store.stats(time.time())
    assert stats.delivered == len(items), stats
    await store.close()
    return len(items) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50, help="events per put_many (default 50)")
    parser.add_argument("--producers", type=int, default=4, help="concurrent put_many callers (default 4)")
    parser.add_argument("--conversations", type=int, default=2_000, help="distinct order keys (default 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="dispatcher concurrency (default 8)")
    parser.add_argument("--sync", choices=["FULL", "NORMAL", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (default 3)")
    parser.add_argument("--dir", default=None, help="where the database files go (default: a temp dir)")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("GCBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL role that may CREATE DATABASE, or 'none' (default: GCBRIDGE_TEST_PG_DSN or "
        "postgres@127.0.0.1:5432)",
    )
    args = parser.parse_args()

    items = make_events(args.events, args.conversations)
    size = sum(len(i.payload) for i in items) / len(items)
    print(
        f"{args.events} events of {size:.0f} B, put_many batches of {args.batch} from {args.producers} "
        f"producers, {args.conversations} order keys, dispatcher concurrency {args.concurrency}; "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    syncs = ["FULL", "NORMAL"] if args.sync == "both" else [args.sync]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for sync in syncs:
            results: dict[str, list[float]] = {k: [] for k in ("bare", "ours", "bare_d", "ours_d", "mixed")}
            per_commit = 0.0
            for rep in range(args.repeat):  # the machine is shared: keep the best of each, side by side
                base = Path(tmp) / f"{sync}-{rep}"
                base.mkdir()
                results["bare"].append(bare_ingest(base / "bare.db", items, args.batch, sync))
                ours, per_commit = asyncio.run(
                    outbox_ingest(sqlite_opener(base / "outbox.db", sync), items, args.batch, args.producers)
                )
                results["ours"].append(ours)
                results["bare_d"].append(bare_dispatch(base / "bare.db", args.events, sync, 64))
                results["ours_d"].append(
                    asyncio.run(
                        outbox_dispatch(
                            sqlite_opener(base / "outbox.db", sync), args.events, args.concurrency, 64
                        )
                    )
                )
                results["mixed"].append(
                    asyncio.run(
                        mixed(base / "mixed.db", items, args.batch, args.producers, sync, args.concurrency)
                    )
                )
            best = {k: max(v) for k, v in results.items()}
            ratio = best["ours"] / best["bare"]
            print(
                f"ingest   synchronous={sync:<6}  bare sqlite loop  {best['bare']:>9,.0f} rows/s   "
                f"SqliteOutbox.put_many {best['ours']:>9,.0f} rows/s   ratio {ratio:5.2f}"
                f"   ({per_commit:.1f} put_many calls per commit)"
            )
            print(
                f"deliver  synchronous={sync:<6}  bare select+update {best['bare_d']:>8,.0f} rows/s   "
                f"Dispatcher->null sink {best['ours_d']:>9,.0f} rows/s   "
                f"ratio {best['ours_d'] / best['bare_d']:5.2f}"
            )
            print(
                f"mixed    synchronous={sync:<6}  put_many alone    {best['ours']:>9,.0f} rows/s   "
                f"put_many while delivering {best['mixed']:>5,.0f} rows/s   "
                f"ratio {best['mixed'] / best['ours']:5.2f}"
            )

    if args.pg_dsn != "none":
        pg_results = asyncio.run(postgres_round(args.pg_dsn, items, args))
        print(
            f"postgres {pg_results['version']:<16} (synchronous_commit={pg_results['sync_commit']}): "
            f"PostgresOutbox.put_many {pg_results['ingest']:>9,.0f} rows/s   "
            f"Dispatcher->null sink {pg_results['deliver']:>9,.0f} rows/s   "
            f"(beside SqliteOutbox above, same events and batches)"
        )


async def postgres_round(
    dsn: str, items: list[OutboxItem], args: argparse.Namespace
) -> dict[str, str | float]:
    """Best of ``--repeat`` ingest and delivery runs on PostgresOutbox, each on a fresh schema of a database
    created for this run and dropped after."""
    database = f"gcbridge_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        version = str(await admin.fetchval("SHOW server_version")).split()[0]
        sync_commit = str(await admin.fetchval("SHOW synchronous_commit"))
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    parts = urlsplit(dsn)
    db_url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))
    ingest: list[float] = []
    deliver: list[float] = []
    try:
        for rep in range(args.repeat):
            conn = await asyncpg.connect(db_url)
            try:
                await conn.execute(f"CREATE SCHEMA r{rep}")
            finally:
                await conn.close()
            opener = pg_opener(f"{db_url}?search_path=r{rep}")
            rate, _ = await outbox_ingest(opener, items, args.batch, args.producers)
            ingest.append(rate)
            deliver.append(await outbox_dispatch(opener, len(items), args.concurrency, 64))
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    return {"version": version, "sync_commit": sync_commit, "ingest": max(ingest), "deliver": max(deliver)}


if __name__ == "__main__":
    main()
