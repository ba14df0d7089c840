"""Shard leases and fencing against a real PostgreSQL: two "instances" in one test, each with its own pools
(to the database they are separate processes), short lease TTLs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gcbridge.core.shard_leases import Lease, topics_digest
from gcbridge.outbox import OutboxItem
from gcbridge.outbox.fencing import Fence, LeaseLost
from gcbridge.outbox.pg_leases import BudgetExhausted, ConfigMismatch, ShardLeaseStore, takeover_gap
from gcbridge.outbox.postgres import PostgresOutbox

from .pg_fixtures import create_schema, drop_schema, pg_database

__all__ = ["pg_database"]

TTL = 1.0


def item(n: int, topic: str = "v2.users.u.presence") -> OutboxItem:
    return OutboxItem(f"evt-{n}", f"k{n}", topic, b"{}", 1000.0 + n)


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


class Instance:
    def __init__(self, outbox: PostgresOutbox, leases: ShardLeaseStore) -> None:
        self.outbox, self.leases = outbox, leases

    @property
    def id(self) -> str:
        return self.leases.instance_id


async def instance(url: str, name: str, *, client_id: str = "client-a", budget: int = 6) -> Instance:
    outbox = await PostgresOutbox.open(url, owner=name)
    leases = await ShardLeaseStore.open(url, name)
    await leases.join(shards=4, client_id=client_id, wanted_budget=budget, ttl=TTL, host="test", pid=1)
    return Instance(outbox, leases)


async def close(*instances: Instance) -> None:
    for i in instances:
        await i.outbox.close()
        await i.leases.close()


async def lease(inst: Instance, shard: int) -> Lease:
    snap = await inst.leases.snapshot(4, TTL)
    return snap.leases[shard]


async def test_a_fenced_write_needs_the_lease_at_its_epoch_and_inserts_nothing_otherwise(url: str) -> None:
    a, b = await instance(url, "a"), await instance(url, "b")
    try:
        taken = await a.leases.take(0, await lease(a, 0), TTL, topics=["t"])
        assert taken is not None
        assert taken.epoch == 1
        assert taken.gap is None  # never owned before: nothing to report
        assert await a.outbox.put_many([item(1)], fence=Fence("a", {0: 1})) == 1
        # b may not write shard 0, nor may a at a stale epoch
        with pytest.raises(LeaseLost) as lost:
            await b.outbox.put_many([item(2)], fence=Fence("b", {0: 1}))
        assert lost.value.shards == frozenset({0})
        with pytest.raises(LeaseLost):
            await a.outbox.put_many([item(3)], fence=Fence("a", {0: 0}))
        # a shard a never held, in the same batch: nothing of the batch is written
        with pytest.raises(LeaseLost) as lost:
            await a.outbox.put_many([item(4), item(5)], fence=Fence("a", {0: 1, 1: 0}))
        assert lost.value.shards == frozenset({1})
        assert (await a.outbox.stats(2000.0)).pending == 1
        written = await a.outbox.inspect(1)
        assert written is not None
    finally:
        await close(a, b)


async def test_an_expired_lease_fences_its_owner_and_the_taker_reports_the_gap_once(url: str) -> None:
    a, b = await instance(url, "a"), await instance(url, "b")
    try:
        first = await a.leases.take(0, await lease(a, 0), TTL, topics=["t"])
        assert first is not None
        assert await a.leases.renew({0: first.epoch}, TTL, channels_in_use=1) == {0}
        covered = (await a.leases.snapshot(4, TTL)).now
        # a stops renewing (a paused process): its lease runs out by the database clock
        await asyncio.sleep(TTL + 0.3)
        with pytest.raises(LeaseLost):
            await a.outbox.put_many([item(1)], fence=Fence("a", {0: first.epoch}))
        seen = await lease(b, 0)
        taken = await b.leases.take(0, seen, TTL, topics=["v2.users.u.presence"])
        assert taken is not None
        assert taken.epoch == first.epoch + 1
        assert taken.gap is not None
        assert taken.gap["reason"] == "service_crashed"
        assert taken.gap["start"] >= covered - 0.5
        assert taken.gap["end"] - taken.gap["start"] >= TTL
        # a second taker working from the same stale row loses the race and reports nothing
        assert await a.leases.take(0, seen, TTL, topics=["t"]) is None
        # a's renewal fails: it must drop the shard
        assert await a.leases.renew({0: first.epoch}, TTL, channels_in_use=1) == set()
        async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
            gaps = await pool.fetch("SELECT reason, recorded_by, shard, topics FROM gaps")
        assert [(g["reason"], g["recorded_by"], g["shard"]) for g in gaps] == [("service_crashed", "b", 0)]
        assert await b.outbox.put_many([item(2)], fence=Fence("b", {0: taken.epoch})) == 1
    finally:
        await close(a, b)


async def test_a_handoff_to_a_live_taker_reports_no_gap_and_fences_the_giver(url: str) -> None:
    a, b = await instance(url, "a"), await instance(url, "b")
    try:
        first = await a.leases.take(0, await lease(a, 0), TTL, topics=["t"])
        assert first is not None
        # only the instance offered to may take a held lease
        assert await b.leases.take(0, await lease(b, 0), TTL, topics=["t"]) is None
        assert await a.leases.offer(0, first.epoch, "b")
        taken = await b.leases.take(0, await lease(b, 0), TTL, topics=["t"])
        assert taken is not None
        assert taken.gap is None
        with pytest.raises(LeaseLost):
            await a.outbox.put_many([item(1)], fence=Fence("a", {0: first.epoch}))
        assert await a.leases.renew({0: first.epoch}, TTL, 0) == set()
    finally:
        await close(a, b)


async def test_a_released_shard_is_taken_at_once_with_a_service_down_gap(url: str) -> None:
    a, b = await instance(url, "a"), await instance(url, "b")
    try:
        first = await a.leases.take(0, await lease(a, 0), TTL, topics=["t"])
        assert first is not None
        assert await a.leases.release({0: first.epoch}) == 1
        await asyncio.sleep(0.05)
        taken = await b.leases.take(0, await lease(b, 0), TTL, topics=["t"])
        assert taken is not None
        assert taken.gap is not None
        assert taken.gap["reason"] == "service_down"
    finally:
        await close(a, b)


async def test_a_takeover_waits_for_a_fenced_write_in_progress_then_fences_the_next(url: str) -> None:
    a, b = await instance(url, "a"), await instance(url, "b")
    try:
        first = await a.leases.take(0, await lease(a, 0), TTL, topics=["t"])
        assert first is not None
        assert await a.leases.offer(0, first.epoch, "b")
        seen = await lease(b, 0)
        # a's write holds the lease row while it commits; the take waits for it, then wins
        async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool, pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.fetch("SELECT 1 FROM shard_leases WHERE shard = 0 FOR KEY SHARE")  # as the fence locks
            take = asyncio.create_task(b.leases.take(0, seen, TTL, topics=["t"]))
            await asyncio.sleep(0.3)
            assert not take.done()
            await tx.commit()
            assert await asyncio.wait_for(take, 10) is not None
    finally:
        await close(a, b)


async def test_the_channel_budget_of_an_oauth_client_is_shared_by_its_live_instances(url: str) -> None:
    a = await instance(url, "a", budget=8)
    b = await instance(url, "b", budget=8)
    try:
        leases = await ShardLeaseStore.open(url, "c")
        try:
            granted = await leases.join(
                shards=4, client_id="client-a", wanted_budget=8, ttl=TTL, host="h", pid=1
            )
            assert granted == 4  # 20 - 8 - 8
            d = await ShardLeaseStore.open(url, "d")
            try:
                with pytest.raises(BudgetExhausted, match="client-a"):
                    await d.join(shards=4, client_id="client-a", wanted_budget=8, ttl=TTL, host="h", pid=1)
                # another OAuth client has its own 20
                assert (
                    await d.join(shards=4, client_id="client-b", wanted_budget=8, ttl=TTL, host="h", pid=1)
                    == 8
                )
                # a stopped instance's channels are free again
                await a.leases.set_state("stopped")
                assert (
                    await d.join(shards=4, client_id="client-a", wanted_budget=8, ttl=TTL, host="h", pid=1)
                    == 8
                )
            finally:
                await d.close()
        finally:
            await leases.close()
    finally:
        await close(a, b)


def test_takeover_gap_rules() -> None:
    assert takeover_gap(held=True, covered_until=10.0, live_at=20.0) is None
    assert takeover_gap(held=False, covered_until=None, live_at=20.0) is None
    assert takeover_gap(held=False, covered_until=25.0, live_at=20.0) is None
    assert takeover_gap(held=False, covered_until=10.0, live_at=20.0) == (10.0, 20.0)


async def test_a_restart_under_the_same_id_takes_its_leases_back_at_once_with_the_gap(url: str) -> None:
    a = await instance(url, "a")
    try:
        first = await a.leases.take(0, await lease(a, 0), TTL * 10, topics=["t"])
        assert first is not None
    finally:
        await close(a)
    again = await instance(url, "a")  # the same id, a new process: it knows no epoch
    try:
        seen = await lease(again, 0)
        assert seen.owner == "a"
        taken = await again.leases.take(0, seen, TTL, topics=["t"])
        assert taken is not None
        assert taken.epoch == first.epoch + 1
        assert taken.gap is not None
        assert taken.gap["reason"] == "service_crashed"
    finally:
        await close(again)


async def test_a_lease_that_ran_out_untaken_is_renewed_and_writable_again(url: str) -> None:
    # the database was unreachable for longer than the TTL: nobody took the shard, so it is still ours
    a = await instance(url, "a")
    try:
        first = await a.leases.take(0, await lease(a, 0), TTL, topics=["t"])
        assert first is not None
        await asyncio.sleep(TTL + 0.3)
        with pytest.raises(LeaseLost):
            await a.outbox.put_many([item(1)], fence=Fence("a", {0: first.epoch}))
        assert await a.leases.renew({0: first.epoch}, TTL, 0) == {0}
        assert await a.outbox.put_many([item(1)], fence=Fence("a", {0: first.epoch})) == 1
    finally:
        await close(a)


async def test_an_instance_with_another_number_of_shards_cannot_join(url: str) -> None:
    a = await ShardLeaseStore.open(url, "a")
    b = await ShardLeaseStore.open(url, "b")
    await (await PostgresOutbox.open(url)).close()

    async def join(store: ShardLeaseStore, topics: list[str], shards: int) -> int:
        return await store.join(
            shards=shards,
            client_id="c",
            wanted_budget=4,
            ttl=TTL,
            host="h",
            pid=1,
            topics_digest=topics_digest(topics),
        )

    try:
        await join(a, ["t1", "t2"], 4)
        with pytest.raises(ConfigMismatch, match="'a' has \\[ha\\] shards = 4, this one 8"):
            await join(b, ["t1", "t2"], 8)
        # other topics (a rolling change of the list): allowed, and said
        assert await join(b, ["t1", "t3"], 4) == 4
        assert b.other_topic_lists == ["a"]
        assert await join(b, ["t2", "t1"], 4) == 4  # the same list in another order
        assert b.other_topic_lists == []
    finally:
        await a.close()
        await b.close()


async def test_a_join_forgets_instances_gone_longer_than_the_horizon(url: str) -> None:
    a = await instance(url, "a")
    conn = await asyncpg.connect(url)
    try:
        # two instances that stopped (or died) long ago, heard from 8 and 2 days ago by the database clock
        for name, days in (("gone-8d", 8), ("gone-2d", 2)):
            await conn.execute(
                "INSERT INTO instances(id, client_id, started_at, heartbeat_at, channel_budget, shards) "
                "VALUES ($1, 'client-a', 0, extract(epoch from clock_timestamp()) - $2, 6, 4)",
                name,
                days * 86400.0,
            )
        b = await instance(url, "b")
        ids = {r["id"] for r in await conn.fetch("SELECT id FROM instances")}
    finally:
        await conn.close()
    try:
        assert ids == {"a", "b", "gone-2d"}  # the 7-day horizon: live ones and recent history stay
        assert b.leases.forgotten == 1
        assert a.leases.forgotten == 0
    finally:
        await close(a, b)
