"""What only the PostgreSQL outbox has: several stores claiming from one database at once, the per-key rule
enforced by the database, schema migrations, and clear errors when the database cannot be used. The shared
contract is in ``test_outbox_contract.py``."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from gcbridge.bridge.config import OutboxConfig
from gcbridge.bridge.outbox_choice import open_outbox
from gcbridge.core.backoff import BackoffPolicy
from gcbridge.outbox import Delivered, Dispatcher, OutboxItem, OutboxRow, Outcome, Retry
from gcbridge.outbox.pg_schema import migrations
from gcbridge.outbox.postgres import OutboxConnectError, PostgresOutbox, redact_url

from .pg_fixtures import create_schema, drop_schema, pg_database

__all__ = ["pg_database"]  # a fixture: imported so that pytest finds it


def item(n: int, key: str, *, topic: str = "v2.conversations.x") -> OutboxItem:
    return OutboxItem(f"evt-{n}", key, topic, f'{{"n":{n}}}'.encode(), 1000.0 + n)


@pytest.fixture
async def url(pg_database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_schema(pg_database, schema)
    await drop_schema(pg_database, schema)


async def test_concurrent_claimers_never_have_two_rows_of_a_key_in_flight(url: str) -> None:
    # four stores, four connection pools: to the database these are four separate claimers
    stores = [await PostgresOutbox.open(url, lease_ttl=30.0) for _ in range(4)]
    try:
        total = 400
        await stores[0].put_many([item(n, f"k{n % 8}") for n in range(total)])
        in_flight: dict[str, int] = {}
        delivered: dict[str, list[int]] = defaultdict(list)
        done = asyncio.Event()

        async def claimer(store: PostgresOutbox) -> None:
            while not done.is_set():
                rows = await store.claim(3, now=100.0)
                for row in rows:
                    assert row.order_key not in in_flight, f"{row.order_key}: {in_flight.get(row.order_key)}"
                    in_flight[row.order_key] = row.id
                await asyncio.sleep(0)  # let the other claimers run while these rows are in flight
                for row in rows:
                    # forget it before the ack: the key's next row may be claimed as soon as the ack commits
                    del in_flight[row.order_key]
                    delivered[row.order_key].append(row.id)
                if rows:
                    await store.ack([r.id for r in rows], now=100.0)
                if sum(map(len, delivered.values())) == total:
                    done.set()
                if not rows:
                    await asyncio.sleep(0.001)

        await asyncio.wait_for(asyncio.gather(*(claimer(s) for s in stores)), timeout=60)
        assert sum(map(len, delivered.values())) == total
        for key, ids in delivered.items():
            assert ids == sorted(ids), f"key {key} delivered out of order"
            assert len(set(ids)) == len(ids), f"key {key} delivered a row twice"
        stats = await stores[0].stats(100.0)
        assert (stats.pending, stats.in_flight, stats.delivered) == (0, 0, total)
    finally:
        for store in stores:
            await store.close()


async def test_the_database_itself_refuses_a_second_row_of_a_key_in_flight(url: str) -> None:
    store = await PostgresOutbox.open(url)
    try:
        await store.put_many([item(1, "a"), item(2, "a")])
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("UPDATE outbox SET state = 1 WHERE dedup_key = 'evt-1'")
            with pytest.raises(asyncpg.UniqueViolationError, match="outbox_one_in_flight_per_key"):
                await conn.execute("UPDATE outbox SET state = 1 WHERE dedup_key = 'evt-2'")
        finally:
            await conn.close()
    finally:
        await store.close()


async def test_concurrent_starters_apply_each_migration_once(url: str) -> None:
    stores = await asyncio.gather(*(PostgresOutbox.open(url) for _ in range(5)))
    try:
        latest = len(migrations())
        applied = sorted(v for s in stores for v in s.migrations_applied)
        assert applied == list(range(1, latest + 1))  # one starter migrated, the others found it done
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version, name FROM schema_version ORDER BY version")
        finally:
            await conn.close()
        assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in migrations()]
    finally:
        for store in stores:
            await store.close()
    again = await PostgresOutbox.open(url)
    assert again.migrations_applied == []
    await again.close()


async def test_a_restarted_owner_takes_back_its_claims_and_others_wait_for_the_lease(url: str) -> None:
    first = await PostgresOutbox.open(url, owner="host-a", lease_ttl=30.0)
    await first.put_many([item(1, "a"), item(2, "b")])
    claimed = await first.claim(10, now=100.0)
    assert len(claimed) == 2
    await first.close()  # as if the process died with two rows in flight

    other = await PostgresOutbox.open(url, owner="host-b", lease_ttl=30.0)
    assert other.recovered_on_open == 0
    assert await other.claim(10, now=101.0) == []  # host-a's leases still hold
    await other.close()

    restarted = await PostgresOutbox.open(url, owner="host-a", lease_ttl=30.0)
    try:
        assert restarted.recovered_on_open == 2
        assert sorted(r.id for r in await restarted.claim(10, now=101.0)) == sorted(r.id for r in claimed)
    finally:
        await restarted.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:s3cret-pw@127.0.0.1/db", "must start with postgresql://"),
        (
            "postgresql://u:s3cret-pw@127.0.0.1:1/db",
            "cannot open the PostgreSQL outbox at postgresql://u:***@",
        ),
    ],
)
async def test_unusable_urls_fail_with_one_line_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(OutboxConnectError) as caught:
        await PostgresOutbox.open(url, connect_timeout=5.0)
    message = str(caught.value)
    assert expected in message
    assert "s3cret-pw" not in message
    assert "\n" not in message


async def test_a_missing_database_is_named_in_the_error(pg_database: str) -> None:
    missing = pg_database.rsplit("/", 1)[0] + "/gcbridge_no_such_database"
    with pytest.raises(OutboxConnectError, match=r"gcbridge_no_such_database.*does not exist"):
        await PostgresOutbox.open(missing)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://bridge:pw@db.example:5433/gc?sslmode=require") == (
        "postgresql://bridge:***@db.example:5433/gc?sslmode=require"
    )
    assert redact_url("postgresql://bridge@db.example/gc") == "postgresql://bridge@db.example/gc"


async def test_repr_and_attributes_never_show_the_password(url: str) -> None:
    with_password = url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    store = await PostgresOutbox.open(with_password)  # trust auth: the password is ignored by the server
    try:
        assert "hunter2" not in repr(store)
        assert "hunter2" not in store.url
    finally:
        await store.close()


async def test_the_service_names_outbox_url_when_the_database_cannot_be_opened() -> None:
    cfg = OutboxConfig(url=SecretStr("postgresql://bridge:s3cret-pw@127.0.0.1:1/gcbridge"))
    with pytest.raises(OutboxConnectError) as caught:
        await open_outbox(cfg)
    message = str(caught.value)
    assert message.startswith("[outbox] url: cannot open the PostgreSQL outbox at postgresql://bridge:***@")
    assert "s3cret-pw" not in message


async def test_the_service_opens_postgresql_when_a_url_is_configured(url: str) -> None:
    store = await open_outbox(OutboxConfig(url=SecretStr(url)))
    try:
        assert isinstance(store, PostgresOutbox)
        assert await store.put_many([item(1, "a")]) == 1
    finally:
        await store.close()


class FlakySink:
    """Fails the first attempt of every third row (a 503), accepts everything else; records the order."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.delivered: dict[str, list[int]] = defaultdict(list)

    async def deliver(self, row: OutboxRow) -> Outcome:
        if row.id % 3 == 0 and row.id not in self.seen:
            self.seen.add(row.id)
            return Retry("HTTP 503")
        self.delivered[row.order_key].append(row.id)
        return Delivered()


