"""Receive throughput: NotificationClient vs a bare aiohttp + orjson receive loop, same simulator, same run.

    .venv/bin/python bench/bench_receive.py [--events 30000] [--rounds 3]

Each round publishes a burst of ~1 KB events into the simulator's socket buffer and times how long the
receiver takes to drain it: the bare loop only parses JSON; the client also classifies, de-duplicates
(canonical JSON + blake2b), builds Events and passes them through its queue to an ``async for``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

import aiohttp
import orjson

from gcbridge.genesys import ClientOptions, Event, NotificationClient
from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.rest import NotificationsApi, new_session
from gcbridge.sim.genesys import GenesysSim, SimConfig

TOPIC = "v2.users.0a1b2c3d-0000-4000-8000-000000000001.presence"


def burst(sim: GenesysSim, n: int, base: int) -> None:
    # The simulator's ledger keeps every published event; left alone, the collector's full passes over it
    # land at random in one side's measurement. Same hygiene for both sides: empty it, freeze the survivors.
    sim.ledger.clear()
    gc.collect()
    gc.freeze()
    pad = "x" * 900
    for i in range(n):
        body = {"id": base + i, "presenceDefinition": {"systemPresence": "Available"}, "pad": pad}
        sim.publish(TOPIC, body)


async def bare(sim: GenesysSim, n: int, base: int) -> float:
    async with new_session() as session:
        cfg = sim.config
        tm = TokenManager(session, sim.base_url + "/oauth/token", cfg.client_id, cfg.client_secret)
        api = NotificationsApi(session, sim.base_url, tm)
        ch = await api.create_channel()
        ws = await session.ws_connect(ch.connect_uri, compress=0, autoping=True, max_msg_size=16 * 2**20)
        await api.put_subscriptions(ch.id, [TOPIC])
        burst(sim, n, base)
        t0 = time.perf_counter()
        got = 0
        while got < n:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket ended: {msg.type}")
            data = orjson.loads(msg.data)
            if data.get("topicName") == TOPIC:
                got += 1
        elapsed = time.perf_counter() - t0
        await ws.close()
        await tm.aclose()
    return n / elapsed


async def client(sim: GenesysSim, n: int, base: int) -> float:
    opts = ClientOptions(queue_size=n + 10)
    cfg = sim.config
    async with NotificationClient(
        base_url=sim.base_url, client_id=cfg.client_id, client_secret=cfg.client_secret, options=opts
    ) as c:
        await c.subscribe([TOPIC])
        burst(sim, n, base)
        t0 = time.perf_counter()
        got = 0
        async for item in c:
            if isinstance(item, Event):
                got += 1
                if got == n:
                    break
        elapsed = time.perf_counter() - t0
    return n / elapsed


async def main(events: int, rounds: int) -> None:
    sim = GenesysSim(SimConfig(max_channels_per_client=20))
    await sim.start("127.0.0.1", 0)
    best_bare = best_client = 0.0
    ratios: list[float] = []
    base = 0
    try:
        for r in range(rounds):
            b = await bare(sim, events, base)
            base += events
            c = await client(sim, events, base)
            base += events
            best_bare, best_client = max(best_bare, b), max(best_client, c)
            ratios.append(c / b)
            print(f"round {r + 1}: bare {b:,.0f} msg/s   client {c:,.0f} msg/s   ratio {c / b:.2f}")
    finally:
        await sim.stop()
    print(
        f"best of {rounds}: bare {best_bare:,.0f} msg/s, client {best_client:,.0f} msg/s, "
        f"client/bare {best_client / best_bare:.2f}; median per-round ratio {statistics.median(ratios):.2f} "
        "(target >= 0.80)"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.events, args.rounds))
