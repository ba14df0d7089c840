"""ServiceNow simulator benchmark: how fast the simulator answers, next to a bare aiohttp server.

Same client, same concurrency, same run. The baseline is an aiohttp server that answers every POST with a
fixed 201 JSON body (the transport's ceiling); the simulator runs the real pipeline (auth, pool, session,
rate-limit check, transform with coalescing). A second simulator pass starts with 20,000 existing interactions
to show that coalescing does not slow down as the target table grows (the lookup is indexed).

    .venv/bin/python bench/bench_sim_servicenow.py                      # 3,000 rows, concurrency 50
    .venv/bin/python bench/bench_sim_servicenow.py --rows 10000 --concurrency 100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from gcbridge.sim.servicenow import ServiceNowSim, SnSimConfig

STAGE = "/api/now/import/u_genesys_interaction_import"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"bench:bench-pass").decode()}
CANNED = b'{"import_set":"ISET0010001","staging_table":"x","result":[{"status":"inserted"}]}'


async def run_limited(n: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - start


async def bare_server() -> tuple[web.AppRunner, str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=CANNED, content_type="application/json")

    app = web.Application()
    app.router.add_post(STAGE, answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def post_rows(session: aiohttp.ClientSession, url: str, rows: int, concurrency: int) -> float:
    async def post(i: int) -> None:
        # Each conversation is written twice (insert, then update): coalescing is on the hot path.
        row = {
            "u_conversation_id": f"conv-{i // 2}",
            "u_state": "queued" if i % 2 == 0 else "closed_complete",
        }
        async with session.post(url, json=row, headers=AUTH) as resp:
            await resp.read()
            assert resp.status == 201, resp.status

    return await run_limited(rows, concurrency, post)


async def main(rows: int, concurrency: int) -> None:
    config = SnSimConfig(users={"bench": "bench-pass"}, concurrency=concurrency, queue=concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        runner, bare_url = await bare_server()
        try:
            baseline = await post_rows(session, bare_url + STAGE, rows, concurrency)
        finally:
            await runner.cleanup()

        results: list[tuple[str, float]] = [("bare aiohttp, canned 201 (baseline)", baseline)]
        for existing in (0, 20_000):
            sim = ServiceNowSim(config)
            for i in range(existing):
                sim.state.store.insert("interaction", {"correlation_id": f"old-{i}"}, "bench", 0.0)
            base_url = await sim.start("127.0.0.1", 0)
            try:
                elapsed = await post_rows(session, base_url + STAGE, rows, concurrency)
            finally:
                await sim.stop()
            results.append((f"simulator, Import Set row, {existing:,} existing records", elapsed))

    print(f"{rows:,} POSTs, concurrency {concurrency}")
    for label, elapsed in results:
        print(f"  {label:<55} {rows / elapsed:>8,.0f} rows/s  ({elapsed:.2f} s)")
    print(f"  simulator / baseline: {baseline / results[1][1]:.0%} of the bare transport rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.concurrency))
