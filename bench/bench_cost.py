"""Steady-state cost: CPU (percent of one core) and RSS of ``gcbridge run`` at 0, 50 and 500 events/s, and of
the notification client alone holding 12,000 topics on 12 channels with no traffic.

    .venv/bin/python bench/bench_cost.py                     # ~5 minutes
    .venv/bin/python bench/bench_cost.py --warmup 5 --window 10 --rates 0 50

Everything is read from ``/proc/<pid>`` of the measured process (user + system time of all its threads over a
window after a warm-up; resident set size sampled every second). Side by side in the same run:

* ``gcbridge run`` (product defaults, built-in mapping, SQLite outbox with ``synchronous = FULL``) against
  the simulators (ServiceNow answering after ``--sn-latency``), one process through all the rates in turn;
* the bare forwarder of ``bench_latency.py`` (client, mapping, bare Import Set POSTs; no outbox) at the same
  rates: what the service costs above the least that does the job;
* ``NotificationClient`` with ``--topics`` topics (1,000 a channel) and no traffic, beside a bare loop that
  holds the same number of plain aiohttp WebSockets open on the same simulator (channels made by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from _service import (
    GENESYS_CLIENT,
    GENESYS_SECRET,
    Cost,
    genesys_sim,
    load_average,
    measure_cost,
    presence_topics,
    queue_topics,
    running_bridge,
    write_config,
)
from bench_delivery import simulator
from bench_latency import traffic_topics

from gcbridge.genesys import ClientOptions, NotificationClient
from gcbridge.sim.genesys import GenesysSim

BENCH = Path(__file__).resolve().parent


def line(label: str, rate: float | None, cost: Cost, load: str) -> str:
    shown = "  idle " if rate is None else f"{rate:5.0f}/s"
    return (
        f"{label:42} {shown}  cpu {cost.cpu_percent:6.2f} % of a core  rss {cost.rss_mib:7.1f} MiB "
        f"(max {cost.rss_max_mib:.1f})  wake-ups {cost.wakeups:7.1f}/s  load {load}"
    )


async def child(*args: str) -> asyncio.subprocess.Process:
    """A measured child process that prints ``ready`` once set up and runs until its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 300)
    if first.strip() != b"ready":
        raise RuntimeError(f"{args[0]} did not start: {first!r}")
    return proc


