"""Failover benchmark: how long after an owner is SIGKILLed its shards are live on another instance.

Three ``gcbridge run`` processes share one PostgreSQL outbox (``[ha]``, ``--shards`` shards, ``--ttl`` lease
TTL) against both simulators in this process, with events flowing. ``--kills`` times: SIGKILL an instance that
owns shards, time each of its shards until another live instance holds its lease (the taker subscribes
before it takes the lease, so a held lease means the shard is live), then restart the killed instance and
let the shards settle. Printed: failover p50 / p99 / max next to the lease TTL (the earliest a takeover may
happen: the baseline no failover can beat without shorter leases) and next to a single instance restarted
by its supervisor (kill -> restart -> every shard live again: what one instance with systemd gets).

    .venv/bin/python bench/bench_failover.py                    # 20 kills, ttl 3 s, 6 shards (~5 minutes)
    .venv/bin/python bench/bench_failover.py --kills 50 --ttl 15

PostgreSQL: ``--pg-dsn`` (default ``GCBRIDGE_TEST_PG_DSN`` or ``postgresql://postgres@127.0.0.1:5432/postgres``),
a database created for the run and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.ha_cluster

from tests.e2e.conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER
from tests.ha_cluster import OWNER_CLIENT, HaCluster

from gcbridge.outbox.postgres import PostgresOutbox
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.config import SnSimConfig
from gcbridge.sim.servicenow.sim import ServiceNowSim

TOPICS = [f"v2.routing.queues.5e1f{i:04d}-0000-4000-8000-00000000{i:04d}.conversations" for i in range(1, 13)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def wait_for(check, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace, url: str, tmp: Path) -> None:
    gsim = GenesysSim(SimConfig(seed=5, heartbeat_interval=5.0))
    gsim.add_oauth_client(OWNER_CLIENT, GENESYS_SECRET)
    snsim = ServiceNowSim(SnSimConfig(users={SN_USER: SN_PASSWORD}))
    await gsim.start("127.0.0.1", 0)
    await snsim.start("127.0.0.1", 0)
    await (await PostgresOutbox.open(url)).close()
    cluster = HaCluster(tmp, gsim, snsim, url, topics=TOPICS, shards=args.shards, ttl=args.ttl)
    await cluster.open()
    rng = random.Random(args.seed)
    names = ["a", "b", "c"]
    restarts: list[float] = []
    try:
        for name in names:
            await cluster.add(name).start()
        await cluster.wait_owned()
        gsim.start_traffic(args.rate, TOPICS)
        for n in range(args.kills):
            owners = await cluster.owners()
            held = sorted({o for o, _ in owners.values()})
            victim = rng.choice(held)
            lost = [s for s, (o, _) in owners.items() if o == victim]
            before = len(cluster.samples.failovers)
            await cluster.kill(victim)

            async def taken(lost: list[int] = lost, victim: str = victim) -> bool:
                await cluster.sample()
                now = await cluster.owners()
                return all(s in now and now[s][0] != victim for s in lost)

            await wait_for(taken)
            times = cluster.samples.failovers[before:]
            print(
                f"kill {n + 1:>3}: {victim} owned {len(lost)} shards; live elsewhere after "
                f"{', '.join(f'{t:.2f}' for t in times)} s",
                flush=True,
            )
            await cluster.bridges[victim].start()
            await cluster.wait_owned()
            await asyncio.sleep(rng.uniform(1.0, 3.0))  # let a rebalance start, as in real life

        # the single-instance baseline: one instance, killed and restarted by its supervisor at once
        for name in names[1:]:
            await cluster.bridges[name].terminate()
        await cluster.wait_owned(by={"a"})
        only = cluster.bridges["a"]

        async def all_live() -> bool:
            doc = await only.status() or {}
            return len((doc.get("ha") or {}).get("owned") or {}) == args.shards

        for _ in range(min(5, args.kills)):
            started = time.time()
            await cluster.kill("a")
            await only.start()
            await wait_for(all_live)
            restarts.append(time.time() - started)
        await gsim.stop_traffic()
    finally:
        await cluster.close()
        await gsim.stop()
        await snsim.stop()

    f = cluster.samples.failovers
    print()
    print(
        f"failover after SIGKILL ({len(f)} shards in {args.kills} kills, lease_ttl {args.ttl:g} s, "
        f"{args.shards} shards, 3 instances):"
    )
    print(
        f"  owner killed -> shard live on another instance: p50 {statistics.median(f):.2f} s   "
        f"p99 {percentile(f, 0.99):.2f} s   max {max(f):.2f} s"
    )
    print(f"  baseline, lease_ttl (a lease runs out 2/3 to 1 x ttl after the last renewal): {args.ttl:.2f} s")
    if restarts:
        print(
            f"  baseline, one instance restarted at once after SIGKILL: "
            f"p50 {statistics.median(restarts):.2f} s"
            f"   max {max(restarts):.2f} s ({len(restarts)} restarts; a supervisor's RestartSec comes on top)"
        )


async def main_async(args: argparse.Namespace) -> None:
    dsn = args.pg_dsn
    database = f"gcbridge_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    parts = urlsplit(dsn)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))
    try:
        with tempfile.TemporaryDirectory(prefix="gcbridge-failover-") as tmp:
            await measure(args, url, Path(tmp))
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--ttl", type=float, default=3.0, help="[ha] lease_ttl of the instances (default 3)")
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second while measuring")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("GCBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
