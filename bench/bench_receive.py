"""Receive throughput: NotificationClient vs a bare aiohttp + orjson receive loop, same simulator, same run.

    .venv/bin/python bench/bench_receive.py [--events 5000] [--rounds 100] [--verbose]

The simulator runs in a child process, so the measured process does nothing but receive. Each round, for
each side (in a different order each round), the child writes a burst of ~1.1 KB events into the
receiver's socket and the receiver times how long it takes to drain it: the bare loop reads each message
with ``ws.receive()`` and parses it with ``orjson.loads``; the client also classifies frames, keeps socket
health, de-duplicates, builds Events and hands them to an ``async for``. Both sides connect with the same
socket options. Printed: per side, the median and quartiles of the per-round rate ratios to bare (by wall
clock and by CPU time of this process: what the receiver itself costs), the ratio of the best rounds, and
the CPU time per event (and above bare); ``--verbose`` prints every round. Many short rounds, because a shared
machine can run one round at half or double the speed of the next: the median of 100 paired rounds is
steady where that of 20 long ones was not.

``--in-memory`` feeds both loops prepared frames through a stand-in socket instead (no kernel, no simulator):
the per-event CPU cost of the client's own work, with far less noise, for profiling the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import itertools
import multiprocessing
import random
import statistics
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import orjson

from gcbridge.genesys import ClientOptions, Event, NotificationClient
from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.rest import NotificationsApi, new_session
from gcbridge.genesys.socket import open_socket

# one topic per side, so that a burst goes to one side only
BARE_TOPIC = "v2.users.0a1b2c3d-0000-4000-8000-000000000001.presence"
CLIENT_TOPIC = "v2.users.0a1b2c3d-0000-4000-8000-000000000002.presence"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"


# == the simulator's process ===========================================================================
def _serve(ready: Any) -> None:
    asyncio.run(_serve_async(ready))


async def _serve_async(ready: Any) -> None:
    from aiohttp import web

    from gcbridge.sim.genesys import GenesysSim, SimConfig

    sim = GenesysSim(SimConfig(max_channels_per_client=20, client_id=CLIENT_ID, client_secret=CLIENT_SECRET))
    base_url = await sim.start("127.0.0.1", 0)
    stop = asyncio.Event()
    pad = "x" * 900

    async def burst(request: web.Request) -> web.Response:
        topic, n, base = request.query["topic"], int(request.query["n"]), int(request.query["base"])
        sim.ledger.clear()
        for i in range(n):
            sim.publish(
                topic, {"id": base + i, "presenceDefinition": {"systemPresence": "Available"}, "pad": pad}
            )
        return web.Response(text="ok")

    async def quit_(request: web.Request) -> web.Response:
        stop.set()
        return web.Response(text="bye")

    control = web.Application()
    control.router.add_post("/burst", burst)
    control.router.add_post("/quit", quit_)
    runner = web.AppRunner(control)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ready.send((base_url, f"http://127.0.0.1:{port}"))
    await stop.wait()
    await runner.cleanup()
    await sim.stop()


def _post(control: str, path: str) -> None:
    """A blocking POST to the simulator's control port (blocking on purpose: see ``_timed``)."""
    host, port = urllib.parse.urlsplit(control).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        conn.request("POST", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"simulator control answered {response.status}")
    finally:
        conn.close()


# == the measured process ==============================================================================
Drain = Callable[[int], Awaitable[None]]


