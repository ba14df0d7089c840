"""The service in this process on a PostgreSQL outbox: the gap journal in the database (the single-instance
downtime gap included), and two ``[ha]`` services sharing the topics by shard leases."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gcbridge.bridge.config import BridgeConfig, parse_config
from gcbridge.bridge.gaps_pg import PgGapJournal
from gcbridge.bridge.service import BridgeService
from gcbridge.core.shard_leases import ShardMap
from gcbridge.genesys.events import Event, Gap
from gcbridge.sim.genesys.bodies import BodyGenerator
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.integration.pg_fixtures import create_schema, drop_schema, pg_database

from .conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER, ScriptedClient, wait_for

__all__ = ["pg_database"]

TOPICS = [f"v2.routing.queues.5e1f{i:04d}-0000-4000-8000-00000000{i:04d}.conversations" for i in range(1, 9)]


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


def config(sn: ServiceNowSim, url: str, topics: list[str], ha: dict[str, Any] | None = None) -> BridgeConfig:
    data: dict[str, Any] = {
        "genesys": {
            "base_url": "http://127.0.0.1:9",
            "client_id": "cid",
            "client_secret": GENESYS_SECRET,
            "topics": topics,
        },
        "servicenow": {
            "instance_url": sn.base_url,
            "auth": {"kind": "basic", "username": SN_USER, "password": SN_PASSWORD},
        },
        "outbox": {"url": url, "dispatcher": {"backoff_initial": 0.05, "backoff_max": 0.5}},
        "admin": {"enabled": False},
    }
    if ha is not None:
        data["ha"] = ha
    return parse_config(data)


async def gaps_in(url: str) -> list[dict[str, Any]]:
    async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
        return [dict(r) for r in await pool.fetch("SELECT reason, recorded_by, shard FROM gaps ORDER BY id")]


async def test_the_gap_journal_lives_in_postgresql_and_keeps_the_downtime_gap(
    tmp_path: Path, sn: ServiceNowSim, url: str
) -> None:
    from .conftest import TOPICS as topics

    client = ScriptedClient()
    service = BridgeService(config(sn, url, topics), install_signals=False, client_factory=lambda _c: client)
    await service.start()
    try:
        assert isinstance(service.journal, PgGapJournal)
        now = time.time()
        client.queue.put_nowait(Gap(start=now - 2, end=now - 1, topics=(topics[0],), reason="socket_dropped"))
        await wait_for(lambda: service.journal.count == 1, what="the client's gap journalled")
    finally:
        await service.stop()
    assert not (tmp_path / "gcbridge-gaps.jsonl").exists()
    # a restart finds the clean mark in the database and journals the time it was away
    again = BridgeService(
        config(sn, url, topics), install_signals=False, client_factory=lambda _c: ScriptedClient()
    )
    await again.start()
    try:
        assert again.journal.recent[-1]["reason"] == "service_down"
        assert [g["reason"] for g in again.journal.recent] == ["socket_dropped", "service_down"]
    finally:
        await again.stop()
    assert [g["reason"] for g in await gaps_in(url)] == ["socket_dropped", "service_down"]


async def test_two_ha_services_share_the_shards_and_each_subscribes_only_its_own(
    tmp_path: Path, sn: ServiceNowSim, url: str
) -> None:
    ha = {"shards": 4, "lease_ttl": 1.0, "handoff_overlap": 0.1, "handoff_timeout": 5.0}
    clients = {"a": ScriptedClient(), "b": ScriptedClient()}
    services = {
        name: BridgeService(
            config(sn, url, TOPICS, {**ha, "instance_id": name}),
            install_signals=False,
            client_factory=lambda _c, n=name: clients[n],  # type: ignore[misc]
        )
        for name in clients
    }
    shard_map = ShardMap(TOPICS, 4)

    def topics_of(name: str) -> set[str]:
        coordinator = services[name].ha
        assert coordinator is not None
        return {t for s in coordinator.owned for t in shard_map.topics(s)}

    await services["a"].start()
    try:
        assert set(clients["a"].subscribed) == set(TOPICS)  # alone: every shard, live when start returns
        await services["b"].start()
        await wait_for(
            lambda: len(services["a"].ha.owned) == 2 and len(services["b"].ha.owned) == 2,  # type: ignore[union-attr]
            what="two shards each",
        )
        await wait_for(
            lambda: set(clients["a"].subscribed) == topics_of("a"), what="a unsubscribed b's shards"
        )
        assert set(clients["b"].subscribed) == topics_of("b")
        assert not topics_of("a") & topics_of("b")
        b_took = services["b"].ha.recent_takes  # type: ignore[union-attr]
        assert [(t["previous_owner"], t["handoff"], t["gap_seconds"]) for t in b_took] == [
            ("a", True, None)
        ] * 2
        # a writes the events of its own shards, not those of b's (b writes those)
        mine, theirs = sorted(topics_of("a"))[0], sorted(topics_of("b"))[0]
        bodies = BodyGenerator(3, conversation_pool=4)
        for i, topic in enumerate([mine, theirs]):
            clients["a"].queue.put_nowait(
                Event(
                    topic=topic,
                    body=bodies.body(topic),
                    version="2",
                    metadata={"seq": i},
                    dedup_key=str(uuid.uuid4()),
                    received_at=time.time(),
                )
            )
        ingest = services["a"].ingest
        assert ingest is not None
        await wait_for(lambda: ingest.received == 2, what="a's batch handled")
        async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
            rows = await pool.fetch("SELECT topic, ingested_by FROM outbox")
        assert [(r["topic"], r["ingested_by"]) for r in rows] == [(mine, "a")]
    finally:
        await services["b"].stop()
        await services["a"].stop()
    assert await gaps_in(url) == []  # a planned move, then a drain that hands everything back: no gap


async def test_a_lease_that_ran_out_while_nobody_could_take_it_is_kept_without_a_gap(url: str) -> None:
    # as after a database outage longer than the TTL: the coordinator's rounds stop, then resume
    from gcbridge.bridge.config import HaConfig
    from gcbridge.bridge.ha import HaCoordinator
    from gcbridge.outbox.pg_leases import ShardLeaseStore
    from gcbridge.outbox.postgres import PostgresOutbox

    await (await PostgresOutbox.open(url)).close()
    leases = await ShardLeaseStore.open(url, "a")
    gaps: list[dict[str, Any]] = []

    async def on_gap(entry: dict[str, Any]) -> None:
        gaps.append(entry)

    try:
        await leases.join(shards=2, client_id="c", wanted_budget=6, ttl=1.0, host="h", pid=1)
        cfg = HaConfig(shards=2, lease_ttl=1.0, handoff_overlap=0.0)
        ha = HaCoordinator(
            cfg, instance_id="a", shard_map=ShardMap(TOPICS, 2), leases=leases, log=_Quiet(), on_gap=on_gap
        )
        client = ScriptedClient()
        ha.client = client
        await ha.round()
        first = dict(ha.owned)
        assert set(first) == {0, 1}
        await asyncio.sleep(1.3)  # every lease ran out; nobody else is there to take them
        await ha.round()
        assert ha.owned == first  # renewed at the same epochs
        assert gaps == []
        assert set(client.subscribed) == set(TOPICS)
    finally:
        await leases.close()


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


async def test_a_service_that_finds_no_channels_left_for_its_oauth_client_does_not_start(
    sn: ServiceNowSim, url: str
) -> None:
    from gcbridge.bridge.ha import open_postgres_parts
    from gcbridge.outbox.pg_leases import BudgetExhausted, ShardLeaseStore
    from gcbridge.outbox.postgres import PostgresOutbox

    await (await PostgresOutbox.open(url)).close()
    others = [await ShardLeaseStore.open(url, name) for name in ("x", "y")]
    try:
        for store in others:
            await store.join(shards=4, client_id="cid", wanted_budget=10, ttl=60.0, host="h", pid=1)
        service = BridgeService(
            config(sn, url, TOPICS, {"shards": 4, "instance_id": "z"}),
            install_signals=False,
            client_factory=lambda _c: ScriptedClient(),
        )
        assert await service.run() == 1  # start-up failed: one clear line, exit code 1
        with pytest.raises(BudgetExhausted, match="OAuth client 'cid': live instances hold 20 of its 20"):
            await open_postgres_parts(
                service.config, TOPICS, log=_Quiet(), on_gap=_no_gap, channels_in_use=lambda: 0
            )
    finally:
        for store in others:
            await store.close()


async def _no_gap(entry: dict[str, Any]) -> None:
    raise AssertionError(f"no gap expected: {entry}")
