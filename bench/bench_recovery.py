"""Recovery time: from an abrupt socket drop to the first event on the new connection, default ClientOptions.

    .venv/bin/python bench/bench_recovery.py [--drops 20]

Each round drops the client's socket (TCP abort, the client sees 1006), then publishes an event every 2 ms
until one arrives, and records the time from the drop to that arrival. Rounds are spaced by the default
``healthy_period`` (10 s) so every drop follows a healthy connection, as in production; a drop that follows a
short-lived connection is *meant* to wait longer (backoff). Baseline printed alongside: the time for a fresh
event to arrive on a healthy socket (publish -> receive).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from gcbridge.genesys import ClientOptions, Event, NotificationClient
from gcbridge.sim.genesys import GenesysSim, SimConfig

TOPIC = "v2.users.0a1b2c3d-0000-4000-8000-000000000002.presence"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(drops: int) -> None:
    sim = GenesysSim(SimConfig())
    await sim.start("127.0.0.1", 0)
    opts = ClientOptions()
    loop = asyncio.get_running_loop()
    recovery: list[float] = []
    baseline: list[float] = []
    seen: set[int] = set()
    arrived = asyncio.Event()
    cfg = sim.config
    async with NotificationClient(
        base_url=sim.base_url, client_id=cfg.client_id, client_secret=cfg.client_secret, options=opts
    ) as client:
        await client.subscribe([TOPIC])

        async def consume() -> None:
            async for item in client:
                if isinstance(item, Event):
                    seen.add(int(item.metadata["simSequence"]))
                    arrived.set()

        consumer = loop.create_task(consume())

        async def first_arrival() -> float:
            mine: set[int] = set()
            while True:
                arrived.clear()
                mine.add(sim.publish(TOPIC))
                try:
                    async with asyncio.timeout(0.002):
                        await arrived.wait()
                except TimeoutError:
                    pass
                if mine & seen:
                    return loop.time()

        for i in range(drops):
            t0 = loop.time()
            await first_arrival()
            baseline.append(loop.time() - t0)
            await asyncio.sleep(opts.healthy_period + 0.5)
            t0 = loop.time()
            await sim.drop_socket()
            t1 = await first_arrival()
            recovery.append(t1 - t0)
            print(f"drop {i + 1}: recovered in {recovery[-1] * 1000:.1f} ms")
        # a gap is reported when the replacement subscription is confirmed, which can come just after the
        # first event on a reused channel: let the last one land before counting
        await asyncio.sleep(1.0)
        stats = client.stats()
        consumer.cancel()
    await sim.stop()
    print(
        f"\nrecovery over {drops} drops: p50 {statistics.median(recovery) * 1000:.1f} ms, "
        f"p99 {pct(recovery, 0.99) * 1000:.1f} ms, max {max(recovery) * 1000:.1f} ms (target p99 < 1000 ms)"
    )
    print(
        f"baseline (healthy socket, publish -> receive): p50 {statistics.median(baseline) * 1000:.2f} ms, "
        f"p99 {pct(baseline, 0.99) * 1000:.2f} ms"
    )
    print(f"gaps reported: {stats.gaps}, reconnects: {stats.reconnects_by_reason}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drops", type=int, default=20)
    asyncio.run(main(ap.parse_args().drops))
