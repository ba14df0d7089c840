"""The shard lease coordinator while PostgreSQL does not answer: it keeps its shards and subscriptions, says
so in one log line (not one per failed round), says when it works again, and renews its leases at the same
epochs (nobody took them meanwhile: no failover, no gap)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from gcbridge.bridge.config import HaConfig
from gcbridge.bridge.ha import HaCoordinator
from gcbridge.core.shard_leases import ShardMap
from gcbridge.outbox.pg_leases import ShardLeaseStore, Snapshot
from gcbridge.outbox.postgres import PostgresOutbox

from .backfill_fakes import RecordingLog
from .pg_fixtures import create_schema, drop_schema, pg_database

__all__ = ["pg_database"]

TOPICS = [f"v2.users.u{i}.presence" for i in range(8)]
TTL = 0.6  # renewals every 0.2 s: the outage below outlasts the leases


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


class Unreachable(ShardLeaseStore):
    """Every lease call fails while ``away`` is set, as while PostgreSQL restarts."""

    away = False
    calls_while_away = 0

    def _check(self) -> None:
        if self.away:
            self.calls_while_away += 1
            raise ConnectionRefusedError("connection refused (PostgreSQL is restarting)")

    async def renew(self, owned: Mapping[int, int], ttl: float, channels_in_use: int) -> set[int]:
        self._check()
        return await super().renew(owned, ttl, channels_in_use)

    async def snapshot(self, shards: int, ttl: float) -> Snapshot:
        self._check()
        return await super().snapshot(shards, ttl)


class Client:
    def __init__(self) -> None:
        self.subscribed: set[str] = set()

    async def subscribe(self, topics: list[str]) -> None:
        self.subscribed |= set(topics)

    async def unsubscribe(self, topics: list[str]) -> None:
        self.subscribed -= set(topics)


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_database_outage_is_one_log_line_and_the_leases_are_renewed_at_their_epochs(url: str) -> None:
    outbox = await PostgresOutbox.open(url, owner="a")  # migrates the schema
    leases = await Unreachable.open(url, "a")
    assert isinstance(leases, Unreachable)
    log = RecordingLog()
    gaps: list[dict[str, Any]] = []

    async def on_gap(entry: dict[str, Any]) -> None:
        gaps.append(entry)

    await leases.join(shards=2, client_id="c", wanted_budget=6, ttl=TTL, host="h", pid=1)
    ha = HaCoordinator(
        HaConfig(shards=2, lease_ttl=TTL, handoff_overlap=0.0),
        instance_id="a",
        shard_map=ShardMap(TOPICS, 2),
        leases=leases,
        log=log,
        on_gap=on_gap,
    )
    client = Client()
    try:
        await ha.start(client)  # type: ignore[arg-type]
        held = dict(ha.owned)
        assert set(held) == {0, 1}
        leases.away = True
        # many failed rounds, well past the lease TTL
        await until(lambda: ha.round_failures >= 10)
        assert ha.owned == held  # kept: the fence keeps writes safe meanwhile
        assert client.subscribed == set(TOPICS)
        warnings = [line for line in log.lines if line[0] in ("warning", "error")]
        assert len(warnings) == 1, [w[1] for w in warnings]  # one line, not one per failed round
        assert warnings[0][1].startswith("shard lease ")
        assert "what_to_do" in warnings[0][2]
        leases.away = False
        await until(lambda: bool(log.find("shard leases renewed and rebalanced again")))
        assert len([line for line in log.lines if line[0] in ("warning", "error")]) == 1
        await ha.round()
        assert ha.owned == held  # renewed at the same epochs: nobody took them
        assert gaps == []
        assert ha.failover_count == 0
    finally:
        await ha.stop()
        await leases.close()
        await outbox.close()
