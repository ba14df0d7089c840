"""The outbox on PostgreSQL (asyncpg): one database shared by any number of gcbridge processes.

Usage::

    store = await PostgresOutbox.open("postgresql://gcbridge@db.example/gcbridge")
    new = await store.put_many(items)          # committed when this returns
    rows = await store.claim(64, now=time.time())
    ...
    await store.close()

Same contract as :class:`~gcbridge.outbox.sqlite.SqliteOutbox` (see :class:`~gcbridge.outbox.base.OutboxStore`
and the rules in :mod:`gcbridge.outbox.schedule`), but the rules are kept by SQL rather than by an in-memory
index, because other processes change the same rows:

* a pending row is claimable when it is due and no other undelivered row of its key is older or in flight
  (two ``NOT EXISTS`` probes on ``outbox_undelivered_by_key``);
* claimers lock candidates ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait for each other and
  never take the same row;
* the partial unique index ``outbox_one_in_flight_per_key`` makes "one row of a key in flight" a database
  invariant: a claim that raced past the probes fails with a unique violation, is rolled back and retried.

Every write is one transaction (``put_many`` is ``INSERT ... ON CONFLICT DO NOTHING`` inside one), so that a
later fencing check ("my lease on this shard still holds") can be added to the same transaction.

In-flight rows are reclaimed when their lease expires, by whichever process claims next. At open, rows still
leased to this store's ``owner`` are reclaimed at once: with a stable ``owner`` (a host name), a restarted
process takes back its own claims without waiting for the lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gcbridge.outbox.base import (
    ALL,
    OutboxItem,
    OutboxRow,
    OutboxStats,
    RowInfo,
    Selection,
)
from gcbridge.outbox.fencing import Fence, LeaseLost
from gcbridge.outbox.pg_schema import migrate
from gcbridge.outbox.rowcodes import (
    DEAD,
    DELIVERED,
    IN_FLIGHT,
    PENDING,
    STATE_NAMES,
    clip_error,
    item_params,
    newest_by_state,
    not_older,
    same_state,
)

__all__ = ["OutboxConnectError", "PostgresOutbox", "redact_url"]

T = TypeVar("T")

_CLAIM_ATTEMPTS = 5  # a unique violation means another claimer won a race on a key: try again, not fail

_ROW_COLUMNS = "id, dedup_key, order_key, topic, payload, received_at, attempts, last_error"
_INFO_COLUMNS = (
    "id, dedup_key, order_key, topic, payload, received_at, state, attempts, next_attempt_at, last_error, "
    "lease_owner, lease_expires_at, finished_at, detail"
)

# A row is its key's claimable head when nothing older of its key waits and nothing of its key is in flight.
_IS_HEAD = """NOT EXISTS (
    SELECT 1 FROM outbox o
    WHERE o.order_key = p.order_key AND o.state IN (0, 1) AND (o.state = 1 OR o.id < p.id)
)"""

# Due heads, earliest due first, locked; rows another claimer holds are skipped rather than waited for.
_PICK_HEADS = f"""
SELECT p.id, p.order_key, p.topic FROM outbox p
WHERE p.state = 0 AND p.next_attempt_at <= $1 AND {_IS_HEAD}
ORDER BY p.next_attempt_at, p.id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - constants only

_CLAIM_HEADS = f"""
WITH picked AS (
    SELECT p.id, p.next_attempt_at FROM outbox p
    WHERE p.state = 0 AND p.next_attempt_at <= $1 AND {_IS_HEAD}
    ORDER BY p.next_attempt_at, p.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET state = 1, lease_owner = $3, lease_expires_at = $4 FROM picked WHERE o.id = picked.id
RETURNING picked.next_attempt_at, o.id, o.dedup_key, o.order_key, o.topic, o.payload,
    o.received_at, o.attempts, o.last_error
"""  # noqa: S608 - constants only

_MARK_IN_FLIGHT = f"""
UPDATE outbox SET state = 1, lease_owner = $2, lease_expires_at = $3 WHERE id = ANY($1::bigint[])
RETURNING {_ROW_COLUMNS}
"""  # noqa: S608 - constants only

