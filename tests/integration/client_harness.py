"""Helpers for NotificationClient integration tests: collect the stream, check it against the ledger."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gcbridge.genesys import ClientOptions, Event, Gap, LifecycleEvent, NotificationClient
from gcbridge.sim.genesys import GenesysSim

FAST = ClientOptions(
    heartbeat_timeout=3.0,
    ping_interval=0.5,
    pong_timeout=0.5,
    drain_period=0.3,
    token_rotation_delay=0.1,
    token_rotation_stagger=0.05,
    healthy_period=2.0,
    subscribe_timeout=20.0,
)


@dataclass
class Collected:
    events: list[Event] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def seqs(self) -> list[int]:
        return [int(e.metadata["simSequence"]) for e in self.events if "simSequence" in e.metadata]


def client_for(sim: GenesysSim, options: ClientOptions = FAST, **kw: Any) -> NotificationClient:
    return NotificationClient(
        base_url=sim.base_url,
        client_id=sim.config.client_id,
        client_secret=sim.config.client_secret,
        options=options,
        **kw,
    )


BATCH = 7  # small, so that a burst is cut into many batches


def collect(client: NotificationClient, batches: bool = False) -> Collected:
    """Consume the client's stream in a task: ``async for item in client``, or ``client.batches()``."""
    out = Collected()
    client.on_lifecycle(out.lifecycle.append)

    def keep(item: Event | Gap) -> None:
        (out.gaps if isinstance(item, Gap) else out.events).append(item)  # type: ignore[arg-type]

    async def run() -> None:
        if batches:
            async for batch in client.batches(max_size=BATCH):
                assert 0 < len(batch) <= BATCH, "a batch is never empty, nor over its size"
                for item in batch:
                    keep(item)
        else:
            async for item in client:
                keep(item)

    out.task = asyncio.get_running_loop().create_task(run())
    return out


async def wait_until(cond: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def audit(sim: GenesysSim, got: Collected, topics: set[str]) -> tuple[set[int], set[int]]:
    """Check the stream against the ledger: no event twice; every ledger event on ``topics`` either received
    or inside a reported gap for its topic. Returns (received, covered-by-gap) sequence numbers."""
    counts = collections.Counter(got.seqs())
    dups = {s: n for s, n in counts.items() if n > 1}
    assert not dups, f"duplicates delivered: {list(dups.items())[:5]}"
    received = set(counts)
    in_gap: set[int] = set()
    missing = []
    for rec in sim.ledger:
        if rec.topic not in topics or rec.seq in received:
            continue
        if any(g.start <= rec.published_at <= g.end and rec.topic in g.topics for g in got.gaps):
            in_gap.add(rec.seq)
        else:
            missing.append(
                (rec.seq, rec.topic, rec.published_at, [(d.channel_id, d.reason) for d in rec.deliveries])
            )
    assert not missing, (
        f"{len(missing)} events neither received nor in a gap, e.g. {missing[:3]}; gaps {got.gaps}"
    )
    return received, in_gap


async def publish_until_received(sim: GenesysSim, got: Collected, topic: str, within: float = 30.0) -> int:
    """Publish on ``topic`` every 20 ms until one of them arrives; returns its sequence number."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    mine: set[int] = set()
    while loop.time() < deadline:
        mine.add(sim.publish(topic))
        await asyncio.sleep(0.02)
        hit = mine & set(got.seqs())
        if hit:
            return min(hit)
    raise AssertionError(f"no event on {topic} arrived within {within}s")


async def receiving(
    sim: GenesysSim, client: NotificationClient, topics: list[str], batches: bool = False
) -> Collected:
    """Subscribe ``client`` to ``topics`` and collect its stream, once an event on the first topic arrives."""
    await client.subscribe(topics)
    got = collect(client, batches)
    await publish_until_received(sim, got, topics[0])
    return got


def other_tasks(sim: GenesysSim | None = None) -> set[asyncio.Task[Any]]:
    """Running tasks other than this one (and the simulator's own timer waits, which come and go)."""

    def simulator_wait(t: asyncio.Task[Any]) -> bool:
        frame = getattr(t.get_coro(), "cr_frame", None)
        return sim is not None and frame is not None and frame.f_locals.get("self") is sim._wakeup

    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and not t.done() and not simulator_wait(t)
    }
