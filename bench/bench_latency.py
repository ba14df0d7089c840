"""End-to-end latency: Genesys publish -> ServiceNow record committed, ``gcbridge run`` as a real process.

    .venv/bin/python bench/bench_latency.py                       # 50 and 500 events/s, 429 storm; ~4 min
    .venv/bin/python bench/bench_latency.py --plot bench/latency.png

Both ends are the simulators' own wall clocks on this machine: the Genesys simulator stamps each event when it
writes it to the socket (``published_at`` in its ledger, its sequence number in ``metadata.simSequence``); the
ServiceNow simulator stamps each Import Set row when its transform commits (``committed_at``). The mapping is
the built-in one plus one staging column, ``u_sim_seq = "{metadata.simSequence}"``, which ties a row to its
event. An event written as part of a newer row of the same record (the dispatcher's coalescing) counts as
committed when that newer row is.

ServiceNow answers every request after ``--sn-latency`` (default 50 ms), with room for 64 requests at once
(several nodes' API_INT pools). Traffic: random events on ``--queues`` queue conversation topics (2/3 of the
events; the simulator rotates ~50 live conversations through them) and ``--users`` presence topics.

Runs, each on a fresh outbox, each printed with the load average:

* ``bare forwarder`` (baseline): the notification client, the same mapping and bare Import Set POSTs at the
  same concurrency as the writer; no outbox, no ordering, no retries. The physical floor of this path.
* ``gcbridge run`` with the product defaults, and with each ``--variant`` (dispatcher/writer settings).
* a 429 storm: ``--storm`` seconds in which ServiceNow answers every request 429 (a full semaphore pool, no
  Retry-After), at the lower rate; printed per second of publish time, with the time to recover.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import sqlite3
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from _service import (
    GENESYS_CLIENT,
    GENESYS_SECRET,
    SEQ_FIELD,
    SN_PASSWORD,
    SN_USER,
    genesys_sim,
    load_average,
    mapping_toml,
    presence_topics,
    queue_topics,
    running_bridge,
    write_config,
)
from bench_delivery import simulator

from gcbridge.bridge.mapping import MappingConfig, Record, event_view
from gcbridge.genesys import Event, NotificationClient
from gcbridge.sim.genesys import GenesysSim
from gcbridge.sim.genesys.ledger import PublishedRecord

STORM_COUNT = 1_000_000_000  # "every request" for the length of a storm

# Named dispatcher/writer settings a run can compare with the defaults (``--variant NAME``).
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "defaults": {},
    "coalesce": {"dispatcher": {"coalesce": True}},
    **{
        f"concurrency{n}": {"dispatcher": {"concurrency": n}, "servicenow": {"concurrency": n}}
        for n in (8, 16, 64)
    },
    "sync-normal": {"outbox": {"synchronous": "NORMAL"}},
    # the adaptive window: from the default 32 up to 64 (the simulator's pool), or past it to 96 (its 429s)
    "adaptive64": {"dispatcher": {"max_concurrency": 64}},
    "adaptive96": {"dispatcher": {"max_concurrency": 96}},
    "adaptive64-coalesce": {"dispatcher": {"max_concurrency": 64, "coalesce": True}},
}


@dataclass
class Run:
    label: str
    rate: float
    events: list[PublishedRecord]
    load: str
    drained: bool = True
    points: list[tuple[float, float]] = field(default_factory=list)  # (published_at, latency s) per event
    missing: int = 0  # measured events never committed (should be 0)
    received: dict[int, float] = field(default_factory=dict)  # seq -> when the bridge received it (outbox)
    answered_429: int = 0  # requests ServiceNow answered with the storm's 429

    @property
    def latencies(self) -> list[float]:
        return [latency for _, latency in self.points]


def pct(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def traffic_topics(queues: list[str], users: list[str]) -> list[str]:
    """Two conversation events for each presence event (the generator picks uniformly from this list)."""
    per_queue = max(1, 2 * len(users) // max(1, len(queues)))
    return queues * per_queue + users


def last_seq(sim: GenesysSim) -> int:
    return sim.ledger[-1].seq if sim.ledger else 0


def window(sim: GenesysSim, after: int, upto: int) -> list[PublishedRecord]:
    return [r for r in sim.ledger if after < r.seq <= upto and r.sent_to]


async def traffic_window(
    sim: GenesysSim, topics: list[str], rate: float, warmup: float, duration: float
) -> tuple[int, int]:
    """Publish at ``rate`` for ``warmup + duration`` s; the sequence numbers of the measured part."""
    sim.start_traffic(rate, topics)
    try:
        await asyncio.sleep(warmup)
        first = last_seq(sim)
        await asyncio.sleep(duration)
        return first, last_seq(sim)
    finally:
        await sim.stop_traffic()


async def run_bridge(
    sim: GenesysSim,
    sn_url: str,
    topics: list[str],
    traffic: list[str],
    rate: float,
    args: argparse.Namespace,
    variant: str,
) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        config = write_config(Path(tmp), sim.base_url, sn_url, topics, **VARIANTS[variant])
        async with running_bridge(config) as bridge:
            first, last = await traffic_window(sim, traffic, rate, args.warmup, args.duration)
            drained = await bridge.wait_drained(args.drain_limit)
        if args.logs:
            shutil.copy(bridge.log, args.logs / f"{variant}-{rate:g}.log")
        received = received_times(Path(tmp) / "state" / "outbox.db")
    label = "gcbridge run" + ("" if variant == "defaults" else f", {variant}")
    return Run(label, rate, window(sim, first, last), load_average(), drained, received=received)


async def run_storm(
    sim: GenesysSim, sn_url: str, topics: list[str], traffic: list[str], args: argparse.Namespace
) -> tuple[Run, float, float]:
    """Steady traffic; ServiceNow answers 429 to everything for ``--storm`` s, then recovers. Returns the run
    and the storm's start and end (wall clock)."""
    rate = min(args.rates)
    async with aiohttp.ClientSession() as http:

        async def control(path: str, body: dict[str, Any]) -> None:
            async with http.post(f"{sn_url}/_sim/{path}", json=body) as response:
                response.raise_for_status()

        with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
            config = write_config(Path(tmp), sim.base_url, sn_url, topics)
            async with running_bridge(config) as bridge:
                sim.start_traffic(rate, traffic)
                try:
                    await asyncio.sleep(args.warmup)
                    first = last_seq(sim)
                    await asyncio.sleep(args.storm_lead)
                    started = time.time()
                    await control("inject", {"status": 429, "count": STORM_COUNT})
                    await asyncio.sleep(args.storm)
                    async with http.get(f"{sn_url}/_sim/state") as response:
                        armed = (await response.json())["faults"]["injections"]
                    answered_429 = STORM_COUNT - (armed[0]["remaining"] if armed else 0)
                    await control("reset", {})  # also clears the latency: set it again at once
                    await control("delay", {"seconds": args.sn_latency})
                    ended = time.time()
                    await asyncio.sleep(args.storm_tail)
                    last = last_seq(sim)
                finally:
                    await sim.stop_traffic()
                drained = await bridge.wait_drained(args.drain_limit)
            if args.logs:
                shutil.copy(bridge.log, args.logs / "storm.log")
    run = Run(
        f"gcbridge run, {args.storm:g} s 429 storm", rate, window(sim, first, last), load_average(), drained
    )
    run.answered_429 = answered_429
    return run, started, ended


