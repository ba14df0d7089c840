"""The outbox contract, run against every store: SQLite and PostgreSQL.

These are the rules of :class:`gcbridge.outbox.base.OutboxStore` (the per-key rules of
:mod:`gcbridge.outbox.schedule`): dedup by key, at most one row of a key in flight, only a key's oldest
pending row eligible, leases, stored attempts, dead letters, retention, coalescing. Store-specific behaviour
(SQLite's file lock, WAL, grouped commits; PostgreSQL's migrations and concurrent claimers) is tested in
``test_outbox_sqlite.py`` and ``test_outbox_postgres.py``. Times are passed in (``now``): nothing waits on a
real clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gcbridge.outbox import ALL, OutboxItem, OutboxStore, SqliteOutbox
from gcbridge.outbox.postgres import PostgresOutbox

from .pg_fixtures import create_schema, drop_schema, pg_database

__all__ = ["pg_database"]  # a fixture: imported so that pytest finds it

LEASE_TTL = 30.0
RETENTION = 3600.0


def item(n: int, key: str, *, topic: str = "v2.conversations.x", payload: bytes | None = None) -> OutboxItem:
    body = payload if payload is not None else f'{{"n":{n},"key":"{key}"}}'.encode()
    return OutboxItem(dedup_key=f"evt-{n}", order_key=key, topic=topic, payload=body, received_at=1000.0 + n)


class Backend:
    """Opens stores of one kind; opening the same ``name`` again reopens the same storage."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._request = request
        self._urls: dict[str, str] = {}
        self._schemas: list[str] = []
        self._open: list[OutboxStore] = []

    async def open(self, name: str = "outbox") -> OutboxStore:
        store: OutboxStore
        if self.kind == "sqlite":
            store = await SqliteOutbox.open(
                self._tmp_path / f"{name}.db", lease_ttl=LEASE_TTL, retention=RETENTION
            )
        else:
            if name not in self._urls:
                schema = f"t_{uuid.uuid4().hex[:12]}"
                self._schemas.append(schema)
                self._urls[name] = await create_schema(self._database, schema)
            store = await PostgresOutbox.open(self._urls[name], lease_ttl=LEASE_TTL, retention=RETENTION)
        self._open.append(store)
        return store

    @property
    def _database(self) -> str:
        return str(self._request.getfixturevalue("pg_database"))

    async def close(self) -> None:
        for store in self._open:
            await store.close()
        for schema in self._schemas:
            await drop_schema(self._database, schema)


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        request.getfixturevalue("pg_database")  # fail here, clearly, when there is no server
    b = Backend(request.param, tmp_path, request)
    yield b
    await b.close()


@pytest.fixture
async def store(backend: Backend) -> OutboxStore:
    return await backend.open()


async def test_put_many_counts_only_new_rows_and_ignores_repeats(store: OutboxStore) -> None:
    assert await store.put_many([item(1, "a"), item(2, "a"), item(2, "a")]) == 2
    assert await store.put_many([item(2, "a"), item(3, "b")]) == 1
    assert (await store.stats(2000.0)).pending == 3


async def test_claim_gives_oldest_row_per_key_and_nothing_for_a_busy_key(store: OutboxStore) -> None:
    await store.put_many([item(1, "a"), item(2, "b"), item(3, "a"), item(4, "c"), item(5, "b")])
    first = await store.claim(10, now=2000.0)
    assert [(r.order_key, r.dedup_key) for r in first] == [("a", "evt-1"), ("b", "evt-2"), ("c", "evt-4")]
    assert await store.claim(10, now=2000.0) == []  # every key has a row in flight
    assert await store.ack([first[0].id], now=2001.0) == 1
    second = await store.claim(10, now=2001.0)
    assert [r.dedup_key for r in second] == ["evt-3"]


async def test_claim_respects_limit_and_payload_round_trips(store: OutboxStore) -> None:
    blob = b'{"secret-free":"\xc3\xa9t\xc3\xa9", "bin":"\x00\x01"}'
    await store.put_many([item(1, "a", payload=blob), item(2, "b"), item(3, "c")])
    rows = await store.claim(2, now=2000.0)
    assert len(rows) == 2
    assert rows[0].payload == blob
    assert rows[0].received_at == 1001.0


async def test_retry_time_is_stored_and_honoured(backend: Backend) -> None:
    s = await backend.open()
    await s.put_many([item(1, "a"), item(2, "a"), item(3, "b")])
    a1, b1 = await s.claim(10, now=100.0)
    assert await s.retry(a1.id, next_attempt_at=160.0, error="HTTP 503")
    await s.ack([b1.id], now=100.0)
    assert await s.next_due() == 160.0
    assert await s.claim(10, now=159.9) == []  # a's head waits, and a's second row waits behind it
    await s.close()

    s = await backend.open()  # nothing of the schedule lives only in the closed store
    try:
        assert await s.claim(10, now=159.9) == []
        (again,) = await s.claim(10, now=160.0)
        assert (again.id, again.attempts, again.last_error) == (a1.id, 1, "HTTP 503")
        info = await s.inspect(a1.id)
        assert info is not None
        assert info.next_attempt_at == 160.0
        assert info.state == "in_flight"
    finally:
        await s.close()


