"""Delivery benchmark: outbox -> ServiceNow writer -> ServiceNow simulator, with and without coalescing.

A burst: ``--conversations`` conversations, each updated ``--updates`` times (conversation events carry the
whole conversation, so only the newest pending update of a conversation needs writing). The events are
stored in a SQLite outbox first, then the dispatcher drains them into the simulator through the Import Set
sink (coalescing on the conversation id in the transform map). Three rows are printed side by side:

* ``raw POST (baseline)``: bare aiohttp POSTs of the same rows to the Import Set API at the same concurrency,
  no outbox, no mapping: the physical limit of the simulator and loopback on this machine;
* ``outbox, coalesce off``: every stored update is written (one Import Set request per event);
* ``outbox, coalesce on``: the dispatcher collapses each conversation's pending run of updates to the newest.

Rates are events taken off the outbox per wall-clock second (a superseded event counts as handled). The
simulator runs in its own process (``gcbridge sim servicenow``) so it does not share this event loop;
``--latency`` adds a per-request processing delay there to stand in for a real instance's round trip.

    .venv/bin/python bench/bench_delivery.py                          # 200 conversations x 10 updates
    .venv/bin/python bench/bench_delivery.py --latency 0.05 --conversations 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from gcbridge.bridge.mapping import Record, compile_mapping, event_to_outbox_item, view_from_payload
from gcbridge.bridge.router import ServiceNowSection, build_router
from gcbridge.genesys.events import Event
from gcbridge.outbox import Dispatcher, OutboxItem, SqliteOutbox
from gcbridge.servicenow import BasicAuthConfig, create_session
from gcbridge.sim.processes import simulator_process

TOPIC = "v2.routing.queues.q-1.conversations"
STATES = ("alerting", "connected", "connected", "connected", "disconnected")


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    requests: int
    records: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@contextlib.asynccontextmanager
async def simulator(latency: float) -> AsyncIterator[str]:
    """``gcbridge sim servicenow`` in a child process; its base URL once it listens."""
    async with simulator_process(
        "servicenow",
        "--port",
        "0",  # the simulator picks a free port and prints it: no window for another process to take it
        "--user",
        "admin:admin-pass",
        "--delay",
        str(latency),
        "--concurrency",
        "64",
        "--queue",
        "1024",
        stop_with=signal.SIGTERM,
        stderr=asyncio.subprocess.DEVNULL,
        ready_within=120.0,
        stop_within=10.0,
    ) as command:
        # localhost, not 127.0.0.1: the cookie-jar trap only shows with a host name (see the writer's docs)
        yield command.base_url.replace("127.0.0.1", "localhost")


def burst(prefix: str, conversations: int, updates: int) -> list[OutboxItem]:
    """``updates`` events per conversation, interleaved as they would arrive."""
    mapping = compile_mapping()
    items = []
    for u in range(updates):
        state = (
            STATES[min(u * len(STATES) // updates, len(STATES) - 1)] if u < updates - 1 else "disconnected"
        )
        for c in range(conversations):
            conv = f"{prefix}-{c:06d}"
            body = {
                "id": conv,
                "participants": [
                    {
                        "purpose": "customer",
                        "address": "tel:+15550100",
                        "connectedTime": "2024-03-01T10:00:00Z",
                        "calls": [{"state": state, "direction": "inbound"}],
                    },
                    {
                        "purpose": "agent",
                        "userId": "u-1",
                        "queueId": "q-1",
                        "name": "Agent",
                        "calls": [{"state": state}],
                        "sequence": u,
                    },
                ],
            }
            event = Event(TOPIC, body, "2", {}, f"{conv}-{u}", time.time())
            item = event_to_outbox_item(event, mapping)
            assert item is not None
            items.append(item)
    return items


async def count_records(session: aiohttp.ClientSession, url: str, prefix: str) -> int:
    params = {"sysparm_query": f"correlation_idSTARTSWITH{prefix}-", "sysparm_fields": "sys_id"}
    auth = {"Authorization": aiohttp.encode_basic_auth("admin", "admin-pass"), "Accept": "application/json"}
    async with session.get(url + "/api/now/table/interaction", params=params, headers=auth) as response:
        data: Any = await response.json()
    return len(data["result"])


async def request_count(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/_sim/state") as response:
        data: Any = await response.json()
    return int(data.get("requests", 0)) if isinstance(data, dict) else 0


async def run_outbox(
    url: str, prefix: str, items: list[OutboxItem], coalesce: bool, concurrency: int
) -> Result:
    config = ServiceNowSection(
        instance_url=url,
        auth=BasicAuthConfig(username="admin", password=SecretStr("admin-pass")),
        concurrency=concurrency,
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteOutbox.open(Path(tmp) / "outbox.db", synchronous="NORMAL")
        await store.put_many(items)
        async with create_session() as session:
            router = build_router(config, session)
            dispatcher = Dispatcher(
                store,
                router,
                concurrency=concurrency,
                batch=64,
                coalesce=coalesce,
                idle_poll=0.05,
                housekeeping_interval=0,
            )
            before = await request_count(session, url)
            started = time.perf_counter()
            task = asyncio.create_task(dispatcher.run())
            while True:
                stats = await store.stats(time.time())
                if stats.pending == 0 and stats.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            seconds = time.perf_counter() - started
            await dispatcher.drain(5)
            await task
            requests = await request_count(session, url) - before
            records = await count_records(session, url, prefix)
            await router.close()
        stats = await store.stats(time.time())
        await store.close()
    if stats.dead:
        raise RuntimeError(f"{stats.dead} rows were dead-lettered")
    name = f"outbox, coalesce {'on' if coalesce else 'off'}"
    return Result(name, len(items), seconds, requests, records)


async def run_raw(url: str, prefix: str, items: list[OutboxItem], concurrency: int) -> Result:
    """Bare POSTs of the mapped rows (mapping done beforehand, not timed)."""
    mapping = compile_mapping()
    rows = []
    for item in items:
        record = mapping.map_event(view_from_payload(item.payload))
        assert isinstance(record, Record)
        rows.append(record.fields)
    headers = {
        "Authorization": aiohttp.encode_basic_auth("admin", "admin-pass"),
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    async with create_session() as session:
        before = await request_count(session, url)

        async def worker() -> None:
            while not queue.empty():
                row = queue.get_nowait()
                async with session.post(
                    url + "/api/now/import/u_genesys_interaction_import", json=row, headers=headers
                ) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        requests = await request_count(session, url) - before
        records = await count_records(session, url, prefix)
    return Result("raw POST (baseline)", len(items), seconds, requests, records)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--updates", type=int, default=10, help="updates per conversation in the burst")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (writer and baseline)")
    parser.add_argument("--latency", type=float, default=0.0, help="simulated instance processing time (s)")
    args = parser.parse_args()
    async with simulator(args.latency) as url:
        results = [
            await run_raw(url, "raw", burst("raw", args.conversations, args.updates), args.concurrency),
            await run_outbox(
                url, "off", burst("off", args.conversations, args.updates), False, args.concurrency
            ),
            await run_outbox(
                url, "on", burst("on", args.conversations, args.updates), True, args.concurrency
            ),
        ]
    print(
        f"burst: {args.conversations} conversations x {args.updates} updates = "
        f"{args.conversations * args.updates} events; concurrency {args.concurrency}; "
        f"simulated instance latency {args.latency * 1000:.0f} ms"
    )
    print(f"{'':24} {'events/s':>10} {'seconds':>9} {'SN requests':>12} {'records':>8}")
    for r in results:
        print(f"{r.name:24} {r.rate:10.0f} {r.seconds:9.2f} {r.requests:12d} {r.records:8d}")
    wrong = [r.name for r in results if r.records != args.conversations]
    if wrong:
        raise SystemExit(f"expected one record per conversation ({args.conversations}), not so for: {wrong}")
    base = results[0].rate
    for r in results[1:]:
        print(f"{r.name}: {r.rate / base:.2f}x the raw-POST baseline")


if __name__ == "__main__":
    asyncio.run(main())
