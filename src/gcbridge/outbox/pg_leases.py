"""Shard leases and instance heartbeats in PostgreSQL: the I/O half of :mod:`gcbridge.core.shard_leases`.

Every time here is the DATABASE clock (``extract(epoch from clock_timestamp())``), never the caller's, so that
instances on machines whose clocks drift still agree on who holds what. Each method is one short
transaction; every change of a lease is a conditional update on what the caller last saw (owner, epoch,
handoff), so two instances acting on the same stale snapshot cannot both win.

The gap of a takeover (the time in which no instance received the shard) is written into the ``gaps`` table
in the same transaction that takes the lease, so it is reported exactly once, by the instance that takes over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg

from gcbridge.core.shard_leases import Lease
from gcbridge.core.standby_cover import Hole
from gcbridge.outbox.pg_gaps import insert_gap
from gcbridge.outbox.pg_standby import STANDBY_FRESH, standby_holes

__all__ = [
    "BudgetExhausted",
    "ConfigMismatch",
    "Member",
    "ShardLeaseStore",
    "Snapshot",
    "TakeResult",
    "takeover_gap",
]

T = TypeVar("T")

DB_NOW: Final = "extract(epoch from clock_timestamp())"
CHANNEL_LIMIT: Final = 20
"""Channels Genesys allows one OAuth client (a 21st evicts the oldest unconnected one)."""
_BUDGET_LOCK: Final = 0x6763_6272_6264_6774  # advisory lock serialising budget grants ("gcbrbdgt")
INSTANCES_KEPT: Final = 7 * 86400.0
"""Seconds an instance's row stays in ``instances`` after its last heartbeat. Only live rows count (budget,
planning, status: a heartbeat within the lease TTL), so older rows are history; with ``instance_id``
defaulting to ``<host>-<pid>`` every start adds one, and each join forgets those gone longer than this."""


_UPSERT_INSTANCE: Final = (
    "INSERT INTO instances(id, client_id, state, started_at, heartbeat_at, channel_budget, host, pid, "  # noqa: S608 - constants only
    f"shards, topics_digest) VALUES ($1, $2, 'running', {DB_NOW}, {DB_NOW}, $3, $4, $5, $6, $7) "
    f"ON CONFLICT (id) DO UPDATE SET client_id = $2, state = 'running', started_at = {DB_NOW}, "
    f"heartbeat_at = {DB_NOW}, channel_budget = $3, host = $4, pid = $5, shards = $6, topics_digest = $7"
)


class BudgetExhausted(RuntimeError):
    """The OAuth client's channels are all granted to live instances; this one cannot join now."""


class ConfigMismatch(RuntimeError):
    """A live instance divides the topics into another number of shards: the two would disagree on which
    topic is in which shard."""


@dataclass(frozen=True, slots=True)
class Member:
    """A live instance (fresh heartbeat) as the planner and the status page see it."""

    id: str
    state: str
    heartbeat_at: float
    channel_budget: int
    channels_in_use: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Leases and live instances read in one transaction, with the database time they were read at."""

    now: float
    leases: dict[int, Lease]
    members: list[Member]

    def running(self) -> list[str]:
        """Ids of live instances that are not leaving: the planner's members."""
        return sorted(m.id for m in self.members if m.state == "running")


@dataclass(frozen=True, slots=True)
class TakeResult:
    """A lease taken: its new epoch, and the gap entry written with it (``None`` for a clean handoff)."""

    shard: int
    epoch: int
    gap: dict[str, Any] | None
    more_gaps: tuple[dict[str, Any], ...] = ()
    """Further gap entries when a hot standby covered the middle of the interval but not its ends."""
    provisional: tuple[dict[str, Any], ...] = ()
    """Parts of the interval that only a live hot standby may have covered (its coverage lags its frames by
    a publish): NOT journalled yet. Pass this result to :meth:`ShardLeaseStore.settle` after
    :data:`~gcbridge.outbox.pg_standby.STANDBY_FRESH` seconds; it journals what the standby did not cover."""


def takeover_gap(*, held: bool, covered_until: float | None, live_at: float) -> tuple[float, float] | None:
    """The interval nobody covered before a takeover (pure): none if the previous owner still held the
    lease (a make-before-break handoff) or nobody ever owned the shard; else from the last covered moment
    to the moment the new owner is live."""
    if held or covered_until is None or live_at <= covered_until:
        return None
    return covered_until, live_at