# The earliest due head: walks pending rows in due order and stops at the first that is its key's head.
_NEXT_DUE = f"""
SELECT p.next_attempt_at FROM outbox p WHERE p.state = 0 AND {_IS_HEAD}
ORDER BY p.next_attempt_at, p.id LIMIT 1
"""  # noqa: S608 - constants only

# Items in their order (ids follow it), repeats by dedup key ignored; the new rows' ids come back.
# $6: the instance that wrote the rows under a fence (NULL otherwise)
_INSERT_ITEMS = (
    "INSERT INTO outbox(dedup_key, order_key, topic, payload, received_at, ingested_by) "
    "SELECT d, o, t, p, r, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], "
    "$5::float8[]) WITH ORDINALITY AS i(d, o, t, p, r, n) ORDER BY n "
    "ON CONFLICT (dedup_key) DO NOTHING RETURNING id"
)

_RECLAIM_EXPIRED = (
    "UPDATE outbox SET state = 0, lease_owner = NULL, lease_expires_at = NULL, "
    "last_error = 'claim lease expired' WHERE state = 1 AND lease_expires_at <= $1"
)


class OutboxConnectError(RuntimeError):
    """The PostgreSQL outbox could not be opened: bad URL, server unreachable, login refused, no privilege.

    The message names the URL without its password.
    """


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable URL>"


