"""Several ``gcbridge run`` processes on one PostgreSQL outbox against both simulators, for the chaos test
(``tests/e2e/test_ha_chaos.py``) and the failover benchmark (``bench/bench_failover.py``).

:class:`HaCluster` starts named instances (and optionally a hot standby on a second OAuth client), kills and
restarts them, and samples the invariants while it runs: every shard's lease row (one owner per shard), each
instance's own ``/status`` view (no two instances claim a shard at the same epoch), and the channels per
OAuth client as the Genesys simulator counts them (a 21st channel would evict one). :func:`books` balances
the books at the end: every event written to a bridge socket is stored once or inside a reported gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.e2e.bridge_process import GENESYS_CLIENT, Bridge, write_service_config

OWNER_CLIENT = GENESYS_CLIENT
STANDBY_CLIENT = "gcbridge-standby"
GAP_SLACK = 0.05


def ha_toml(*, name: str, shards: int, ttl: float, standby: bool = False) -> str:
    """The ``[ha]`` section of instance ``name``."""
    return f"""
[ha]
instance_id = "{name}"
shards = {shards}
lease_ttl = {ttl}
handoff_timeout = 10.0
handoff_overlap = 0.5
channel_budget = 6
standby = {"true" if standby else "false"}
"""


@dataclass
class Samples:
    """What the sampler saw while the cluster ran."""

    rounds: int = 0
    double_claims: list[str] = field(default_factory=list)
    peak_channels: dict[str, int] = field(default_factory=dict)
    # (time the owner was killed, shard) -> time another instance held it (for the failover benchmark)
    failovers: list[float] = field(default_factory=list)


class HaCluster:
    """Instances by name, each a :class:`Bridge` with its own folder and log under ``tmp``."""

    def __init__(
        self,
        tmp: Path,
        gsim: GenesysSim,
        snsim: ServiceNowSim,
        url: str,
        *,
        topics: list[str],
        shards: int,
        ttl: float,
    ) -> None:
        self.tmp, self.gsim, self.snsim, self.url = tmp, gsim, snsim, url
        self.topics, self.shards, self.ttl = topics, shards, ttl
        self.bridges: dict[str, Bridge] = {}
        self.samples = Samples()
        self.pool: Any = None
        self._pending_failovers: dict[int, float] = {}  # shard -> when its owner was killed
        self._watch_channels()

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=0, max_size=2)

    async def close(self) -> None:
        for bridge in self.bridges.values():
            if bridge.proc is not None:
                await bridge.kill()
        if self.pool is not None:
            await self.pool.close()

    def _watch_channels(self) -> None:
        """Count, from the simulator's side, the most channels any OAuth client held at a creation."""
        channels = self.gsim.core.channels
        create = channels.create
        peak = self.samples.peak_channels

        def counting(client_id: str, token: Any, now: float, channel_id: str | None = None) -> Any:
            held = len(channels.of_client(client_id)) + 1
            peak[client_id] = max(peak.get(client_id, 0), held)
            return create(client_id, token, now, channel_id)

        channels.create = counting  # type: ignore[method-assign]

    def add(self, name: str, *, standby: bool = False) -> Bridge:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        assert self.snsim.base_url is not None
        config = write_service_config(
            folder,
            self.gsim.base_url,
            STANDBY_CLIENT if standby else OWNER_CLIENT,
            self.topics,
            self.snsim.base_url,
            outbox_url=self.url,
            log_level="info",
            extra=ha_toml(name=name, shards=self.shards, ttl=self.ttl, standby=standby),
        )
        bridge = self.bridges[name] = Bridge(config, self.tmp / f"{name}.log")
        return bridge

    async def owners(self) -> dict[int, tuple[str, int]]:
        rows = await self.pool.fetch(
            "SELECT shard, owner, epoch FROM shard_leases "
            "WHERE owner IS NOT NULL AND expires_at > extract(epoch from clock_timestamp())"
        )
        return {r["shard"]: (r["owner"], r["epoch"]) for r in rows}

    async def wait_owned(self, limit: float = 90.0, by: set[str] | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            owners = await self.owners()
            if len(owners) == self.shards and (by is None or {o for o, _ in owners.values()} <= by):
                return
            if loop.time() > deadline:
                raise AssertionError(f"not every shard owned after {limit} s: {owners}")
            await asyncio.sleep(0.1)

    async def kill(self, name: str) -> None:
        bridge = self.bridges[name]
        owned = [s for s, (o, _) in (await self.owners()).items() if o == name]
        await bridge.kill()
        killed_at = time.time()
        for shard in owned:
            self._pending_failovers[shard] = killed_at

    async def sample(self) -> None:
        """One round of invariant checks (and failover timing)."""
        self.samples.rounds += 1
        owners = await self.owners()
        now = time.time()
        for shard, killed_at in list(self._pending_failovers.items()):
            if shard in owners and owners[shard][0] in self.live_names():
                self.samples.failovers.append(now - killed_at)
                del self._pending_failovers[shard]
        claims: dict[tuple[int, int], list[str]] = defaultdict(list)
        docs = await asyncio.gather(*(b.status() for b in self.bridges.values() if b.running))
        for doc in docs:
            ha = (doc or {}).get("ha") or {}
            for shard, epoch in (ha.get("owned") or {}).items():
                claims[(int(shard), int(epoch))].append(str(ha.get("instance_id")))
        for (shard, epoch), names in claims.items():
            if len(names) > 1:
                self.samples.double_claims.append(f"shard {shard} epoch {epoch} claimed by {names}")

    def live_names(self) -> set[str]:
        return {n for n, b in self.bridges.items() if b.running}

    async def sampler(self, stop: asyncio.Event, every: float = 0.25) -> None:
        while not stop.is_set():
            with contextlib.suppress(
                OSError, asyncpg.PostgresError
            ):  # lost to a busy machine: the next counts
                await self.sample()
            await asyncio.sleep(every)

    async def pending(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM outbox WHERE state IN (0, 1)"))

    async def wait_settled(self, limit: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while await self.pending():
            assert loop.time() < deadline, "the outbox never emptied"
            await asyncio.sleep(0.3)

    async def gaps(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("SELECT * FROM gaps ORDER BY id")
        return [dict(r) | {"topics": orjson.loads(r["topics"])} for r in rows]

    async def sequences(self) -> list[int]:
        rows = await self.pool.fetch("SELECT payload FROM outbox ORDER BY id")
        return [orjson.loads(r["payload"])["metadata"]["simSequence"] for r in rows]


def books(gsim: GenesysSim, stored: list[int], gaps: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """(events written to a bridge socket that are neither stored nor inside a reported gap, stored twice)."""
    counts = Counter(stored)
    twice = sorted(s for s, n in counts.items() if n > 1)

    def in_gap(topic: str, at: float) -> bool:
        return any(
            g["start_at"] - GAP_SLACK <= at <= g["end_at"] + GAP_SLACK and topic in g["topics"] for g in gaps
        )

    missing = [
        r.seq
        for r in gsim.ledger
        if r.sent_to and r.seq not in counts and not in_gap(r.topic, r.published_at)
    ]
    return missing, twice


def servicenow_duplicates(records: list[dict[str, str]], key: Callable[[dict[str, str]], str]) -> list[str]:
    """Keys held by more than one ServiceNow record."""
    counts = Counter(key(r) for r in records)
    return sorted(k for k, n in counts.items() if n > 1)
