"""``gcbridge demo``: the whole flow on one machine, with no credentials.

Both simulators run in this process on 127.0.0.1 (Genesys Cloud with realistic traffic, ServiceNow with its
Import Set transforms); the real bridge service runs against them with an SQLite outbox in a temporary
directory. Along the way it injects a ``socket_closing`` (a planned rotation), an abrupt socket drop and a
burst of ServiceNow 503s, and shows per channel state, events in, records written, gaps and outbox depth.
At the end it checks every event the simulator wrote to the bridge's sockets against what reached
ServiceNow and prints a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from gcbridge import _json
from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge.config import BridgeConfig, parse_config
from gcbridge.bridge.demo_books import balance
from gcbridge.bridge.service import BridgeService
from gcbridge.genesys import ClientStats
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.config import SnSimConfig
from gcbridge.sim.servicenow.sim import ServiceNowSim
from gcbridge.stopsignals import StopSignals

DEMO_USER: Final = "gcbridge-demo"
DEMO_PASSWORD: Final = "demo-password-not-secret"  # noqa: S105 - the simulator's own throwaway user
SETTLE_TIMEOUT: Final = 20.0
"""Seconds the demo waits at the end for the outbox to empty before it stops the bridge."""


def demo_topics(queues: int = 4, users: int = 8) -> list[str]:
    """A small contact centre: queue conversations and observations, agent presence and routing status."""
    q = [f"5e1f{i:04d}-0000-4000-8000-00000000{i:04d}" for i in range(1, queues + 1)]
    u = [f"a9e7{i:04d}-0000-4000-8000-00000000{i:04d}" for i in range(1, users + 1)]
    return (
        [f"v2.routing.queues.{x}.conversations" for x in q]
        + [f"v2.analytics.queues.{x}.observations" for x in q]
        + [f"v2.users.{x}.presence" for x in u]
        + [f"v2.users.{x}.routingStatus" for x in u]
    )


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float | None = 30.0  # None: until Ctrl-C
    rate: float = 50.0
    faults: bool = True
    admin_port: int = 0
    keep: Path | None = None
    interactive: bool = False


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the start
    label: str
    action: Callable[[], Awaitable[Any]]


@dataclass(slots=True)
class DemoSummary:
    published: int = 0
    sent_to_bridge: int = 0
    received: int = 0
    delivered: int = 0
    retries: int = 0
    rejected: int = 0
    dead: int = 0
    pending: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    records: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    rotations: int = 0
    reconnects: int = 0
    identical: int = 0  # same topic and body as an event in the outbox: one notification to the bridge
    missed_in_gaps: int = 0
    lost: int = (
        0  # published to a bridge channel, not in the outbox (nor identical to one), in no reported gap
    )

    @property
    def ok(self) -> bool:
        return self.delivered > 0 and self.dead == 0 and self.pending == 0 and self.lost == 0


def demo_config(
    genesys_url: str,
    client_id: str,
    client_secret: str,
    servicenow_url: str,
    workdir: Path,
    admin_port: int,
    topics: list[str],
) -> BridgeConfig:
    return parse_config(
        {
            "genesys": {
                "base_url": genesys_url,
                "client_id": client_id,
                "client_secret": client_secret,
                "topics": topics,
            },
            "servicenow": {
                "instance_url": servicenow_url,
                "auth": {"kind": "basic", "username": DEMO_USER, "password": DEMO_PASSWORD},
            },
            "outbox": {
                "path": str(workdir / "outbox.db"),
                "drain_timeout": 10.0,
                # The demo's 503 burst should show retries, not minutes of waiting.
                "dispatcher": {"backoff_initial": 0.2, "backoff_max": 2.0, "idle_poll": 1.0},
            },
            # the demo's simulator publishes generated events with no org behind its REST API: no back-fill
            "backfill": {"enabled": False},
            "admin": {"port": admin_port},
            "logging": {"level": "info"},
        },
        base_dir=workdir,
        source="demo",
    )


def fault_plan(gsim: GenesysSim, snsim: ServiceNowSim, duration: float | None) -> list[Fault]:
    span = duration if duration is not None else 40.0

    async def socket_closing() -> Any:
        return await gsim.socket_closing(grace=10.0)

    async def drop() -> Any:
        return await gsim.drop_socket()

    async def burst() -> None:
        snsim.inject(503, count=15, path_prefix="/api/now/import/")

    return [
        Fault(span * 0.25, "Genesys socket_closing (planned rotation)", socket_closing),
        Fault(span * 0.45, "abrupt socket drop", drop),
        Fault(span * 0.65, "ServiceNow 503 burst (15 requests)", burst),
    ]


def _view(
    doc: dict[str, Any],
    gsim: GenesysSim,
    elapsed: float,
    faults_done: list[str],
    admin_url: str | None,
) -> Group:
    g = doc.get("genesys", {})
    channels = Table(
        "shard", "channel", "state", "topics", "last frame", title="Genesys channels", title_justify="left"
    )
    now = doc.get("now", time.time())
    for c in g.get("channels", []):
        last = c.get("last_frame_at")
        age = f"{now - last:.1f} s ago" if isinstance(last, int | float) else "-"
        style = "green" if c.get("state") == "live" else "yellow"
        channels.add_row(
            str(c.get("shard")), str(c.get("id")), f"[{style}]{c.get('state')}[/]", str(c.get("topics")), age
        )
    o, d, gaps = doc.get("outbox", {}), doc.get("deliveries", {}), doc.get("gaps", {})
    counts = Table.grid(padding=(0, 2))
    counts.add_row(
        "published", "events in", "records written", "retries", "gaps", "outbox pending", "dead letters"
    )
    counts.add_row(
        f"[bold]{len(gsim.ledger)}[/]",
        f"[bold]{doc.get('events', {}).get('received', 0)}[/]",
        f"[bold]{d.get('delivered', 0)}[/]",
        f"{d.get('retry', 0)}",
        f"{gaps.get('count', 0)} ({gaps.get('seconds', 0):.1f} s)",
        f"{o.get('pending', 0)}",
        f"{o.get('dead', 0)}",
    )
    ready = doc.get("readiness", {})
    header = (
        f"[bold]gcbridge demo[/]  {elapsed:5.1f} s   state [bold]{doc.get('state')}[/]   "
        f"ready {'[green]yes[/]' if ready.get('ready') else '[yellow]no[/]'}"
        + (f"   status page {admin_url}" if admin_url else "")
    )
    lines: list[Any] = [header, counts, channels]
    lines.append("faults: " + (", ".join(faults_done) if faults_done else "none yet"))
    return Group(*lines)


async def _settle(service: BridgeService, gsim: GenesysSim, limit: float) -> None:
    """Wait (at most ``limit`` seconds) until the bridge has caught up with everything published: nothing
    left unsent on the simulator's sockets, in the client's buffer, the ingest queue or the outbox. Stopping
    earlier would close sockets with events in them, lost to a graceful stop and counted so."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    while loop.time() < give_up:
        doc = await service.status()
        o = doc.get("outbox", {})
        stats = service.client.stats() if service.client is not None else None
        if (
            o.get("pending", 0) == 0
            and o.get("in_flight", 0) == 0
            and (service.ingest is None or service.ingest.queued == 0)
            and (not isinstance(stats, ClientStats) or stats.buffered == 0)
            and gsim.unsent_bytes() == 0
        ):
            return
        await asyncio.sleep(0.25)