# ---- the baseline: a bare forwarder in its own process ----------------------------------------------------


async def forward(genesys_url: str, sn_url: str, topics: list[str], concurrency: int) -> None:
    """Client -> mapping -> bare Import Set POSTs, ``concurrency`` at a time, until stdin closes."""
    mapping_doc = tomllib.loads(mapping_toml(with_sequence=True))["servicenow"]["mapping"]
    mapping = MappingConfig.model_validate(mapping_doc).compiled
    queue: asyncio.Queue[Record] = asyncio.Queue()
    headers = {
        "Authorization": aiohttp.encode_basic_auth(SN_USER, SN_PASSWORD),
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def post() -> None:
            while True:
                record = await queue.get()
                url = f"{sn_url}/api/now/import/{record.row.target}"
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(url, json=record.row.fields, headers=headers) as response:
                        await response.read()

        async with NotificationClient(
            base_url=genesys_url, client_id=GENESYS_CLIENT, client_secret=GENESYS_SECRET
        ) as client:
            await client.subscribe(topics)
            workers = [asyncio.create_task(post()) for _ in range(concurrency)]

            async def consume() -> None:
                async for item in client:
                    if isinstance(item, Event):
                        record = mapping.map_event(event_view(item))
                        if isinstance(record, Record):
                            queue.put_nowait(record)

            consumer = asyncio.create_task(consume())
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(
                None, sys.stdin.read
            )  # until the parent closes it
            consumer.cancel()
            for worker in workers:
                worker.cancel()


async def run_forwarder(
    sim: GenesysSim, sn_url: str, topics: list[str], traffic: list[str], rate: float, args: argparse.Namespace
) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        topics_file = Path(tmp) / "topics.txt"
        topics_file.write_text("\n".join(topics))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--bare-forwarder",
            sim.base_url,
            sn_url,
            str(topics_file),
            str(args.concurrency),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdin is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"bare forwarder did not start: {line!r}")
        first, last = await traffic_window(sim, traffic, rate, args.warmup, args.duration)
        await asyncio.sleep(2.0)  # nothing durable to watch: give the queue time to empty
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 30)
    return Run("bare forwarder (baseline)", rate, window(sim, first, last), load_average())