async def _timed(burst: Callable[[], None], drain: Drain, n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to drain one burst; the collector is settled first, the same for both."""
    burst()  # blocks the loop: neither side reads a byte before the clock starts
    gc.collect()
    gc.freeze()
    w0, c0 = time.perf_counter(), time.process_time()
    await drain(n)
    return time.perf_counter() - w0, time.process_time() - c0


def _bare_drain(ws: aiohttp.ClientWebSocketResponse) -> Drain:
    async def drain(n: int) -> None:
        got = 0
        receive, loads, text = ws.receive, orjson.loads, aiohttp.WSMsgType.TEXT
        while got < n:
            msg = await receive()
            if msg.type is not text:
                raise RuntimeError(f"socket ended: {msg.type}")
            if loads(msg.data).get("topicName") == BARE_TOPIC:
                got += 1

    return drain


def _client_drain(client: NotificationClient) -> Drain:
    """``async for item in client``: one item at a time."""

    async def drain(n: int) -> None:
        got = 0
        async for item in client:
            if type(item) is Event:
                got += 1
                if got == n:
                    break

    return drain


def _batch_drain(client: NotificationClient) -> Drain:
    """``async for batch in client.batches()``: everything that arrived since the previous batch."""

    async def drain(n: int) -> None:
        got = 0
        async for batch in client.batches():
            for item in batch:
                if type(item) is Event:
                    got += 1
            if got >= n:
                break

    return drain


async def subscribed_socket(
    session: aiohttp.ClientSession, api: NotificationsApi, topic: str
) -> aiohttp.ClientWebSocketResponse:
    """A new channel subscribed to ``topic`` and a socket on it, opened with the client's socket options (so
    every receiver reads the same frames the same way)."""
    channel = await api.create_channel()
    ws = await open_socket(
        session, channel.connect_uri, connect_timeout=10.0, close_timeout=10.0, max_size=16 << 20
    )
    await api.put_subscriptions(channel.id, [topic])
    return ws


Burst = Callable[[str], Callable[[], None]]


@contextlib.contextmanager
def simulator(events: int) -> Iterator[tuple[str, Burst]]:
    """The simulator in a child process. Yields its base URL and ``burst``: ``burst(topic)`` is a function
    that has it write ``events`` new events on ``topic`` (blocking the loop on purpose: see ``_timed``)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    base_url, control = parent.recv()
    base = 0

    def burst(topic: str) -> Callable[[], None]:
        def run() -> None:
            nonlocal base
            _post(control, "/burst?" + urllib.parse.urlencode({"topic": topic, "n": events, "base": base}))
            base += events

        return run

    try:
        yield base_url, burst
    finally:
        _post(control, "/quit")
        proc.join(10)


async def main(events: int, rounds: int, verbose: bool = False) -> None:
    # per round and side: (wall seconds, CPU seconds)
    rows: list[dict[str, tuple[float, float]]] = []
    opts = ClientOptions(queue_size=events + 10)
    with simulator(events) as (base_url, burst):
        async with (
            new_session() as session,
            NotificationClient(
                base_url=base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, options=opts
            ) as client,
        ):
            tm = TokenManager(session, base_url + "/oauth/token", CLIENT_ID, CLIENT_SECRET)
            api = NotificationsApi(session, base_url, tm)
            ws = await subscribed_socket(session, api, BARE_TOPIC)
            await client.subscribe([CLIENT_TOPIC])
            sides = {
                "bare": (burst(BARE_TOPIC), _bare_drain(ws)),
                "items": (burst(CLIENT_TOPIC), _client_drain(client)),
                "batches": (burst(CLIENT_TOPIC), _batch_drain(client)),
            }
            # the orders of the sides in turn, shuffled: no side always follows another (a side's drain leaves
            # the allocator and the collector in a state the next one inherits)
            orders = list(itertools.permutations(sides))
            random.Random(0).shuffle(orders)  # so that fewer rounds than orders still take a fair sample
            for r in range(-1, rounds):  # round -1 warms up (first connections) and is not counted
                got: dict[str, tuple[float, float]] = {}
                for name in orders[r % len(orders)]:
                    got[name] = await _timed(*sides[name], events)
                if r < 0:
                    continue
                rows.append(got)
                if verbose:
                    rate = {name: (events / w, events / c) for name, (w, c) in got.items()}
                    bw, bc = rate["bare"]
                    print(
                        f"round {r + 1}: msg/s (wall, cpu) bare {bw:,.0f} {bc:,.0f}"
                        + "".join(
                            f" | {name} {rate[name][0]:,.0f} {rate[name][1]:,.0f}"
                            f" ratio {rate[name][0] / bw:.2f} {rate[name][1] / bc:.2f}"
                            for name in ("items", "batches")
                        ),
                        flush=True,
                    )
            await ws.close()
            await tm.aclose()
    _report(rows, events)