def _count_records(snsim: ServiceNowSim) -> dict[str, int]:
    return {t: len(snsim.records(t)) for t in ("interaction", "u_genesys_presence", "u_genesys_queue_stats")}


async def run_demo(options: DemoOptions, console: Console) -> bool:
    """Run the demo; returns True when events were delivered and nothing is left pending or dead."""
    with contextlib.ExitStack() as stack:
        if options.keep is not None:
            workdir = options.keep
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gcbridge-demo-")))
        log_path = workdir / "gcbridge-demo.log"
        log_stream = stack.enter_context(log_path.open("w", encoding="utf-8"))
        bridge_logging.configure(level="info", fmt="json", stream=log_stream)
        summary = await _run(options, console, workdir)
        kept = options.keep is not None
        _print_summary(console, summary, workdir if kept else None, log_path if kept else None)
        if options.keep is None:
            # The temporary directory goes away; show the last warnings so nothing is hidden.
            log_stream.flush()
            _print_warnings(console, log_path)
        return summary.ok


async def _run(options: DemoOptions, console: Console, workdir: Path) -> DemoSummary:
    gsim = GenesysSim(SimConfig(seed=7, heartbeat_interval=5.0))
    snsim = ServiceNowSim(SnSimConfig(users={DEMO_USER: DEMO_PASSWORD}))
    summary = DemoSummary()
    genesys_url = await gsim.start("127.0.0.1", 0)
    servicenow_url = await snsim.start("127.0.0.1", 0)
    topics = demo_topics()
    config = demo_config(
        genesys_url,
        gsim.config.client_id,
        gsim.config.client_secret,
        servicenow_url,
        workdir,
        options.admin_port,
        topics,
    )
    service = BridgeService(config, install_signals=False)
    loop = asyncio.get_running_loop()
    # Ctrl-C or SIGTERM ends the run early (whatever disposition was inherited); a second Ctrl-C also skips
    # waiting for the outbox to empty.
    signals = StopSignals()
    stop = signals.stop
    signals.install()
    try:
        await service.start()
        gsim.start_traffic(options.rate)
        plan = fault_plan(gsim, snsim, options.duration) if options.faults else []
        started = loop.time()
        await _watch(options, console, service, gsim, plan, summary, started, stop)
        await gsim.stop_traffic()
        await signals.unless_hurried(_settle(service, gsim, SETTLE_TIMEOUT))
        client_stats = service.client.stats() if service.client is not None else None
        await service.stop()
        _fill_summary(summary, service, gsim, snsim)
        _account(summary, gsim, config.outbox.path, service.journal.recent)
        if isinstance(client_stats, ClientStats):  # the demo runs the real client
            summary.rotations = sum(client_stats.rotations_by_reason.values())
            summary.reconnects = sum(client_stats.reconnects_by_reason.values())
    finally:
        signals.uninstall()
        if service.lifecycle.state in ("starting", "running"):
            with contextlib.suppress(Exception):
                await service.stop()
        await gsim.stop()
        await snsim.stop()
    return summary