async def test_hold_keeps_attempts_and_puts_the_row_first(store: OutboxStore) -> None:
    await store.put_many([item(1, "a"), item(2, "b")])
    (row,) = await store.claim(1, now=2000.0)
    assert await store.hold(row.id, "HTTP 401 (authentication refused)")
    info = await store.inspect(row.id)
    assert info is not None
    assert (info.state, info.attempts, info.last_error) == ("pending", 0, "HTTP 401 (authentication refused)")
    (first,) = await store.claim(1, now=2000.0)
    assert first.id == row.id  # the held row is the next probe, ahead of rows that never failed
    assert not await store.hold(999, "x")


async def test_release_held_makes_backed_off_rows_due_now_and_survives_reopen(backend: Backend) -> None:
    s = await backend.open()
    await s.put_many([item(1, "a"), item(2, "b"), item(3, "a")])
    for row in await s.claim(2, now=2000.0):
        await s.retry(row.id, 10_000.0, "HTTP 401")  # a stored backoff far in the future
    assert await s.claim(5, now=2010.0) == []
    assert await s.release_held(2010.0) == 2
    assert await s.next_due() == 2010.0
    await s.close()
    s = await backend.open()  # the new due times were stored, not only kept in memory
    try:
        assert [r.dedup_key for r in await s.claim(5, now=2010.0)] == ["evt-1", "evt-2"]
        assert await s.release_held(2010.0) == 0
    finally:
        await s.close()


async def test_expired_lease_hands_the_row_out_again(store: OutboxStore) -> None:
    await store.put_many([item(1, "a")])
    (row,) = await store.claim(1, now=100.0)
    assert await store.claim(1, now=129.0) == []  # lease_ttl is 30 s
    (again,) = await store.claim(1, now=131.0)
    assert again.id == row.id
    info = await store.inspect(row.id)
    assert info is not None
    assert info.last_error == "claim lease expired"


async def test_dead_letter_keeps_a_readable_reason_and_releases_the_key(store: OutboxStore) -> None:
    await store.put_many([item(1, "a"), item(2, "a")])
    (row,) = await store.claim(1, now=100.0)
    assert await store.dead_letter(row.id, "rejected: HTTP 400 Invalid table u_genesys", now=101.0)
    (nxt,) = await store.claim(1, now=101.0)
    assert nxt.dedup_key == "evt-2"  # the dead row does not block its key
    (dead,) = await store.dead_letters()
    assert (dead.id, dead.state, dead.attempts) == (row.id, "dead", 1)
    assert dead.last_error == "rejected: HTTP 400 Invalid table u_genesys"
    assert dead.finished_at == 101.0
    assert (await store.stats(101.0)).dead == 1


async def test_replay_puts_dead_rows_back_with_attempts_reset(store: OutboxStore) -> None:
    await store.put_many([item(1, "a"), item(2, "b"), item(3, "a")])
    a, b = await store.claim(10, now=100.0)
    await store.retry(a.id, 100.0, "HTTP 503")
    (a,) = await store.claim(10, now=100.0)
    await store.dead_letter(a.id, "gave up", now=100.0)
    await store.dead_letter(b.id, "rejected", now=100.0)
    assert await store.replay([b.id, 999_999], now=200.0) == 1
    replayed = await store.inspect(b.id)
    assert replayed is not None
    assert (replayed.state, replayed.attempts) == ("pending", 0)
    # the replayed a-row keeps its id, so it goes before evt-3 of the same key
    assert await store.replay(ALL, now=200.0) == 1
    rows = await store.claim(10, now=200.0)
    assert sorted(r.dedup_key for r in rows) == ["evt-1", "evt-2"]
    assert (await store.stats(200.0)).dead == 0


async def test_purge_deletes_dead_rows_only_and_frees_their_dedup_keys(store: OutboxStore) -> None:
    await store.put_many([item(1, "a"), item(2, "b"), item(3, "c")])
    a, b, c = await store.claim(10, now=100.0)
    await store.dead_letter(a.id, "x", now=100.0)
    await store.dead_letter(b.id, "y", now=100.0)
    assert await store.purge([a.id, c.id]) == 1  # c is in flight, not dead: untouched
    assert await store.inspect(a.id) is None
    assert await store.put_many([item(1, "a")]) == 1  # accepted again
    assert await store.purge(ALL) == 1
    assert await store.dead_letters() == []
    with pytest.raises(ValueError, match="sequence of row ids"):
        await store.purge("everything")  # type: ignore[arg-type]


async def test_dead_letters_pages_in_id_order(store: OutboxStore) -> None:
    await store.put_many([item(i, f"k{i}") for i in range(7)])
    for row in await store.claim(10, now=100.0):
        await store.dead_letter(row.id, f"reason {row.id}", now=100.0)
    page1 = await store.dead_letters(limit=3)
    page3 = await store.dead_letters(limit=3, offset=6)
    assert [r.last_error for r in page1] == [f"reason {r.id}" for r in page1]
    assert [r.id for r in page1] == sorted(r.id for r in page1)
    assert len(page3) == 1
    assert page3[0].id > page1[-1].id