def received_times(outbox: Path) -> dict[int, float]:
    """Sequence number -> the bridge's ``receivedAt`` of every event in its outbox (for the breakdown)."""
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        payloads = db.execute("SELECT payload FROM outbox").fetchall()
    times = {}
    for (payload,) in payloads:
        data = orjson.loads(payload)
        times[int(data["metadata"]["simSequence"])] = float(data["receivedAt"])
    return times


# ---- latency from the two simulators' stamps ----------------------------------------------------------


async def committed_rows(sn_url: str) -> dict[int, list[tuple[str, float]]]:
    """Sequence number -> (record key, commit time) of every staging row the ServiceNow simulator holds."""
    async with aiohttp.ClientSession() as http, http.get(f"{sn_url}/_sim/import_sets") as response:
        doc: Any = await response.json()
    rows: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for import_set in doc["result"]:
        for row in import_set["rows"]:
            values, at = row["values"], row.get("committed_at")
            seq = values.get(SEQ_FIELD, "")
            if at is None or not seq.isdigit() or row["state"] == "error":
                continue
            key = values.get("u_conversation_id") or values.get("u_user_id") or ""
            rows[int(seq)].append((key.casefold(), float(at)))
    return rows


def fill_latencies(runs: list[Run], rows: dict[int, list[tuple[str, float]]]) -> None:
    """Each event's latency: its own row's first commit, else the first commit of a newer row of the same
    record (coalescing wrote a newer state in its place)."""
    mapping = MappingConfig().compiled
    by_key: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for seq, entries in rows.items():
        for key, at in entries:
            by_key[key].append((seq, at))
    for entries in by_key.values():
        entries.sort()
    for run in runs:
        for event in run.events:
            own = rows.get(event.seq)
            if own:
                run.points.append((event.published_at, min(at for _, at in own) - event.published_at))
                continue
            key = mapping.key_of(
                event_view(
                    Event(
                        topic=event.topic,
                        body=event.body,
                        version=None,
                        metadata={},
                        dedup_key="",
                        received_at=event.published_at,
                    )
                )
            )
            later = [at for seq, at in by_key.get((key or "").casefold(), []) if seq > event.seq]
            if later:
                run.points.append((event.published_at, min(later) - event.published_at))
            else:
                run.missing += 1


def summary(run: Run) -> str:
    ordered = sorted(run.latencies)
    ms = [1000 * pct(ordered, q) for q in (0.5, 0.99, 1.0)]
    note = "" if run.drained else " (outbox not drained in time)"
    line = (
        f"{run.label:38} {run.rate:6.0f}/s  events {len(run.events):6d}  p50 {ms[0]:8.1f} ms  "
        f"p99 {ms[1]:8.1f} ms  max {ms[2]:8.1f} ms  missing {run.missing}  load {run.load}{note}"
    )
    inbound = sorted(run.received[e.seq] - e.published_at for e in run.events if e.seq in run.received)
    if inbound:
        line += (
            f"\n{'':38}   of which publish -> outbox receivedAt: p50 {1000 * pct(inbound, 0.5):.1f} ms, "
            f"p99 {1000 * pct(inbound, 0.99):.1f} ms"
        )
    return line


def storm_report(run: Run, started: float, ended: float, slo: float) -> tuple[list[str], float, float]:
    """Per second of publish time: p50/p99/max. Backlog: from the storm's end until the last event published
    before it was committed. Recovery: from the storm's end to the publish time from which every later event
    made it within ``slo`` (one late event on a loaded machine moves it: read it with the rows per second)."""
    per_second: dict[int, list[float]] = defaultdict(list)
    for published_at, latency in run.points:
        per_second[math.floor(published_at - started)].append(latency)
    lines = []
    for second in sorted(per_second):
        ordered = sorted(per_second[second])
        lines.append(
            f"  t={second:+4d} s  p50 {1000 * pct(ordered, 0.5):8.0f} ms"
            f"  p99 {1000 * pct(ordered, 0.99):8.0f} ms"
            f"  max {1000 * ordered[-1]:8.0f} ms"
        )
    recovered_from = ended
    for published_at, latency in sorted(run.points):
        if published_at >= ended and latency > slo:
            recovered_from = published_at
    backlog = max((at + latency for at, latency in run.points if at < ended), default=ended) - ended
    return lines, backlog, recovered_from - ended


