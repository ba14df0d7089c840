"""Receive throughput: NotificationClient vs a bare aiohttp + orjson receive loop, same simulator, same run.

    .venv/bin/python bench/bench_receive.py [--events 20000] [--rounds 20]

The simulator runs in a child process, so the measured process does nothing but receive. Each round, for
each side (the order alternates between rounds), the child writes a burst of ~1.1 KB events into the
receiver's socket and the receiver times how long it takes to drain it: the bare loop reads each message
with ``ws.receive()`` and parses it with ``orjson.loads``; the client also classifies frames, keeps socket
health, de-duplicates, builds Events and hands them to an ``async for``. Both sides connect with the same
socket options. Printed per round: messages per wall-clock second and per CPU second of this process (the
latter is what the receiver itself costs, whatever else the machine is doing), and the client/bare ratios.

``--in-memory`` feeds both loops prepared frames through a stand-in socket instead (no kernel, no simulator):
the per-event CPU cost of the client's own work, with far less noise, for profiling the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import multiprocessing
import statistics
import time
import urllib.parse
from collections.abc import Awaitable, Callable
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
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
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
    async def drain(n: int) -> None:
        got = 0
        async for item in client:
            if type(item) is Event:
                got += 1
                if got == n:
                    break

    return drain


async def main(events: int, rounds: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    base_url, control = parent.recv()
    rows: list[tuple[float, float, float, float]] = []  # bare wall, client wall, bare cpu, client cpu
    base = 0

    def burst(topic: str) -> Callable[[], None]:
        def run() -> None:
            nonlocal base
            _post(control, "/burst?" + urllib.parse.urlencode({"topic": topic, "n": events, "base": base}))
            base += events

        return run

    opts = ClientOptions(queue_size=events + 10)
    try:
        async with (
            new_session() as session,
            NotificationClient(
                base_url=base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, options=opts
            ) as client,
        ):
            tm = TokenManager(session, base_url + "/oauth/token", CLIENT_ID, CLIENT_SECRET)
            api = NotificationsApi(session, base_url, tm)
            ch = await api.create_channel()
            # the client's socket options, so both sides read the same frames the same way
            ws = await open_socket(
                session, ch.connect_uri, connect_timeout=10.0, close_timeout=10.0, max_size=16 << 20
            )
            await api.put_subscriptions(ch.id, [BARE_TOPIC])
            await client.subscribe([CLIENT_TOPIC])
            sides = {
                "bare": (burst(BARE_TOPIC), _bare_drain(ws)),
                "client": (burst(CLIENT_TOPIC), _client_drain(client)),
            }
            for r in range(rounds):
                got: dict[str, tuple[float, float]] = {}
                for name in ("bare", "client") if r % 2 == 0 else ("client", "bare"):
                    got[name] = await _timed(*sides[name], events)
                (bw, bc), (cw, cc) = got["bare"], got["client"]
                row = (events / bw, events / cw, events / bc, events / cc)
                rows.append(row)
                print(
                    f"round {r + 1}: wall msg/s bare {row[0]:,.0f} client {row[1]:,.0f} "
                    f"ratio {row[1] / row[0]:.2f}"
                    f"   |   cpu msg/s bare {row[2]:,.0f} client {row[3]:,.0f} ratio {row[3] / row[2]:.2f}",
                    flush=True,
                )
            await ws.close()
            await tm.aclose()
    finally:
        _post(control, "/quit")
        proc.join(10)
    wall = [c / b for b, c, _, _ in rows]
    cpu = [c / b for _, _, b, c in rows]
    print(
        f"{rounds} rounds of {events:,} events: best wall msg/s bare {max(r[0] for r in rows):,.0f} "
        f"client {max(r[1] for r in rows):,.0f}; "
        f"median per-round ratio wall {statistics.median(wall):.2f}, cpu {statistics.median(cpu):.2f} "
        "(target >= 0.80)"
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


async def _memory_client(frames: list[aiohttp.WSMessage], n: int) -> float:
    # Private parts on purpose: this drives the client's real per-frame loop (``_read``) without a socket.
    from gcbridge.core.health import HealthMonitor
    from gcbridge.genesys.client import _Socket

    client = NotificationClient(
        base_url="http://127.0.0.1:9", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    client.core.planner._where[CLIENT_TOPIC] = 0
    now = time.monotonic()
    health = HealthMonitor(now, heartbeat_timeout=60.0, ping_interval=30.0, pong_timeout=10.0)
    sock = _Socket(1, (0, 0), "memory", _MemorySocket(frames), health, now)  # type: ignore[arg-type]
    c0 = time.process_time()
    reader = asyncio.get_running_loop().create_task(client._read(sock))
    await _client_drain(client)(n)
    elapsed = time.process_time() - c0
    client._closed = True
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return elapsed


async def _memory_bare(frames: list[aiohttp.WSMessage], n: int) -> float:
    c0 = time.process_time()
    await _bare_drain(_MemorySocket(frames))(n)  # type: ignore[arg-type]
    return time.process_time() - c0


async def in_memory(events: int, rounds: int) -> None:
    """CPU nanoseconds per event of both loops on prepared frames: no kernel, no simulator, little noise."""
    bare_ns: list[float] = []
    client_ns: list[float] = []
    for r in range(rounds):
        sides = [(_memory_bare, BARE_TOPIC, bare_ns), (_memory_client, CLIENT_TOPIC, client_ns)]
        for run, topic, out in sides if r % 2 == 0 else sides[::-1]:
            frames = _memory_frames(topic, events)
            gc.collect()
            gc.freeze()
            out.append(await run(frames, events) / events * 1e9)
            gc.unfreeze()
    b, c = min(bare_ns), min(client_ns)
    print(
        f"in memory, best of {rounds} rounds of {events:,} events: bare {b:,.0f} ns/event, client {c:,.0f} "
        f"ns/event (client adds {c - b:,.0f} ns); client/bare rate {b / c:.2f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument(
        "--in-memory", action="store_true", help="per-event CPU cost on prepared frames, no socket"
    )
    args = ap.parse_args()
    asyncio.run((in_memory if args.in_memory else main)(args.events, args.rounds))