async def test_retention_deletes_old_delivered_rows_in_batches_and_dedups_until(store: OutboxStore) -> None:
    await store.put_many([item(i, f"k{i}") for i in range(12)])
    rows = await store.claim(12, now=100.0)
    await store.ack([r.id for r in rows[:10]], now=100.0)
    await store.dead_letter(rows[10].id, "bad", now=100.0)
    assert await store.expire_delivered(now=100.0 + 3599.0, batch=4) == 0  # retention is 3600 s
    assert await store.put_many([item(0, "k0")]) == 0  # still blocks the repeat
    assert await store.expire_delivered(now=100.0 + 3601.0, batch=4) == 4
    assert await store.expire_delivered(now=100.0 + 3601.0, batch=4) == 4
    assert await store.expire_delivered(now=100.0 + 3601.0, batch=4) == 2
    assert await store.expire_delivered(now=100.0 + 3601.0, batch=4) == 0
    stats = await store.stats(5000.0)
    assert (stats.delivered, stats.dead, stats.in_flight) == (0, 1, 1)  # dead and in-flight rows stay
    assert await store.put_many([item(0, "k0")]) == 1  # after retention a repeat is new again


async def test_stats_report_oldest_undelivered_age(store: OutboxStore) -> None:
    assert (await store.stats(5000.0)).oldest_pending_age == 0.0
    await store.put_many([item(1, "a"), item(2, "b")])  # received at 1001 and 1002
    await store.claim(1, now=2000.0)
    stats = await store.stats(2000.0)
    assert (stats.pending, stats.in_flight) == (1, 1)
    assert stats.oldest_pending_age == pytest.approx(999.0)


async def test_bad_items_fail_their_caller_clearly_and_store_nothing(store: OutboxStore) -> None:
    with pytest.raises(ValueError, match="item 1: order_key must be a non-empty str"):
        await store.put_many([item(1, "a"), OutboxItem("d", "", "t", b"{}", 1.0)])
    with pytest.raises(TypeError, match="payload must be bytes"):
        await store.put_many([OutboxItem("d", "k", "t", "text", 1.0)])  # type: ignore[arg-type]
    assert (await store.stats(0.0)).pending == 0


def whole_state(rows: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """A sink that writes whole-state records: the last write per key wins."""
    state: dict[str, bytes] = {}
    for key, payload in rows:
        state[key] = payload
    return state


async def deliver_bursts(backend: Backend, name: str, *, coalesce: bool) -> tuple[dict[str, bytes], int]:
    """Four bursts of 20 updates over 3 conversations, claimed while earlier rows are in flight; returns the
    whole-state sink's final records and how many writes it took."""
    s = await backend.open(name)
    try:
        n = 0
        writes: list[tuple[str, bytes]] = []

        async def step() -> bool:
            rows = await s.claim(10, now=100.0, coalesce=coalesce)
            writes.extend((r.order_key, r.payload) for r in rows)
            await s.ack([r.id for r in rows], now=100.0)
            return bool(rows)

        for burst in range(4):
            items = []
            for i in range(20):
                n += 1
                key = f"conv-{i % 3}"
                body = f'{{"key":"{key}","version":{n},"burst":{burst}}}'.encode()
                items.append(item(n, key, payload=body))
            await s.put_many(items)
            await step()
            await step()
        while await step():
            pass
        stats = await s.stats(100.0)
        assert (stats.pending, stats.in_flight, stats.delivered) == (0, 0, 80)
        return whole_state(writes), len(writes)
    finally:
        await s.close()


async def test_coalescing_reaches_the_same_final_state_with_fewer_writes(backend: Backend) -> None:
    plain, plain_writes = await deliver_bursts(backend, "plain", coalesce=False)
    merged, merged_writes = await deliver_bursts(backend, "merged", coalesce=True)
    assert merged == plain
    # the truth: the last update of each conversation (versions 78, 79, 80 in the last burst)
    assert {k: int(v.split(b'"version":')[1].split(b",")[0]) for k, v in plain.items()} == {
        "conv-0": 79,
        "conv-1": 80,
        "conv-2": 78,
    }
    assert plain_writes == 80
    assert merged_writes < 30  # a burst of updates to one conversation became one write


async def test_coalescing_never_merges_across_topics(store: OutboxStore) -> None:
    await store.put_many(
        [
            item(1, "a", topic="t.calls"),
            item(2, "a", topic="t.calls"),
            item(3, "a", topic="t.wrapup"),
            item(4, "a"),
        ]
    )
    (row,) = await store.claim(5, now=100.0, coalesce=True)
    assert row.dedup_key == "evt-2"
    older = await store.inspect(row.id - 1)
    assert older is not None
    assert (older.state, older.detail) == ("delivered", f"superseded by #{row.id}")
    await store.ack([row.id], now=100.0)
    (row,) = await store.claim(5, now=100.0, coalesce=True)
    assert row.dedup_key == "evt-3"  # a different topic is not superseded by the calls rows