def plot(path: Path, steady: list[Run], storm: tuple[Run, float, float] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2 if storm else 1, figsize=(13 if storm else 7, 4.5), squeeze=False)
    left = axes[0][0]
    for run in steady:
        ordered = sorted(1000 * x for x in run.latencies)
        if not ordered:
            continue
        fraction = [(i + 1) / len(ordered) for i in range(len(ordered))]
        left.plot(ordered, fraction, label=f"{run.label}, {run.rate:.0f}/s")
    left.set_xscale("log")
    left.axvline(200, color="grey", linestyle=":", label="target p99 200 ms")
    left.axhline(0.99, color="grey", linestyle="--", linewidth=0.8)
    left.set_xlabel("Genesys publish -> ServiceNow commit (ms, log scale)")
    left.set_ylabel("fraction of events")
    left.set_title("Latency distribution (CDF)")
    left.legend(fontsize=7, loc="lower right")
    if storm:
        run, started, ended = storm
        right = axes[0][1]
        right.scatter(
            [at - started for at, _ in run.points], [1000 * x for _, x in run.points], s=2, alpha=0.5
        )
        right.axvspan(0, ended - started, color="red", alpha=0.15, label="429 storm")
        right.set_yscale("log")
        right.set_xlabel("publish time (s from the storm's start)")
        right.set_ylabel("latency (ms, log scale)")
        right.set_title(f"{run.rate:.0f} events/s through a 429 storm")
        right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"plot written to {path}")


async def main(args: argparse.Namespace) -> None:
    queues, users = queue_topics(args.queues), presence_topics(args.users)
    topics, traffic = queues + users, traffic_topics(queues, users)
    sim = await genesys_sim()
    steady: list[Run] = []
    storm: tuple[Run, float, float] | None = None
    try:
        async with simulator(args.sn_latency) as sn_url:
            for rate in args.rates:
                if not args.no_baseline:
                    steady.append(await run_forwarder(sim, sn_url, topics, traffic, rate, args))
                for variant in ["defaults", *args.variant]:
                    steady.append(await run_bridge(sim, sn_url, topics, traffic, rate, args, variant))
            if args.storm > 0:
                storm = await run_storm(sim, sn_url, topics, traffic, args)
            rows = await committed_rows(sn_url)
    finally:
        await sim.stop()
    fill_latencies(steady + ([storm[0]] if storm else []), rows)
    print(
        f"ServiceNow latency {1000 * args.sn_latency:.0f} ms per request; writer concurrency "
        f"{args.concurrency} (baseline and defaults); {args.duration:g} s measured after "
        f"{args.warmup:g} s warm-up"
    )
    for run in steady:
        print(summary(run))
    if storm:
        run, started, ended = storm
        print(summary(run))
        lines, backlog, recovery = storm_report(run, started, ended, args.slo)
        print(
            f"429 storm from t=0 to t={ended - started:.1f} s ({run.answered_429} requests answered 429), "
            "latency per second of publish time:"
        )
        print("\n".join(lines))
        print(f"backlog committed {backlog:.1f} s after the storm")
        print(
            f"recovered (every later event within {1000 * args.slo:.0f} ms) {recovery:.1f} s after the storm"
        )
    if args.plot:
        plot(args.plot, steady, storm)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 500.0], help="events per second")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of traffic before measuring")
    parser.add_argument("--sn-latency", type=float, default=0.05, help="ServiceNow response time (s)")
    parser.add_argument("--concurrency", type=int, default=32, help="the baseline's POSTs in flight")
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument(
        "--variant", action="append", default=[], choices=sorted(set(VARIANTS) - {"defaults"})
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare forwarder")
    parser.add_argument("--storm", type=float, default=10.0, help="seconds of 429s (0: no storm run)")
    parser.add_argument("--storm-lead", type=float, default=5.0, help="measured seconds before the storm")
    parser.add_argument("--storm-tail", type=float, default=30.0, help="measured seconds after the storm")
    parser.add_argument("--slo", type=float, default=0.2, help="latency that counts as recovered (s)")
    parser.add_argument("--drain-limit", type=float, default=120.0, help="seconds to wait for the outbox")
    parser.add_argument("--logs", type=Path, help="keep each run's gcbridge log in this directory")
    parser.add_argument("--plot", type=Path, help="write the latency plot (PNG, needs matplotlib)")
    parser.add_argument(
        "--bare-forwarder", nargs=4, metavar=("GENESYS", "SN", "TOPICS", "N"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    if options.bare_forwarder:
        genesys_url, sn_url, topics_file, n = options.bare_forwarder
        asyncio.run(forward(genesys_url, sn_url, Path(topics_file).read_text().split(), int(n)))
    else:
        asyncio.run(main(options))