class PostgresOutbox:
    """Durable outbox on PostgreSQL; satisfies :class:`gcbridge.outbox.base.OutboxStore`.

    Create it with :meth:`open`. Times are UNIX seconds passed in by the caller (``now``), as for SQLite; all
    processes sharing a database must have synchronised clocks (leases and due times compare across them).
    """

    def __init__(self, pool: Any, url: str, *, lease_ttl: float, retention: float, owner: str) -> None:
        self.url = redact_url(url)
        self.lease_ttl = lease_ttl
        self.retention = retention
        self.owner = owner
        self._pool = pool
        self.recovered_on_open = 0
        """How many rows leased to this ``owner`` were in flight at open (left by a previous incarnation)."""
        self.migrations_applied: list[int] = []
        """Schema versions this open applied (empty when the database was current)."""
        self.fence_hold_limit = 5.0
        """Seconds a fenced write may sit idle inside its transaction (a paused process) before the server
        ends its session: the lease rows it locked must not block a takeover for longer. Set it below the
        shard lease TTL."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        lease_ttl: float = 300.0,
        retention: float = 24 * 3600.0,
        owner: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> PostgresOutbox:
        """Connect to ``url`` (``postgresql://user[:password]@host[:port]/database``), apply pending schema
        migrations and reclaim rows this ``owner`` left in flight.

        ``lease_ttl`` and ``retention`` mean what they mean for :meth:`SqliteOutbox.open`. ``pool_size``:
        connections kept open (concurrent operations beyond it wait for one). Raises
        :class:`OutboxConnectError` with one line that names the URL without its password.
        """
        if lease_ttl <= 0 or retention < 0 or pool_size < 1:
            raise ValueError("lease_ttl must be > 0, retention >= 0 and pool_size >= 1")
        shown = redact_url(url)
        scheme = urlsplit(url).scheme if "://" in url else ""
        if scheme not in ("postgresql", "postgres"):
            raise OutboxConnectError(f"outbox URL {shown!r} must start with postgresql://")
        try:
            # min_size=0: with a floor, asyncpg reconnects in the background while the server is down and
            # logs a traceback per try; without one, the next call reconnects (open() connects at once below)
            pool = await asyncpg.create_pool(
                url, min_size=0, max_size=pool_size, timeout=connect_timeout, command_timeout=60.0
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise OutboxConnectError(
                f"cannot open the PostgreSQL outbox at {shown}: {_describe(exc, url)}"
            ) from None
        owner_name = owner if owner is not None else f"gcbridge-{uuid.uuid4().hex[:12]}"
        store = cls(pool, url, lease_ttl=lease_ttl, retention=retention, owner=owner_name)
        try:
            async with pool.acquire() as conn:
                store.migrations_applied = await migrate(conn)
                store.recovered_on_open = _count(
                    await conn.execute(
                        "UPDATE outbox SET state = 0, lease_owner = NULL, lease_expires_at = NULL "
                        "WHERE state = 1 AND lease_owner = $1",
                        owner_name,
                    )
                )
        except (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidPasswordError,
            asyncpg.InvalidCatalogNameError,
        ) as exc:
            # the pool connects lazily: the first acquire is where an unreachable server or a refused login
            # shows
            await pool.close()
            raise OutboxConnectError(
                f"cannot open the PostgreSQL outbox at {shown}: {_describe(exc, url)}"
            ) from None
        except asyncpg.PostgresError as exc:
            await pool.close()
            raise OutboxConnectError(
                f"cannot prepare the PostgreSQL outbox at {shown}: {_describe(exc, url)}"
            ) from None
        except BaseException:
            await pool.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"PostgresOutbox(url={self.url!r}, owner={self.owner!r})"

    @property
    def pool(self) -> Any:
        """The asyncpg pool, for the tables that live beside the outbox (hot standby coverage)."""
        return self._pool

    # -- ingest ------------------------------------------------------------------------------------------

    async def put_many(self, items: Sequence[OutboxItem], *, fence: Fence | None = None) -> int:
        """Store ``items`` in one transaction; returns how many were new. Repeats (same ``dedup_key``, in
        this batch or stored: pending, delivered within retention, dead until purged) are ignored. Ids follow
        the order of ``items``.

        With a ``fence`` (several instances, see :mod:`gcbridge.outbox.fencing`), the same transaction first
        locks the lease rows of ``fence.epochs`` against a takeover and checks them; a lease no longer held
        raises :class:`~gcbridge.outbox.fencing.LeaseLost` and nothing is inserted."""
        if not items:
            return 0
        params = [item_params(i, item) for i, item in enumerate(items)]
        columns = list(zip(*params, strict=True))
        writer = fence.owner if fence is not None else None

        async def put(conn: Any) -> int:
            if fence is not None:
                await _check_fence(conn, fence, self.fence_hold_limit)
            rows = await conn.fetch(
                _INSERT_ITEMS,
                *columns,
                writer,
            )
            return len(rows)

        return await self._write(put, durable=True)

    async def put_unless_newer(
        self, items: Sequence[OutboxItem], *, after_id: int = 0, state_of: Callable[[str], str] = same_state
    ) -> int:
        """Like :meth:`put_many`, for back-filled states (``received_at``: the moment the state was read): an
        item is skipped when a row of its ``order_key`` with an id above ``after_id`` was received after the
        item's ``received_at`` (or an earlier item of ``items`` was), so that an older state never lands
        behind a newer live one. Returns how many were stored.

        The table is locked against other writers (``SHARE``; readers go on) for this one transaction, so a
        live put still uncommitted when the check runs cannot slip in beside it; back-fill is rare and its
        batches short. ``after_id``: :meth:`last_id` taken before the states were read (rows received later
        have higher ids, so only they are scanned, by primary key: no index on ``order_key`` is needed).
        ``state_of``: as in :meth:`gcbridge.outbox.sqlite.SqliteOutbox.put_unless_newer`."""
        if not items:
            return 0
        params = [item_params(i, item) for i, item in enumerate(items)]
        keys = sorted({p[1] for p in params})

        async def put(conn: Any) -> int:
            await conn.execute("LOCK TABLE outbox IN SHARE MODE")
            found = await conn.fetch(
                "SELECT order_key, topic, MAX(received_at) FROM outbox "
                "WHERE id > $1 AND order_key = ANY($2::text[]) GROUP BY order_key, topic",
                after_id,
                keys,
            )
            newest = newest_by_state(((r[0], r[1], r[2]) for r in found), state_of)
            kept = not_older(params, newest, state_of)
            if not kept:
                return 0
            rows = await conn.fetch(
                _INSERT_ITEMS,
                *zip(*kept, strict=True),
                None,
            )
            return len(rows)

        return await self._write(put, durable=True)

    async def last_id(self) -> int:
        """The highest row id stored so far (0 for an empty outbox); see :meth:`put_unless_newer`."""
        return int(await self._read(lambda conn: conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM outbox")))

    async def transact(self, op: Callable[[Any], Awaitable[T]], *, durable: bool = False) -> T:
        """Run ``op(connection)`` in one transaction of this store's pool, for tables that live beside the
        outbox in this database (back-fill jobs)."""
        return await self._write(op, durable=durable)

    # -- delivery ----------------------------------------------------------------------------------------

    async def claim(self, limit: int, now: float, *, coalesce: bool = False) -> list[OutboxRow]:
        """Up to ``limit`` due rows, each the oldest undelivered row of its key with nothing of its key in
        flight, earliest due first. Expired leases are reclaimed first. See :meth:`OutboxStore.claim`."""
        if limit <= 0:
            return []
        for attempt in range(_CLAIM_ATTEMPTS):
            try:
                return await self._write(lambda conn: self._claim(conn, limit, now, coalesce))
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                # another claimer won a race on a key (or on an expired lease): the rollback undid ours
                if attempt == _CLAIM_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _claim(self, conn: Any, limit: int, now: float, coalesce: bool) -> list[OutboxRow]:
        await conn.execute(_RECLAIM_EXPIRED, now)
        lease = (self.owner, now + self.lease_ttl)
        if not coalesce:  # the hot path: pick, lock, mark and return in one statement
            rows = await conn.fetch(_CLAIM_HEADS, now, limit, *lease)
            return [OutboxRow(*r[1:]) for r in sorted(rows, key=lambda r: (r[0], r[1]))]  # due, id
        heads = await conn.fetch(_PICK_HEADS, now, limit)
        chosen = [await self._coalesce(conn, head_id, key, topic, now) for head_id, key, topic in heads]
        if not chosen:
            return []
        rows = await conn.fetch(_MARK_IN_FLIGHT, chosen, *lease)
        by_id = {r["id"]: OutboxRow(*r) for r in rows}
        return [by_id[i] for i in chosen]

    async def _coalesce(self, conn: Any, head_id: int, order_key: str, topic: str, now: float) -> int:
        """Collapse the run of pending same-topic rows at the front of the key to its newest row."""
        run = await conn.fetch(
            "SELECT id FROM outbox WHERE order_key = $1 AND state = 0 AND id >= $2 AND topic = $3 "
            "AND id < COALESCE((SELECT MIN(id) FROM outbox WHERE order_key = $1 AND state = 0 AND id > $2 "
            "AND topic <> $3), 9223372036854775807) ORDER BY id FOR UPDATE",
            order_key,
            head_id,
            topic,
        )
        ids = [r["id"] for r in run]
        newest = ids[-1]
        if len(ids) > 1:
            await conn.execute(
                "UPDATE outbox SET state = 2, finished_at = $2, detail = $3 WHERE id = ANY($1::bigint[])",
                ids[:-1],
                now,
                f"superseded by #{newest}",
            )
        return int(newest)

    async def next_due(self) -> float | None:
        """When the earliest waiting head becomes claimable; ``None`` if no row waits (or all keys busy).

        A query, not a cached value: other processes change the rows too.
        """
        return await self._read(lambda conn: conn.fetchval(_NEXT_DUE))

    async def ack(self, row_ids: Sequence[int], now: float) -> int:
        """Mark rows this store has in flight delivered; other ids (already acked, lease expired and the row
        handed to another claimer) are ignored."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        return await self._write(
            lambda conn: _counted(
                conn.execute(
                    "UPDATE outbox SET state = 2, finished_at = $2, lease_owner = NULL, "
                    "lease_expires_at = NULL "
                    "WHERE id = ANY($1::bigint[]) AND state = 1 AND lease_owner = $3",
                    ids,
                    now,
                    self.owner,
                )
            )
        )

    async def retry(self, row_id: int, next_attempt_at: float, error: str) -> bool:
        """Back to pending, due at ``next_attempt_at``, one more attempt counted, ``error`` kept as
        ``last_error``. Later rows of the key wait for it. ``False`` if this store does not hold the row in
        flight (a claimer whose lease expired must not release the row under its new holder)."""
        changed = await self._write(
            lambda conn: _counted(
                conn.execute(
                    "UPDATE outbox SET state = 0, attempts = attempts + 1, next_attempt_at = $2, "
                    "last_error = $3, lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE id = $1 AND state = 1 AND lease_owner = $4",
                    row_id,
                    next_attempt_at,
                    clip_error(error),
                    self.owner,
                )
            )
        )
        return changed == 1

    async def hold(self, row_id: int, error: str) -> bool:
        """Back to pending without counting an attempt (the sink as a whole failed, not this row), due first
        (time 0) so that the next probe of the sink retries it. ``False`` if this store does not hold the
        row in flight."""
        changed = await self._write(
            lambda conn: _counted(
                conn.execute(
                    "UPDATE outbox SET state = 0, next_attempt_at = 0, last_error = $2, "
                    "lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE id = $1 AND state = 1 AND lease_owner = $3",
                    row_id,
                    clip_error(error),
                    self.owner,
                )
            )
        )
        return changed == 1

    async def release_held(self, now: float) -> int:
        """Every pending row due later than ``now`` becomes due at ``now`` (on recovery from a sink-wide
        condition and at start); returns how many."""
        return await self._write(
            lambda conn: _counted(
                conn.execute(
                    "UPDATE outbox SET next_attempt_at = $1 WHERE state = 0 AND next_attempt_at > $1", now
                )
            )
        )

    async def dead_letter(self, row_id: int, reason: str, now: float) -> bool:
        """Move a pending or in-flight row to the dead-letter list with ``reason`` (counted as an attempt
        when it was in flight). Its key is released: later rows proceed. ``False`` if the row was neither
        pending nor in flight under this store's lease."""
        changed = await self._write(
            lambda conn: _counted(
                conn.execute(
                    "UPDATE outbox SET state = 3, "
                    "attempts = attempts + CASE WHEN state = 1 THEN 1 ELSE 0 END, "
                    "last_error = $2, finished_at = $3, lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE id = $1 AND (state = 0 OR (state = 1 AND lease_owner = $4))",
                    row_id,
                    clip_error(reason),
                    now,
                    self.owner,
                )
            )
        )
        return changed == 1

    # -- inspection and the dead-letter workflow -------------------------------------------------------

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[RowInfo]:
        """Dead-lettered rows, oldest id first, ``limit`` at a time from ``offset``."""
        rows = await self._read(
            lambda conn: conn.fetch(
                f"SELECT {_INFO_COLUMNS} FROM outbox WHERE state = 3 ORDER BY id LIMIT $1 OFFSET $2",  # noqa: S608 - constants only
                limit,
                offset,
            )
        )
        return [_info(r) for r in rows]

    async def inspect(self, row_id: int) -> RowInfo | None:
        """One row in any state, ``None`` when there is no such row (never stored, expired or purged)."""
        row = await self._read(
            lambda conn: conn.fetchrow(f"SELECT {_INFO_COLUMNS} FROM outbox WHERE id = $1", row_id)  # noqa: S608 - constants only
        )
        return None if row is None else _info(row)

    async def replay(self, rows: Selection, now: float) -> int:
        """Dead rows (``ALL`` or the given ids; other ids are ignored) back to pending, due at once, with
        attempts reset. A replayed row keeps its id, so it goes before later pending rows of its key."""
        where, ids = _selection(rows)
        return await self._write(
            lambda conn: _counted(
                conn.execute(
                    "UPDATE outbox SET state = 0, attempts = 0, next_attempt_at = 0, finished_at = NULL "  # noqa: S608 - constants only
                    f"WHERE state = 3 {where}",
                    *ids,
                )
            ),
            durable=True,
        )

    async def purge(self, rows: Selection) -> int:
        """Delete dead rows (``ALL`` or the given ids; other ids are ignored). Their dedup keys are freed."""
        where, ids = _selection(rows)
        return await self._write(
            lambda conn: _counted(conn.execute(f"DELETE FROM outbox WHERE state = 3 {where}", *ids)),  # noqa: S608 - constants only
            durable=True,
        )

    async def expire_delivered(self, now: float, *, batch: int = 500) -> int:
        """Delete up to ``batch`` delivered rows finished before ``now - retention``; returns how many."""
        return await self._write(
            lambda conn: _counted(
                conn.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
                    "WHERE state = 2 AND finished_at < $1 "
                    "LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    now - self.retention,
                    batch,
                )
            )
        )

    async def stats(self, now: float) -> OutboxStats:
        """Row counts by state and the age of the oldest undelivered row (pending or in flight)."""

        async def read(conn: Any) -> OutboxStats:
            counts = dict(await conn.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
            oldest = await conn.fetchval(
                "SELECT received_at FROM outbox WHERE id = (SELECT MIN(id) FROM outbox WHERE state IN (0, 1))"
            )
            return OutboxStats(
                pending=counts.get(PENDING, 0),
                in_flight=counts.get(IN_FLIGHT, 0),
                dead=counts.get(DEAD, 0),
                delivered=counts.get(DELIVERED, 0),
                oldest_pending_age=0.0 if oldest is None else max(0.0, now - oldest),
            )

        return await self._read(read)

    async def close(self) -> None:
        """Wait for running operations, then close the connections. Idempotent."""
        await self._pool.close()

    async def __aenter__(self) -> PostgresOutbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------------------------

    async def _write(self, op: Callable[[Any], Awaitable[T]], *, durable: bool = False) -> T:
        """Run ``op`` in one transaction (the place a later fencing check joins every write).

        Only ``durable`` writes (ingest, replay, purge) wait for the WAL flush. Claims, acks, retries and
        dead-letterings do not, as in SQLite: losing the newest of them to a server crash only hands a row out
        again (at-least-once), and the WAL is ordered, so the next flushed commit persists them too.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if not durable:
                await conn.execute("SET LOCAL synchronous_commit = off")
            return await op(conn)

    async def _read(self, op: Callable[[Any], Awaitable[T]]) -> T:
        async with self._pool.acquire() as conn:
            return await op(conn)


async def _check_fence(conn: Any, fence: Fence, hold_limit: float) -> None:
    """Lock ``fence``'s lease rows (a takeover, which locks the row ``FOR UPDATE``, waits for this
    transaction) and raise :class:`LeaseLost` for those that ``fence.owner`` does not hold at the given
    epoch, unexpired by the database clock. One round trip."""
    shards = sorted(fence.epochs)
    # A process paused inside this transaction must not keep the rows locked: the server ends its session.
    rows = await conn.fetch(
        "SELECT shard, owner, epoch, expires_at > extract(epoch from clock_timestamp()) AS valid, "
        "set_config('idle_in_transaction_session_timeout', $2, true) "
        "FROM shard_leases WHERE shard = ANY($1::int[]) ORDER BY shard FOR KEY SHARE",
        shards,
        str(int(hold_limit * 1000)),
    )
    held = {
        r["shard"]
        for r in rows
        if r["owner"] == fence.owner and r["valid"] and r["epoch"] == fence.epochs[r["shard"]]
    }
    lost = frozenset(shards) - held
    if lost:
        raise LeaseLost(fence.owner, lost)


async def _counted(status: Awaitable[str]) -> int:
    return _count(await status)


def _count(status: str) -> int:
    """Rows affected, from a command tag such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


def _info(row: Any) -> RowInfo:
    values = list(row)
    values[6] = STATE_NAMES[values[6]]
    return RowInfo(*values)


def _selection(rows: Selection) -> tuple[str, list[list[int]]]:
    if isinstance(rows, str):
        if rows != ALL:
            raise ValueError(f"rows must be a sequence of row ids or {ALL!r}, got {rows!r}")
        return "", []
    return "AND id = ANY($1::bigint[])", [[int(r) for r in rows]]


def _describe(exc: BaseException, url: str) -> str:
    """The reason in one line, never the password (asyncpg may echo parts of the DSN)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return f"{type(exc).__name__}: {text}"
