"""Several instances on one PostgreSQL outbox: the thin asyncio shell around the shard leases.

::

    every lease_ttl / 3:  renew (heartbeat; shards not renewed are dropped at once)
                          snapshot -> core.shard_leases.plan -> withdraw / offer / take / accept
    take, accept:         subscribe the shard's topics FIRST, then take the lease (the takeover's gap, if
                          any, is journalled in the same transaction); a planned move leaves no gap
    every ingest batch:   FencedWriter -> PostgresOutbox.put_many(..., fence) -> LeaseLost?
                          -> renew what can be renewed, drop the rest (unsubscribe), write the others
    SIGTERM:              leave(): offer every shard to the others, wait for them to take over (up to
                          handoff_timeout), release what is left, then the usual drain

Decisions are pure (:mod:`gcbridge.core.shard_leases`); database work is in
:class:`~gcbridge.outbox.pg_leases.ShardLeaseStore`; this module only sequences them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gcbridge.bridge.config import BridgeConfig, HaConfig
from gcbridge.bridge.gaps_pg import SINGLE_INSTANCE, PgGapJournal
from gcbridge.bridge.ha_status import RECENT_FAILOVERS, Failover
from gcbridge.bridge.ports import EventSource
from gcbridge.core.shard_leases import ShardMap, plan, topics_digest
from gcbridge.outbox.base import OutboxItem
from gcbridge.outbox.fencing import Fence, LeaseLost
from gcbridge.outbox.pg_leases import ShardLeaseStore, Snapshot, TakeResult
from gcbridge.outbox.pg_standby import STANDBY_FRESH
from gcbridge.outbox.postgres import PostgresOutbox

__all__ = [
    "FencedWriter",
    "HaCoordinator",
    "PostgresParts",
    "default_instance_id",
    "open_postgres_parts",
    "with_channel_budget",
]

RECENT_TAKES: Final = 20
_FENCE_HOLD_FRACTION: Final = 0.3
"""A fenced write may sit idle in its transaction for this fraction of the lease TTL before the database
ends its session (a paused process must not block a takeover much longer than its lease)."""


def default_instance_id() -> str:
    """``<host name>-<pid>``: unique among running processes, new at every start."""
    return f"{socket.gethostname()}-{os.getpid()}"


def with_channel_budget(config: BridgeConfig, granted: int) -> BridgeConfig:
    """``config`` with the notification client's channel budget set to what the database granted (the
    rotation headroom shrinks with it if it would not fit)."""
    options = dict(config.genesys.client)
    options["channel_budget"] = granted
    headroom = int(options.get("rotation_headroom", 3))
    options["rotation_headroom"] = max(1, min(headroom, granted - 1))
    genesys = config.genesys.model_copy(update={"client": options})
    return config.model_copy(update={"genesys": genesys})


@dataclass(frozen=True, slots=True)
class PostgresParts:
    """What a service on a PostgreSQL outbox opens beside it (see :func:`open_postgres_parts`)."""

    journal: PgGapJournal
    leases: ShardLeaseStore | None
    coordinator: HaCoordinator | None
    client_config: BridgeConfig
    """The config to build the notification client from (with ``[ha]``: the granted channel budget)."""
    instance_id: str = ""
    """This instance's id with ``[ha]`` (also a hot standby's), else empty."""


async def open_postgres_parts(
    config: BridgeConfig,
    topics: Sequence[str],
    *,
    log: Any,
    on_gap: Callable[[dict[str, Any]], Awaitable[None]],
    channels_in_use: Callable[[], int],
) -> PostgresParts:
    """The gap journal in the outbox's database and, with ``[ha]``, this instance's membership: joined (the
    channel grant), and its coordinator (not started). Whatever was opened is closed again on failure
    (:class:`~gcbridge.outbox.pg_leases.BudgetExhausted`, :class:`~gcbridge.outbox.pg_leases.ConfigMismatch`,
    a database error)."""
    assert config.outbox.url is not None
    url = config.outbox.url.get_secret_value()
    ha = config.ha
    instance_id = (ha.instance_id or default_instance_id()) if ha is not None else None
    journal = await PgGapJournal.open(
        url, recorded_by=instance_id, alive_name=SINGLE_INSTANCE if ha is None else None
    )
    if ha is None or instance_id is None:
        return PostgresParts(journal, None, None, config)
    if (
        ha.standby
    ):  # a redundant path: no membership, no leases, its own client's channels (bridge/standby.py)
        return PostgresParts(journal, None, None, config, instance_id)
    leases: ShardLeaseStore | None = None
    try:
        leases = await ShardLeaseStore.open(url, instance_id)
        granted = await leases.join(
            shards=ha.shards,
            client_id=config.genesys.client_id,
            wanted_budget=ha.channel_budget,
            ttl=ha.lease_ttl,
            host=socket.gethostname(),
            pid=os.getpid(),
            topics_digest=topics_digest(topics),
        )
    except BaseException:
        if leases is not None:
            await leases.close()
        await journal.close()
        raise
    if leases.other_topic_lists:
        log.warning(
            "running instances list other topics than this one",
            instances=leases.other_topic_lists,
            what_to_do="finish the change of topics: give every instance the same list (a shard's topics "
            "are subscribed as its current owner lists them)",
        )
    coordinator = HaCoordinator(
        ha,
        instance_id=instance_id,
        shard_map=ShardMap(topics, ha.shards),
        leases=leases,
        log=log,
        on_gap=on_gap,
        channels_in_use=channels_in_use,
    )
    log.info(
        "joined as one of several instances",
        instance_id=instance_id,
        shards=ha.shards,
        channel_budget=granted,
        lease_ttl=ha.lease_ttl,
        forgotten_instances=leases.forgotten,
    )
    return PostgresParts(journal, leases, coordinator, with_channel_budget(config, granted), instance_id)


class HaCoordinator:
    """Holds this instance's shard leases and keeps the client subscribed to exactly the owned shards.

    ``owned`` maps shard -> epoch held. ``on_gap(entry)`` is awaited for each takeover gap (already stored
    in the database with the lease): the service counts, logs and remembers it.
    """

    def __init__(
        self,
        cfg: HaConfig,
        *,
        instance_id: str,
        shard_map: ShardMap,
        leases: ShardLeaseStore,
        log: Any,
        on_gap: Callable[[dict[str, Any]], Awaitable[None]],
        channels_in_use: Callable[[], int] = lambda: 0,
    ) -> None:
        self.cfg = cfg
        self.instance_id = instance_id
        self.shard_map = shard_map
        self.leases = leases
        self.owned: dict[int, int] = {}
        self.client: EventSource | None = None
        self.leaving = False
        self.last_snapshot: Snapshot | None = None
        self.takeovers = 0
        self.lost = 0
        self.recent_takes: deque[dict[str, Any]] = deque(maxlen=RECENT_TAKES)
        """The last shards this instance took: shard, epoch, previous owner, handoff or not, when (local
        clock), and the gap in seconds (``None`` for none), newest last; for the status page."""
        self.failovers: deque[Failover] = deque(maxlen=RECENT_FAILOVERS)
        """Shards taken without a handoff (the owner died or released them), newest last (status page)."""
        self.failover_count = 0
        self.round_failures = 0
        """Lease rounds (renewal, rebalancing) that failed: the database slow or unreachable from here."""
        self._log = log
        self._on_gap = on_gap
        self._channels_in_use = channels_in_use
        self._incoming: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # one planning round at a time (the loop, leave)
        # takeover gaps a hot standby may have covered, decided a few seconds after the takeover
        self._settling: dict[asyncio.Task[None], TakeResult] = {}
        self._failing: dict[str, float] = {}
        """Lease steps failing now (renewal, rebalancing), since when (loop time): one line per trouble."""

    @property
    def interval(self) -> float:
        return self.cfg.lease_ttl / 3

    def owned_topics(self) -> list[str]:
        return [t for s in sorted(self.owned) for t in self.shard_map.topics(s)]

    async def start(self, client: EventSource) -> None:
        """Take the first shards (one round, so a lone instance is live when this returns), then keep
        renewing and rebalancing in the background."""
        self.client = client
        await self.round()
        # Renewals run on their own, so that a slow subscription in a planning round never lets a lease lapse.
        self._tasks = [
            asyncio.create_task(self._every_interval(self._renew, "renewal"), name="gcbridge-ha-renew"),
            asyncio.create_task(
                self._every_interval(self._plan_round, "rebalancing"), name="gcbridge-ha-plan"
            ),
        ]

    async def stop(self) -> None:
        # undecided takeover gaps are decided now, strictly: better a gap reported that a standby covered
        # than one lost with this process
        pending = dict(self._settling)
        for settling in pending:
            settling.cancel()
        for taken in pending.values():
            with contextlib.suppress(Exception):
                for entry in await self.leases.settle(taken):
                    await self._on_gap(entry)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def leave(self, within: float) -> None:
        """Hand every shard to the other instances (make-before-break), waiting up to ``within`` seconds; then
        release what nobody took, so that the next owner need not wait for the lease to expire."""
        self.leaving = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        with contextlib.suppress(Exception):
            await self.leases.set_state("leaving")
        while self.owned and loop.time() < deadline:
            try:
                await self.round()
            except Exception as exc:
                self._log.warning(
                    "handoff round failed while leaving",
                    error=f"{type(exc).__name__}: {exc}",
                    what_to_do="nothing: the shards are released at the end of the drain",
                )
            snap = self.last_snapshot
            if snap is not None and not [m for m in snap.running() if m != self.instance_id]:
                break  # nobody to hand over to: release at once
            if self.owned:
                await asyncio.sleep(min(0.2, self.interval))
        await self.stop()
        left = dict(self.owned)
        if left:
            try:
                released = await self.leases.release(left)
            except Exception as exc:
                released = 0
                self._log.warning(
                    "could not release shard leases; they expire on their own",
                    error=f"{type(exc).__name__}: {exc}",
                    what_to_do=f"nothing: another instance takes them within {self.cfg.lease_ttl:g} s",
                )
            self._log.info("shards released without a taker", shards=sorted(left), released=released)
        self.owned.clear()
        with contextlib.suppress(Exception):
            await self.leases.set_state("stopped")

    # -- ingest side --------------------------------------------------------------------------------------

    async def owned_epochs(self, shards: Iterable[int]) -> dict[int, int]:
        """The epochs of those of ``shards`` this instance owns, after any takeover of them in progress has
        finished (events that arrived on a new subscription wait for its lease, they are not dropped)."""
        wanted = set(shards)
        for shard in wanted:
            pending = self._incoming.get(shard)
            if pending is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pending.wait(), self.cfg.handoff_timeout)
        return {s: self.owned[s] for s in wanted if s in self.owned}

    async def confirm(self, shards: frozenset[int]) -> None:
        """A fenced write found ``shards`` not held (expired, or taken): renew them if they are still ours
        at the same epoch (expired, nobody took them), else drop them at once."""
        # a database error propagates: the caller retries the write, nothing is dropped for it
        await self._renew(shards, why="the lease moved to another instance")

    # -- the round ----------------------------------------------------------------------------------------

    async def round(self) -> None:
        """Renew, then plan and act: one step of what the background tasks do."""
        await self._renew()
        await self._plan_round()

    async def _renew(
        self, only: Iterable[int] | None = None, why: str = "lease renewal refused: another instance holds it"
    ) -> None:
        """Heartbeat and renew the owned leases (or ``only`` those); drop at once every shard the database
        did not renew at the epoch held (unless it changed meanwhile: a take of it just finished)."""
        held = dict(self.owned) if only is None else {s: self.owned[s] for s in only if s in self.owned}
        renewed = await self.leases.renew(held, self.cfg.lease_ttl, self._channels_in_use())
        lost = {s for s, epoch in held.items() if s not in renewed and self.owned.get(s) == epoch}
        await self._drop(lost, why)

    async def _plan_round(self) -> None:
        async with self._lock:
            await self._plan()

    async def _plan(self) -> None:
        cfg = self.cfg
        snap = await self.leases.snapshot(self.shard_map.shards, cfg.lease_ttl)
        self.last_snapshot = snap
        members = [m for m in snap.running() if not (self.leaving and m == self.instance_id)]
        p = plan(
            self.instance_id,
            members,
            snap.leases,
            self.shard_map.shards,
            snap.now,
            handoff_timeout=cfg.handoff_timeout,
        )
        for shard in p.withdraw:
            if shard in self.owned and await self.leases.withdraw(shard, self.owned[shard]):
                self._log.info("handoff withdrawn: the taker did not come in time", shard=shard)
        for shard, to in p.offer:
            if shard in self.owned and await self.leases.offer(shard, self.owned[shard], to):
                self._log.info("shard offered to another instance", shard=shard, to=to)
        # leases held under our id by a previous run (a restart with a fixed instance_id): take them back now
        # rather than wait for them to expire
        orphans = [
            s
            for s, lease in snap.leases.items()
            if lease.owner == self.instance_id and lease.held(snap.now) and s not in self.owned
        ]
        if self.leaving:
            orphans = []
        # a lease of ours that ran out untaken (the database was away) looks free to the plan; the renewal
        # takes care of it, at the same epoch and without a gap
        wanted = sorted({*p.take, *p.accept, *orphans} - set(self.owned))
        if wanted:
            await self._take(snap, wanted)

    async def _take(self, snap: Snapshot, shards: Sequence[int]) -> None:
        """Subscribe first, then take each lease; a lease lost to a faster instance is unsubscribed."""
        for shard in shards:
            self._incoming.setdefault(shard, asyncio.Event())
        try:
            topics = [t for s in shards for t in self.shard_map.topics(s)]
            if topics and self.client is not None:
                await self.client.subscribe(topics)
            if any(
                snap.leases[s].held(snap.now) and snap.leases[s].owner != self.instance_id for s in shards
            ):
                # both of us are live now: let the old owner write what it received before we arrived
                await asyncio.sleep(self.cfg.handoff_overlap)
            for shard in shards:
                seen = snap.leases[shard]
                result = await self.leases.take(
                    shard, seen, self.cfg.lease_ttl, topics=self.shard_map.single_topics(shard)
                )
                if result is None:
                    await self._unsubscribe([shard])
                    continue
                self.owned[shard] = result.epoch
                self.takeovers += 1
                self.recent_takes.append(
                    {
                        "shard": shard,
                        "epoch": result.epoch,
                        "previous_owner": seen.owner,
                        "handoff": seen.held(snap.now) and seen.owner != self.instance_id,
                        "at": time.time(),
                        "gap_seconds": None if result.gap is None else result.gap["seconds"],
                    }
                )
                self._log.info(
                    "shard taken",
                    shard=shard,
                    epoch=result.epoch,
                    previous_owner=seen.owner,
                    handoff=seen.handoff_to == self.instance_id,
                    topics=len(self.shard_map.topics(shard)),
                )
                if seen.owner is not None and seen.handoff_to != self.instance_id:
                    self.failover_count += 1
                    gap = result.gap
                    self.failovers.append(
                        Failover(
                            at=snap.now,
                            shard=shard,
                            previous_owner=seen.owner,
                            epoch=result.epoch,
                            gap_seconds=None if gap is None else float(gap["end"] - gap["start"]),
                        )
                    )
                if result.gap is not None:
                    await self._on_gap(result.gap)
                for entry in result.more_gaps:
                    await self._on_gap(entry)
                if result.provisional:
                    # a live hot standby may have covered the rest: decide once it has published past it
                    task = asyncio.create_task(self._settle(result), name=f"gcbridge-ha-settle-{shard}")
                    self._settling[task] = result
                    task.add_done_callback(lambda t: self._settling.pop(t, None))
        finally:
            for shard in shards:
                event = self._incoming.pop(shard, None)
                if event is not None:
                    event.set()

    async def _settle(self, taken: TakeResult) -> None:
        await asyncio.sleep(STANDBY_FRESH)
        self._settling.pop(asyncio.current_task(), None)  # type: ignore[arg-type]  # decided below, not at stop
        for attempt in range(5):
            try:
                entries = await self.leases.settle(taken)
                break
            except Exception as exc:
                if attempt == 4:
                    self._log.warning(
                        "could not decide a takeover gap that a hot standby may have covered",
                        shard=taken.shard,
                        error=f"{type(exc).__name__}: {exc}",
                        what_to_do="check that PostgreSQL is reachable; back-fill the interval if unsure",
                        intervals=[(e["start"], e["end"]) for e in taken.provisional],
                    )
                    return
                await asyncio.sleep(STANDBY_FRESH)
        for entry in entries:
            await self._on_gap(entry)

    async def _drop(self, shards: set[int], why: str) -> None:
        """Stop owning ``shards`` at once: no more writes (the fence) and no more subscriptions."""
        shards = {s for s in shards if s in self.owned}
        if not shards:
            return
        for shard in shards:
            del self.owned[shard]
        self.lost += len(shards)
        self._log.info("shards dropped", shards=sorted(shards), why=why)
        await self._unsubscribe(shards)

    async def _unsubscribe(self, shards: Iterable[int]) -> None:
        topics = [t for s in shards for t in self.shard_map.topics(s)]
        if not topics or self.client is None:
            return
        try:
            await self.client.unsubscribe(topics)
        except Exception as exc:
            # the fence already keeps their events out of the outbox; only channels are wasted
            self._log.warning(
                "unsubscribing the topics of dropped shards failed",
                error=f"{type(exc).__name__}: {exc}",
                what_to_do="nothing: their events are not written; the next rebalance retries",
            )

    async def _every_interval(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await step()
            except Exception as exc:
                self.round_failures += 1
                # The database may be restarting: keep the subscriptions; the fence keeps writes safe and
                # ingest retries them; a lease that expires meanwhile is renewed if nobody took it. One line
                # for the whole trouble, whichever step notices it first (the metric counts every failure).
                error = f"{type(exc).__name__}: {exc}"
                if not self._failing:
                    self._log.warning(
                        f"shard lease {what} failed; retrying every {self.interval:.1f} s",
                        error=error,
                        what_to_do="check that PostgreSQL is reachable; events wait in memory meanwhile "
                        "(gcbridge_ha_lease_renew_failures_total counts the failed rounds)",
                    )
                else:
                    self._log.debug(f"shard lease {what} failed again", error=error)
                self._failing.setdefault(what, loop.time())
                continue
            since = self._failing.pop(what, None)
            if since is not None and not self._failing:
                self._log.info(
                    "shard leases renewed and rebalanced again",
                    after=round(loop.time() - since, 1),
                    shards=sorted(self.owned),
                )


class FencedWriter:
    """The outbox as Ingest sees it on an instance with ``[ha]``: every batch is written with a fence of the
    shards its events belong to. Events of shards this instance does not own are not written (another
    instance owns them); on :class:`LeaseLost` the lost shards are confirmed or dropped and the rest of the
    batch is written again."""

    def __init__(
        self,
        outbox: PostgresOutbox,
        coordinator: HaCoordinator,
        *,
        on_written: Callable[[], None],
    ) -> None:
        self._outbox = outbox
        self._ha = coordinator
        self._on_written = on_written
        self.dropped = 0
        """Events not written because their shard is not (or no longer) this instance's."""
        outbox.fence_hold_limit = max(0.2, coordinator.cfg.lease_ttl * _FENCE_HOLD_FRACTION)

    async def put_many(self, items: Sequence[OutboxItem]) -> int:
        shard_of = self._ha.shard_map.shard_for_event
        pending = list(items)
        while pending:
            shards = {shard_of(i.topic) for i in pending}
            epochs = await self._ha.owned_epochs(shards)
            keep = [i for i in pending if shard_of(i.topic) in epochs]
            self.dropped += len(pending) - len(keep)
            if not keep:
                return 0
            try:
                new = await self._outbox.put_many(keep, fence=Fence(self._ha.instance_id, epochs))
            except LeaseLost as exc:
                await self._ha.confirm(exc.shards)
                pending = keep
                continue
            if new:
                self._on_written()
            return new
        return 0