async def test_the_dispatcher_delivers_from_postgresql_in_order_through_retries(url: str) -> None:
    clock = [1_000_000.0]
    store = await PostgresOutbox.open(url)
    sink = FlakySink()
    dispatcher = Dispatcher(
        store,
        sink,
        concurrency=4,
        backoff=BackoffPolicy(initial=0.5, factor=2, cap=1, jitter="none"),
        clock=lambda: clock[0],
        idle_poll=0.01,
    )
    runner = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.ingest([item(n, f"k{n % 5}") for n in range(60)])
        for _ in range(2000):  # the fake clock moves only when the dispatcher has to wait for a retry
            stats = await store.stats(clock[0])
            if stats.delivered == 60:
                break
            clock[0] += 0.25
            dispatcher.notify()
            await asyncio.sleep(0.005)
        assert (await store.stats(clock[0])).delivered == 60
        for key, ids in sink.delivered.items():
            assert ids == sorted(ids), f"{key} out of order"
        assert sum(len(v) for v in sink.delivered.values()) == 60
        retried = await store.inspect(3)
        assert retried is not None
        assert (retried.state, retried.attempts, retried.last_error) == ("delivered", 1, "HTTP 503")
    finally:
        await dispatcher.drain(timeout=10)
        await runner
        await store.close()


async def test_a_claimer_whose_lease_expired_cannot_release_the_row_under_its_new_holder(url: str) -> None:
    slow = await PostgresOutbox.open(url, owner="slow", lease_ttl=30.0)
    fast = await PostgresOutbox.open(url, owner="fast", lease_ttl=30.0)
    try:
        await slow.put_many([item(1, "a"), item(2, "a")])
        (row,) = await slow.claim(5, now=100.0)
        (again,) = await fast.claim(5, now=131.0)  # slow's lease ran out: the row is fast's now
        assert again.id == row.id
        assert await slow.retry(row.id, 131.0, "HTTP 503") is False
        assert await slow.dead_letter(row.id, "gave up", now=131.0) is False
        assert await slow.ack([row.id], now=131.0) == 0
        assert await fast.claim(5, now=131.0) == []  # still fast's, so key a's next row still waits
        assert await fast.ack([row.id], now=132.0) == 1
        (nxt,) = await fast.claim(5, now=132.0)
        assert nxt.dedup_key == "evt-2"
    finally:
        await slow.close()
        await fast.close()
