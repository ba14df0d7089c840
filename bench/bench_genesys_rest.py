"""Genesys REST layer benchmark: NotificationsApi (token manager, retries, parsing) next to bare aiohttp.

Both run the same ``GET /api/v2/notifications/channels`` against the in-process simulator on loopback with the
same concurrency; the baseline sends a fixed bearer token and does not parse the body. A second pass revokes
the token first, so that every call of the burst meets a 401: it shows the cost of the renewal and that it
takes exactly one token request.

    .venv/bin/python bench/bench_genesys_rest.py                       # 3,000 calls, concurrency 100
    .venv/bin/python bench/bench_genesys_rest.py --calls 10000 --concurrency 200
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.regions import hosts_for_base_url
from gcbridge.genesys.rest import NotificationsApi, new_session
from gcbridge.secrets import Secret
from gcbridge.sim.genesys import GenesysSim, SimConfig


async def run_limited(n: int, concurrency: int, call: object) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - start


async def main(calls: int, concurrency: int) -> None:
    sim = GenesysSim(SimConfig(api_rate_limit_per_min=None))
    base_url = await sim.start("127.0.0.1", 0)
    hosts = hosts_for_base_url(base_url)
    async with new_session(limit=concurrency) as session:
        tokens = TokenManager(
            session, hosts.token_url, sim.config.client_id, Secret(sim.config.client_secret)
        )
        api = NotificationsApi(session, hosts.api_base, tokens)
        await api.create_channel()
        bearer = {"Authorization": f"Bearer {(await tokens.get()).value.reveal()}"}
        url = hosts.api_base + "/api/v2/notifications/channels"

        async def bare() -> None:
            async with session.get(url, headers=bearer) as resp:
                await resp.read()
                assert resp.status == 200

        async def product() -> None:
            await api.list_channels()

        await run_limited(200, concurrency, bare)  # warm up connections
        base_s = await run_limited(calls, concurrency, bare)
        prod_s = await run_limited(calls, concurrency, product)
        print(f"calls={calls} concurrency={concurrency} (loopback, simulator in the same process)")
        print(f"  bare aiohttp GET       {calls / base_s:10.0f} calls/s")
        ratio = prod_s / base_s
        print(f"  NotificationsApi       {calls / prod_s:10.0f} calls/s   ({ratio:.2f}x the bare time)")

        before = sim.token_requests
        sim.revoke_token()
        storm_s = await run_limited(calls, concurrency, product)
        print(
            f"  after a revoke, a burst of {calls} calls: {calls / storm_s:10.0f} calls/s, "
            f"token requests: {sim.token_requests - before}, tokens discarded: {tokens.stats.invalidations}"
        )
        await tokens.aclose()
    await sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.concurrency))