async def _watch(
    options: DemoOptions,
    console: Console,
    service: BridgeService,
    gsim: GenesysSim,
    plan: list[Fault],
    summary: DemoSummary,
    started: float,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    pending = list(plan)
    last_line = 0.0
    live = Live(console=console, refresh_per_second=4, transient=False) if options.interactive else None
    if live is None and service.admin_url:
        console.print(
            f"status page {service.admin_url}  (metrics at {service.admin_url}/metrics)", highlight=False
        )
    with live if live is not None else contextlib.nullcontext():
        while not stop.is_set():
            elapsed = loop.time() - started
            if options.duration is not None and elapsed >= options.duration:
                break
            while pending and elapsed >= pending[0].at:
                fault = pending.pop(0)
                try:
                    await fault.action()
                    summary.faults.append(fault.label)
                except Exception as exc:
                    summary.faults.append(f"{fault.label} (failed: {exc})")
            doc = await service.status()
            if live is not None:
                live.update(Panel(_view(doc, gsim, elapsed, summary.faults, service.admin_url)))
            elif elapsed - last_line >= 2.0:
                last_line = elapsed
                d, o = doc.get("deliveries", {}), doc.get("outbox", {})
                console.print(
                    f"{elapsed:5.1f} s  published {len(gsim.ledger)}  events in "
                    f"{doc.get('events', {}).get('received', 0)}  written {d.get('delivered', 0)}  retries "
                    f"{d.get('retry', 0)}  gaps {doc.get('gaps', {}).get('count', 0)}  outbox "
                    f"{o.get('pending', 0)}  channels {len(doc.get('genesys', {}).get('channels', []))}",
                    highlight=False,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)


def _fill_summary(
    summary: DemoSummary, service: BridgeService, gsim: GenesysSim, snsim: ServiceNowSim
) -> None:
    summary.published = len(gsim.ledger)
    summary.sent_to_bridge = sum(1 for r in gsim.ledger if r.sent_to)
    summary.received = service.ingest.received if service.ingest else 0
    sink = service.sink
    if sink is not None:
        summary.delivered, summary.retries, summary.rejected = sink.delivered, sink.retried, sink.rejected
    stats = service._outbox_stats
    if stats is not None:
        summary.dead, summary.pending = stats.dead, stats.pending + stats.in_flight
    summary.gaps, summary.gap_seconds = service.journal.count, service.journal.seconds
    summary.records = _count_records(snsim)


def _account(summary: DemoSummary, gsim: GenesysSim, outbox: Path, gaps: Iterable[Mapping[str, Any]]) -> None:
    """Balance the books (:mod:`gcbridge.bridge.demo_books`): each event published to a channel of the
    bridge is in the outbox (as itself, or as the identical event it is one with) or in a reported gap."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT payload, dedup_key FROM outbox").fetchall()
    seqs = {_json.loads(payload).get("metadata", {}).get("simSequence") for payload, _ in rows}
    keys = {key for _, key in rows}
    windows = [(float(g["start"]), float(g["end"])) for g in gaps]
    books = balance(gsim.ledger, seqs, keys, windows)
    summary.identical, summary.missed_in_gaps, summary.lost = (
        books.identical,
        books.missed_in_gaps,
        books.lost,
    )


def _print_summary(console: Console, s: DemoSummary, workdir: Path | None, log_path: Path | None) -> None:
    table = Table(title="gcbridge demo summary", title_justify="left", show_header=False)
    table.add_row("events published by the simulated org", str(s.published))
    table.add_row("events written to the bridge's sockets", str(s.sent_to_bridge))
    table.add_row("events in (durable in the outbox)", str(s.received))
    table.add_row("events delivered to ServiceNow", str(s.delivered))
    table.add_row("delivery retries (503 burst etc.)", str(s.retries))
    table.add_row("rejected (dead letters)", f"{s.rejected} ({s.dead} dead)")
    table.add_row("left in the outbox", str(s.pending))
    table.add_row("gaps reported", f"{s.gaps} ({s.gap_seconds:.1f} s)")
    table.add_row("events identical to a stored one (one row)", str(s.identical))
    table.add_row("events missed inside reported gaps", str(s.missed_in_gaps))
    table.add_row("events lost outside any gap", str(s.lost))
    table.add_row("channel rotations / reconnects", f"{s.rotations} / {s.reconnects}")
    for name, count in s.records.items():
        table.add_row(f"ServiceNow records in {name}", str(count))
    table.add_row("faults injected", ", ".join(s.faults) or "none")
    console.print(table)
    verdict = (
        "[green]OK[/]: events delivered, none lost, nothing pending, no dead letters"
        if s.ok
        else ("[red]NOT OK[/]: see above")
    )
    console.print(verdict)
    if workdir is not None:
        console.print(f"outbox, gap journal and log kept in {workdir} (log: {log_path})", highlight=False)


def _print_warnings(console: Console, log_path: Path, limit: int = 8) -> None:
    lines = [ln for ln in log_path.read_text("utf-8").splitlines() if '"level":"error"' in ln]
    for line in lines[-limit:]:
        console.print(f"[red]log[/] {line[:300]}", highlight=False)
