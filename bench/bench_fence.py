"""What fencing costs ingest on PostgreSQL: ``PostgresOutbox.put_many`` with a lease fence (several instances,
``[ha]``) beside the same call without one (one instance), same events, batches and producers, in one run.

Each fenced batch locks and checks the lease rows of its shards (``SELECT ... FOR SHARE`` on
``shard_leases``) in the insert's transaction. Rounds alternate plain/fenced on fresh schemas of a database
created on ``--pg-dsn`` (default ``GCBRIDGE_TEST_PG_DSN`` or ``postgresql://postgres@127.0.0.1:5432/postgres``)
and dropped after; the best round of each is printed with the ratio.

    .venv/bin/python bench/bench_fence.py                     # 20,000 events, batch 50, 4 producers, 3 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gcbridge.core.shard_leases import shard_of
from gcbridge.outbox import OutboxItem
from gcbridge.outbox.fencing import Fence
from gcbridge.outbox.pg_leases import ShardLeaseStore
from gcbridge.outbox.postgres import PostgresOutbox

SHARDS = 16
PAYLOAD = b'{"x":"' + b"y" * 1100 + b'"}'


def make_items(n: int) -> list[OutboxItem]:
    topics = [f"v2.routing.queues.q{i}.conversations" for i in range(64)]
    return [OutboxItem(f"e{i}", f"c{i % 2000}", topics[i % 64], PAYLOAD, 1000.0 + i) for i in range(n)]


async def ingest(url: str, items: list[OutboxItem], batch: int, producers: int, fenced: bool) -> float:
    store = await PostgresOutbox.open(url, owner="bench")
    leases = await ShardLeaseStore.open(url, "bench")
    try:
        epochs: dict[int, int] = {}
        if fenced:
            await leases.join(shards=SHARDS, client_id="c", wanted_budget=6, ttl=600, host="h", pid=1)
            snap = await leases.snapshot(SHARDS, 600)
            for shard in range(SHARDS):
                taken = await leases.take(shard, snap.leases[shard], 600, topics=[])
                assert taken is not None
                epochs[shard] = taken.epoch
        batches = [items[i : i + batch] for i in range(0, len(items), batch)]
        queue = iter(batches)

        async def producer() -> None:
            for chunk in queue:
                if fenced:
                    shards = {shard_of(i.topic, SHARDS) for i in chunk}
                    await store.put_many(chunk, fence=Fence("bench", {s: epochs[s] for s in shards}))
                else:
                    await store.put_many(chunk)

        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(producers)))
        return len(items) / (time.perf_counter() - start)
    finally:
        await leases.close()
        await store.close()


async def run(args: argparse.Namespace) -> None:
    database = f"gcbridge_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(args.pg_dsn)
    try:
        version = str(await admin.fetchval("SHOW server_version")).split()[0]
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    parts = urlsplit(args.pg_dsn)
    db_url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))
    items = make_items(args.events)
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        for rnd in range(args.repeat):
            for fenced in (False, True) if rnd % 2 == 0 else (True, False):
                schema = f"r{rnd}{'f' if fenced else 'p'}"
                conn = await asyncpg.connect(db_url)
                try:
                    await conn.execute(f"CREATE SCHEMA {schema}")
                finally:
                    await conn.close()
                url = f"{db_url}?search_path={schema}"
                rates[fenced].append(await ingest(url, items, args.batch, args.producers, fenced))
    finally:
        admin = await asyncpg.connect(args.pg_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    plain, fenced = max(rates[False]), max(rates[True])
    ratios = sorted(f / p for p, f in zip(rates[False], rates[True], strict=True))
    print(
        f"PostgreSQL {version}, {args.events:,} events of ~1.1 KB, batch {args.batch}, "
        f"{args.producers} producers, best of {args.repeat} rounds"
    )
    print(f"  put_many (one instance)          {plain:>9,.0f} rows/s   (baseline)")
    print(f"  put_many with a lease fence      {fenced:>9,.0f} rows/s   ({fenced / plain:.2f} x baseline)")
    print(
        f"  per-round ratio fenced/plain: median {statistics.median(ratios):.2f}, "
        f"range {ratios[0]:.2f}-{ratios[-1]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each, best kept (default 3)")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("GCBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