class ShardLeaseStore:
    """The lease table, the instance registry and the takeover gaps of one instance ``instance_id``.

    Open it with :meth:`open` (its own small pool, so that renewals never queue behind outbox work).
    """

    def __init__(self, pool: Any, instance_id: str) -> None:
        self.instance_id = instance_id
        self.other_topic_lists: list[str] = []
        """Live instances whose topic list differed from this one's at :meth:`join`."""
        self.forgotten = 0
        """Rows of instances gone for longer than ``forget_after`` that :meth:`join` deleted."""
        self._pool = pool

    @classmethod
    async def open(cls, url: str, instance_id: str, *, pool_size: int = 2) -> ShardLeaseStore:
        # min_size=0: a floor makes asyncpg reconnect in the background while the server is down, logging a
        # traceback per try (see PostgresOutbox.open)
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=pool_size, timeout=10.0, command_timeout=30.0
        )
        return cls(pool, instance_id)

    async def close(self) -> None:
        await self._pool.close()

    def __repr__(self) -> str:
        return f"ShardLeaseStore(instance_id={self.instance_id!r})"

    # -- membership ---------------------------------------------------------------------------------------

    async def join(
        self,
        *,
        shards: int,
        client_id: str,
        wanted_budget: int,
        ttl: float,
        host: str,
        pid: int,
        limit: int = CHANNEL_LIMIT,
        minimum: int = 2,
        topics_digest: str | None = None,
        forget_after: float = INSTANCES_KEPT,
    ) -> int:
        """Register this instance and grant it a channel budget: at most ``wanted_budget``, and never more
        than ``limit`` minus what live instances on the same OAuth client hold. Creates missing shard rows.
        Raises :class:`BudgetExhausted` when fewer than ``minimum`` channels are left, and
        :class:`ConfigMismatch` when a live instance has another number of ``shards``. Live instances whose
        topic list differs (:func:`gcbridge.core.shard_leases.topics_digest`; a rolling change of the topics)
        are listed in :attr:`other_topic_lists` afterwards. Rows of instances not heard from for
        ``forget_after`` seconds are deleted (their number is in :attr:`forgotten` afterwards)."""

        async def op(conn: Any) -> int:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BUDGET_LOCK)
            await conn.execute(
                "INSERT INTO shard_leases(shard) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
                shards,
            )
            # instances gone long ago are history nobody reads (each start under a new id adds a row)
            status = await conn.execute(
                f"DELETE FROM instances WHERE id <> $1 AND heartbeat_at < {DB_NOW} - $2",  # noqa: S608 - constants only
                self.instance_id,
                max(forget_after, ttl),
            )
            self.forgotten = int(status.rsplit(" ", 1)[-1])
            others = await conn.fetch(
                f"SELECT id, shards, topics_digest FROM instances WHERE id <> $1 AND state <> 'stopped' "  # noqa: S608 - constants only
                f"AND heartbeat_at > {DB_NOW} - $2 ORDER BY id",
                self.instance_id,
                ttl,
            )
            for other in others:
                if other["shards"] != shards:
                    raise ConfigMismatch(
                        f"the running instance {other['id']!r} has [ha] shards = {other['shards']}, this one "
                        f"{shards}; every instance must divide the topics into the same number of shards"
                    )
            self.other_topic_lists = [o["id"] for o in others if o["topics_digest"] != topics_digest]
            used = await conn.fetchval(
                f"SELECT COALESCE(SUM(channel_budget), 0) FROM instances WHERE client_id = $1 AND id <> $2 "  # noqa: S608 - constants only
                f"AND state <> 'stopped' AND heartbeat_at > {DB_NOW} - $3",
                client_id,
                self.instance_id,
                ttl,
            )
            granted = min(wanted_budget, limit - int(used))
            if granted < minimum:
                raise BudgetExhausted(
                    f"OAuth client {client_id!r}: live instances hold {used} of its {limit} channels; "
                    f"this instance needs at least {minimum}"
                )
            await conn.execute(
                _UPSERT_INSTANCE,
                self.instance_id,
                client_id,
                granted,
                host,
                pid,
                shards,
                topics_digest,
            )
            return granted

        return await self._tx(op)

    async def set_state(self, state: str) -> None:
        """``leaving`` (draining: others take its shards) or ``stopped`` (its budget is free again)."""
        await self._tx(
            lambda conn: conn.execute(
                f"UPDATE instances SET state = $2, heartbeat_at = {DB_NOW} WHERE id = $1",  # noqa: S608 - constants only
                self.instance_id,
                state,
            )
        )

    # -- the lease cycle ----------------------------------------------------------------------------------

    async def renew(self, owned: Mapping[int, int], ttl: float, channels_in_use: int) -> set[int]:
        """Heartbeat, and extend each owned shard's lease (at the epoch held) by ``ttl`` from now; returns
        the shards renewed. A shard missing from the answer is lost: another instance took it (the epoch
        moved on), and the caller must drop it at once. A lease that ran out but that nobody took (the
        database was unreachable for longer than ``ttl``) is renewed: nobody else wrote that shard meanwhile,
        and the fence refused this instance's writes while it was expired."""

        async def op(conn: Any) -> set[int]:
            await conn.execute(
                f"UPDATE instances SET heartbeat_at = {DB_NOW}, channels_in_use = $2 WHERE id = $1",  # noqa: S608 - constants only
                self.instance_id,
                channels_in_use,
            )
            if not owned:
                return set()
            rows = await conn.fetch(
                f"UPDATE shard_leases l SET expires_at = {DB_NOW} + $3, covered_until = {DB_NOW} "  # noqa: S608 - constants only
                "FROM unnest($1::int[], $2::bigint[]) AS o(shard, epoch) "
                "WHERE l.shard = o.shard AND l.epoch = o.epoch AND l.owner = $4 "
                "RETURNING l.shard",
                list(owned),
                list(owned.values()),
                ttl,
                self.instance_id,
            )
            return {r["shard"] for r in rows}

        return await self._tx(op)

    async def snapshot(self, shards: int, ttl: float) -> Snapshot:
        """The lease rows of shards ``0 .. shards-1`` and the instances heard from within ``ttl``."""

        async def op(conn: Any) -> Snapshot:
            now = float(await conn.fetchval(f"SELECT {DB_NOW}"))
            rows = await conn.fetch(
                "SELECT shard, owner, epoch, expires_at, handoff_to, handoff_at FROM shard_leases "
                "WHERE shard < $1",
                shards,
            )
            members = await conn.fetch(
                "SELECT id, state, heartbeat_at, channel_budget, channels_in_use FROM instances "
                "WHERE state <> 'stopped' AND heartbeat_at > $1 ORDER BY id",
                now - ttl,
            )
            return Snapshot(
                now=now,
                leases={r["shard"]: Lease(*r) for r in rows},
                members=[Member(*m) for m in members],
            )

        return await self._tx(op)

    async def offer(self, shard: int, epoch: int, to: str) -> bool:
        """Ask ``to`` to take over ``shard`` (held by this instance at ``epoch``)."""
        status = await self._tx(
            lambda conn: conn.execute(
                f"UPDATE shard_leases SET handoff_to = $3, handoff_at = {DB_NOW} "  # noqa: S608 - constants only
                "WHERE shard = $1 AND epoch = $2 AND owner = $4 AND handoff_to IS NULL",
                shard,
                epoch,
                to,
                self.instance_id,
            )
        )
        return bool(status.endswith(" 1"))

    async def withdraw(self, shard: int, epoch: int) -> bool:
        """Cancel this instance's offer of ``shard`` (the taker did not come in time)."""
        status = await self._tx(
            lambda conn: conn.execute(
                "UPDATE shard_leases SET handoff_to = NULL, handoff_at = NULL "
                "WHERE shard = $1 AND epoch = $2 AND owner = $3",
                shard,
                epoch,
                self.instance_id,
            )
        )
        return bool(status.endswith(" 1"))

    async def take(
        self,
        shard: int,
        seen: Lease,
        ttl: float,
        *,
        topics: Sequence[str],
        live_at: float | None = None,
    ) -> TakeResult | None:
        """Take ``shard`` if its row is still as ``seen`` (same epoch; offered to this instance, not held by
        anyone, or held under this instance's id by a previous run of it). Subscribe BEFORE calling this: the
        lease moves when this instance is already live. The gap since the last covered moment (if the lease
        was not held) is journalled in the same transaction with ``topics``; it ends at ``live_at`` (database
        time; default: now). ``None`` if another instance won the race."""

        async def op(conn: Any) -> TakeResult | None:
            row = await conn.fetchrow(
                f"SELECT owner, epoch, expires_at > {DB_NOW} AS held, handoff_to, covered_until, "  # noqa: S608 - constants only
                f"change_reason, {DB_NOW} AS now FROM shard_leases WHERE shard = $1 FOR UPDATE",
                shard,
            )
            if row is None or row["epoch"] != seen.epoch:
                return None
            held = bool(row["held"]) and row["owner"] is not None
            if held and row["owner"] == self.instance_id:
                # a previous run under the same instance_id held it: nobody covered it since that run's
                # last renewal, so take it back at once and report that interval
                held = False
            elif held and row["handoff_to"] != self.instance_id:
                return None  # someone holds it and did not offer it to us
            now = float(row["now"])
            end = min(live_at, now) if live_at is not None else now
            epoch = int(row["epoch"]) + 1
            reason = "handoff" if held else "takeover"
            await conn.execute(
                f"UPDATE shard_leases SET owner = $2, epoch = $3, expires_at = {DB_NOW} + $4, "  # noqa: S608 - constants only
                f"covered_until = {DB_NOW}, handoff_to = NULL, handoff_at = NULL, changed_at = {DB_NOW}, "
                "change_reason = $5 WHERE shard = $1",
                shard,
                self.instance_id,
                epoch,
                ttl,
                reason,
            )
            interval = takeover_gap(held=held, covered_until=row["covered_until"], live_at=end)
            if interval is None:
                return TakeResult(shard, epoch, None)
            released = row["change_reason"] == "released"
            # what a hot standby delivered meanwhile is not a gap: only what no path covered is journalled
            definite, provisional = await standby_holes(
                conn, interval[0], interval[1], topics, fresh=STANDBY_FRESH
            )
            detail = (
                f"shard {shard} had no live owner (previous owner {row['owner']!r} "
                f"{'released it' if released else 'stopped renewing'}); taken over by "
                f"{self.instance_id!r}; back-fill this interval through the REST APIs"
            )
            gap_reason = "service_down" if released else "service_crashed"
            entries = [_gap_entry(hole, gap_reason, detail, now) for hole in definite]
            for entry in entries:
                await insert_gap(conn, entry, recorded_by=self.instance_id, shard=shard)
            later = tuple(_gap_entry(hole, gap_reason, detail, now) for hole in provisional)
            if not entries:
                return TakeResult(shard, epoch, None, provisional=later)
            return TakeResult(shard, epoch, entries[0], tuple(entries[1:]), later)

        return await self._tx(op)

    async def settle(self, taken: TakeResult) -> list[dict[str, Any]]:
        """Journal what of ``taken.provisional`` no standby covered after all (strict, now that it has
        published past the takeover); returns those entries. Call once, some seconds after :meth:`take`."""
        if not taken.provisional:
            return []

        async def op(conn: Any) -> list[dict[str, Any]]:
            entries = []
            for pending in taken.provisional:
                holes, _ = await standby_holes(conn, pending["start"], pending["end"], pending["topics"])
                now = float(await conn.fetchval(f"SELECT {DB_NOW}"))
                for hole in holes:
                    entry = _gap_entry(hole, pending["reason"], pending["detail"], now)
                    await insert_gap(conn, entry, recorded_by=self.instance_id, shard=taken.shard)
                    entries.append(entry)
            return entries

        return await self._tx(op)

    async def release(self, owned: Mapping[int, int]) -> int:
        """Let go of ``owned`` shards at once (a drain whose handoffs did not finish): the next owner takes
        them without waiting for the TTL and reports the gap from now."""
        if not owned:
            return 0

        async def op(conn: Any) -> int:
            status = await conn.execute(
                f"UPDATE shard_leases l SET owner = NULL, expires_at = 0, covered_until = {DB_NOW}, "  # noqa: S608 - constants only
                f"handoff_to = NULL, handoff_at = NULL, changed_at = {DB_NOW}, change_reason = 'released' "
                "FROM unnest($1::int[], $2::bigint[]) AS o(shard, epoch) "
                "WHERE l.shard = o.shard AND l.epoch = o.epoch AND l.owner = $3",
                list(owned),
                list(owned.values()),
                self.instance_id,
            )
            return int(status.rsplit(" ", 1)[-1])

        return await self._tx(op)

    async def _tx(self, op: Callable[[Any], Awaitable[T]]) -> T:
        async with self._pool.acquire() as conn, conn.transaction():
            return await op(conn)


def _gap_entry(hole: Hole, reason: str, detail: str, now: float) -> dict[str, Any]:
    return {
        "start": hole.start,
        "end": hole.end,
        "seconds": round(hole.end - hole.start, 3),
        "reason": reason,
        "topics": list(hole.topics),
        "detail": detail,
        "recorded_at": now,
    }