def _report(rows: list[dict[str, tuple[float, float]]], events: int) -> None:
    """Per side: the median of the per-round rate ratios to bare with their quartiles (a noisy machine
    swings single rounds by 2x either way), the ratio of the best rounds, and the CPU nanoseconds per event
    each side spends above bare."""

    def quartiles(values: list[float]) -> tuple[float, float, float]:
        if len(values) < 2:  # --rounds 1
            return values[0], values[0], values[0]
        q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return q1, q2, q3

    def best(name: str) -> float:
        return max(events / row[name][0] for row in rows)

    print(f"{len(rows)} rounds of {events:,} events; best wall msg/s: bare {best('bare'):,.0f}")
    for name, label in (
        ("items", "client, async for item in client"),
        ("batches", "client, async for batch in client.batches()"),
    ):
        wall = quartiles([row["bare"][0] / row[name][0] for row in rows])
        cpu = quartiles([row["bare"][1] / row[name][1] for row in rows])
        extra = statistics.median((row[name][1] - row["bare"][1]) / events * 1e9 for row in rows)
        per_event = statistics.median(row[name][1] / events * 1e9 for row in rows)
        print(
            f"  {label}: best wall msg/s {best(name):,.0f}, ratio of bests {best(name) / best('bare'):.2f}\n"
            f"    median per-round ratio to bare: wall {wall[1]:.2f} "
            f"(quartiles {wall[0]:.2f}-{wall[2]:.2f}), "
            f"cpu {cpu[1]:.2f} (quartiles {cpu[0]:.2f}-{cpu[2]:.2f}); "
            f"cpu per event: {per_event:,.0f} ns, above bare: {extra:,.0f} ns"
        )


# == --in-memory: per-event cost without sockets ======================================================
class _MemorySocket:
    """Stands in for the WebSocket: hands out prepared frames and lets the loop run every 230 frames (what
    one 256 KB socket read holds), as a real socket does."""

    closed = False

    def __init__(self, frames: list[aiohttp.WSMessage]) -> None:
        self._frames = iter(frames)
        self._count = 0
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(self) -> aiohttp.WSMessage:
        self._count += 1
        if not self._count % 230:
            await asyncio.sleep(0)
        msg = next(self._frames, None)
        if msg is None:
            await self._never
            raise AssertionError("unreachable")
        return msg


def _memory_frames(topic: str, n: int) -> list[aiohttp.WSMessage]:
    pad = "x" * 900
    frames = []
    for i in range(n):
        body = {"id": i, "presenceDefinition": {"systemPresence": "Available"}, "pad": pad}
        frame = {
            "topicName": topic,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": f"c-{i}"},
        }
        frames.append(aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, orjson.dumps(frame).decode(), None))
    return frames


async def _memory_client(frames: list[aiohttp.WSMessage], n: int, batches: bool = False) -> float:
    # Private parts on purpose: this drives the client's real per-frame loop (``_read``) without a socket.
    from gcbridge.core.health import HealthMonitor
    from gcbridge.genesys.client import _Socket

    client = NotificationClient(
        base_url="http://127.0.0.1:9", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    client.core.planner.add([CLIENT_TOPIC])
    now = time.monotonic()
    health = HealthMonitor(now, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    sock = _Socket(1, (0, 0), "memory", _MemorySocket(frames), health, now)  # type: ignore[arg-type]
    c0 = time.process_time()
    reader = asyncio.get_running_loop().create_task(client._read(sock))
    await (_batch_drain if batches else _client_drain)(client)(n)
    elapsed = time.process_time() - c0
    client._closed = True
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return elapsed


async def _memory_bare(frames: list[aiohttp.WSMessage], n: int) -> float:
    c0 = time.process_time()
    await _bare_drain(_MemorySocket(frames))(n)  # type: ignore[arg-type]
    return time.process_time() - c0


async def _memory_batches(frames: list[aiohttp.WSMessage], n: int) -> float:
    return await _memory_client(frames, n, batches=True)


async def in_memory(events: int, rounds: int) -> None:
    """CPU nanoseconds per event of the loops on prepared frames: no kernel, no simulator, little noise."""
    runs = {"bare": _memory_bare, "client": _memory_client, "batches": _memory_batches}
    ns: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            frames = _memory_frames(BARE_TOPIC if name == "bare" else CLIENT_TOPIC, events)
            gc.collect()
            gc.freeze()
            ns[name].append(await runs[name](frames, events) / events * 1e9)
            gc.unfreeze()
    b, c, cb = (min(ns[name]) for name in runs)
    print(
        f"in memory, best of {rounds} rounds of {events:,} events: bare {b:,.0f} ns/event; "
        f"client, async for item: {c:,.0f} ns/event (adds {c - b:,.0f} ns, rate ratio {b / c:.2f}); "
        f"client, async for batch: {cb:,.0f} ns/event (adds {cb - b:,.0f} ns, rate ratio {b / cb:.2f})"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000, help="events per burst (one per side and round)")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--verbose", action="store_true", help="print every round")
    ap.add_argument(
        "--in-memory", action="store_true", help="per-event CPU cost on prepared frames, no socket"
    )
    args = ap.parse_args()
    if args.in_memory:
        asyncio.run(in_memory(args.events, args.rounds))
    else:
        asyncio.run(main(args.events, args.rounds, args.verbose))