async def finish(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def through_rates(
    sim: GenesysSim, pid: int, traffic: list[str], args: argparse.Namespace
) -> list[tuple[float, Cost, str]]:
    results = []
    for rate in args.rates:
        if rate > 0:
            sim.start_traffic(rate, traffic)
        try:
            await asyncio.sleep(args.warmup)
            cost = await measure_cost(pid, args.window)
        finally:
            await sim.stop_traffic()
        results.append((rate, cost, load_average()))
    return results


async def service_costs(args: argparse.Namespace) -> list[str]:
    queues, users = queue_topics(args.queues), presence_topics(args.users)
    topics, traffic = queues + users, traffic_topics(queues, users)
    sim = await genesys_sim()
    out = []
    try:
        async with simulator(args.sn_latency) as sn_url:
            with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
                config = write_config(Path(tmp), sim.base_url, sn_url, topics, with_sequence=False)
                async with running_bridge(config) as bridge:
                    for rate, cost, load in await through_rates(sim, bridge.pid, traffic, args):
                        out.append(line("gcbridge run", rate, cost, load))
                        print(out[-1], flush=True)
                    if not await bridge.wait_drained(args.window):
                        out.append("  (gcbridge run: outbox not drained after the last rate)")
                topics_file = Path(tmp) / "topics.txt"
                forwarder = await child(
                    str(BENCH / "bench_latency.py"),
                    "--bare-forwarder",
                    sim.base_url,
                    sn_url,
                    str(topics_file),
                    str(args.concurrency),
                )
                try:
                    for rate, cost, load in await through_rates(sim, forwarder.pid, traffic, args):
                        out.append(line("bare forwarder (baseline)", rate, cost, load))
                        print(out[-1], flush=True)
                finally:
                    await finish(forwarder)
    finally:
        await sim.stop()
    return out


# ---- the client alone: many topics, no traffic ------------------------------------------------------------


async def hold_client(base_url: str, topics: list[str]) -> None:
    options = ClientOptions(max_topics_per_channel=1000)
    async with NotificationClient(
        base_url=base_url, client_id=GENESYS_CLIENT, client_secret=GENESYS_SECRET, options=options
    ) as client:
        await client.subscribe(topics)

        async def drain() -> None:
            async for _ in client:
                pass

        consumer = asyncio.create_task(drain())
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        consumer.cancel()


async def hold_bare(base_url: str, topics: list[str], per_channel: int = 1000) -> None:
    """The same topics on plain aiohttp WebSockets: token, channels and subscriptions by hand, then one
    ``receive()`` loop per socket. No health checks, no rotation, no reconnection."""
    async with aiohttp.ClientSession() as http:
        basic = {"Authorization": aiohttp.encode_basic_auth(GENESYS_CLIENT, GENESYS_SECRET)}
        async with http.post(
            f"{base_url}/oauth/token", data={"grant_type": "client_credentials"}, headers=basic
        ) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        sockets = []
        for start in range(0, len(topics), per_channel):
            async with http.post(f"{base_url}/api/v2/notifications/channels", headers=headers) as response:
                channel: dict[str, Any] = await response.json()
            sockets.append(await http.ws_connect(channel["connectUri"]))
            body = [{"id": t} for t in topics[start : start + per_channel]]
            async with http.put(
                f"{base_url}/api/v2/notifications/channels/{channel['id']}/subscriptions",
                json=body,
                headers=headers,
            ) as response:
                response.raise_for_status()

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for _ in ws:
                pass

        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()


async def client_costs(args: argparse.Namespace) -> list[str]:
    sim = await genesys_sim()
    out = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
            topics_file = Path(tmp) / "topics.txt"
            topics_file.write_text("\n".join(presence_topics(args.topics)))
            for mode, label in (
                ("--hold-client", f"NotificationClient, {args.topics:,} topics"),
                ("--hold-bare", f"bare aiohttp sockets, {args.topics:,} topics"),
            ):
                proc = await child(__file__, mode, sim.base_url, str(topics_file))
                try:
                    channels = len(sim.connected_channel_ids)
                    await asyncio.sleep(args.warmup)
                    cost = await measure_cost(proc.pid, args.client_window)
                finally:
                    await finish(proc)
                out.append(line(f"{label} on {channels} channels", None, cost, load_average()))
                print(out[-1], flush=True)
    finally:
        await sim.stop()
    return out


async def main(args: argparse.Namespace) -> None:
    print(f"cpu count {os.cpu_count()}; load average at start {load_average()}", flush=True)
    lines = []
    if args.rates:
        lines += await service_costs(args)
    if args.topics > 0:
        lines += await client_costs(args)
    print(
        f"\nsummary (warm-up {args.warmup:g} s, window {args.window:g} s, client window "
        f"{args.client_window:g} s, ServiceNow {1000 * args.sn_latency:.0f} ms per request):"
    )
    print("\n".join(lines))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[0.0, 50.0, 500.0], help="events per second"
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before each window")
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds per rate")
    parser.add_argument("--client-window", type=float, default=60.0, help="measured seconds, client alone")
    parser.add_argument("--sn-latency", type=float, default=0.05, help="ServiceNow response time (s)")
    parser.add_argument("--concurrency", type=int, default=32, help="the bare forwarder's POSTs in flight")
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--topics", type=int, default=12_000, help="topics of the client alone (0: skip)")
    parser.add_argument("--hold-client", nargs=2, metavar=("GENESYS", "TOPICS"), help=argparse.SUPPRESS)
    parser.add_argument("--hold-bare", nargs=2, metavar=("GENESYS", "TOPICS"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.hold_client:
        url, path = options.hold_client
        asyncio.run(hold_client(url, Path(path).read_text().split()))
    elif options.hold_bare:
        url, path = options.hold_bare
        asyncio.run(hold_bare(url, Path(path).read_text().split()))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(options))
