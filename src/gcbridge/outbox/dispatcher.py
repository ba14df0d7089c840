"""The delivery loop: claim due rows, deliver them concurrently, record each outcome in the store.

Usage::

    dispatcher = Dispatcher(store, sink)            # documented defaults for every timing
    task = asyncio.create_task(dispatcher.run())
    await dispatcher.ingest(items)                  # put_many + wake the loop
    ...
    await dispatcher.drain(timeout=30)              # stop claiming, finish (or release) in-flight rows
    await task

The dispatcher owns no delivery state: attempts, next-attempt times and dead letters are in the store, so a
restart resumes exactly where the last process stopped (rows it had in flight come back when the store opens).
Per-key order comes from the store's claim rule (one row in flight per order key); concurrency is across keys.

A failure of the whole sink (see :class:`~gcbridge.outbox.base.SinkCondition`) is one outage, decided by
:class:`~gcbridge.outbox.outage.SinkHealth`: deliveries pause with one ``error`` log line, failed rows go back
without an attempt counted (never dead-lettered for it), one row at a time probes the sink with backoff, and
on recovery, as at every start, rows held back are made due at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gcbridge._logs import get_logger
from gcbridge.core.aimd import AimdWindow
from gcbridge.core.backoff import BackoffPolicy
from gcbridge.outbox.base import Delivered, OutboxItem, OutboxRow, OutboxStore, Outcome, Retry, Sink
from gcbridge.outbox.outage import Paused, Resumed, SinkHealth, Transition, probe_policy
from gcbridge.outbox.retry import DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, Ack, Action, Bury, Reschedule, decide
from gcbridge.outbox.store_outage import LoggedStoreOutage

__all__ = ["Dispatcher", "DispatcherCounters"]

_log = get_logger("gcbridge.outbox")


@dataclass(slots=True)
class DispatcherCounters:
    """Running totals since start, for metrics and the status page."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    sink_errors: int = 0  # exceptions and timeouts from the sink (each also counted as a retry)
    store_errors: int = 0  # failed store calls; the row stays in flight until its lease ends
    expired: int = 0  # delivered rows deleted by retention
    held: int = 0  # rows put back without an attempt because the sink as a whole was failing
    outages: int = 0  # sink-wide outages begun


class Dispatcher:
    """Delivers outbox rows to a :class:`~gcbridge.outbox.base.Sink`, at least once, in order per key.

    Defaults (all seconds unless noted):

    * ``concurrency=8``: rows delivered at the same time (each from a different order key).
    * ``max_concurrency=None``: with a number, ``concurrency`` is where an adaptive window starts and its
      floor: it grows by one slot per window's worth of deliveries that finished while rows waited for a
      slot, up to ``max_concurrency``, and halves back towards ``concurrency`` on a failed attempt (a 429,
      a 5xx, a timeout; see :class:`~gcbridge.core.aimd.AimdWindow`). ``None``: fixed at ``concurrency``.
    * ``batch=64``: most rows claimed per store call.
    * ``backoff``: :data:`~gcbridge.outbox.retry.DEFAULT_BACKOFF` (1 s doubling to a 5 min ceiling, full
      jitter; a sink's ``Retry.after`` is a floor). ``max_attempts=100`` then dead-letter; ``None`` retries
      forever.
    * ``deliver_timeout=60``: a sink call running longer counts as ``Retry("timeout")``. Keep it below the
      store's lease TTL (300 s by default) so a row is never handed out twice at once.
    * ``idle_poll=5``: longest sleep without a wake-up (a safety net; puts through :meth:`ingest` or
      :meth:`notify`, finished deliveries and the next due time wake the loop earlier).
    * ``housekeeping_interval=60``: how often delivered rows past retention are deleted, ``expire_batch=500``
      rows per transaction, at most ``expire_rounds=20`` transactions per round.
    * ``coalesce=False``: claim with coalescing (only for sinks that write whole-state records).
    * ``clock=time.time``: wall clock, because next-attempt times are stored and must survive restarts.
    * ``health``: the sink's outage state machine (:class:`~gcbridge.outbox.outage.SinkHealth`, probing as
      ``backoff`` grows but at most a minute apart); read ``dispatcher.health.condition`` for what is wrong.
    * ``store_outage``: where failed store calls are counted and said once per outage
      (:class:`~gcbridge.outbox.store_outage.LoggedStoreOutage`); share one with the ingest so that a
      restarting database is one line, not one per caller.
    """

    def __init__(
        self,
        store: OutboxStore,
        sink: Sink,
        *,
        concurrency: int = 8,
        max_concurrency: int | None = None,
        batch: int = 64,
        backoff: BackoffPolicy = DEFAULT_BACKOFF,
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        deliver_timeout: float = 60.0,
        idle_poll: float = 5.0,
        housekeeping_interval: float = 60.0,
        expire_batch: int = 500,
        expire_rounds: int = 20,
        coalesce: bool = False,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        health: SinkHealth | None = None,
        store_outage: LoggedStoreOutage | None = None,
    ) -> None:
        if concurrency < 1 or batch < 1:
            raise ValueError("concurrency and batch must be >= 1")
        if max_concurrency is not None and max_concurrency < concurrency:
            raise ValueError("max_concurrency must be >= concurrency")
        if deliver_timeout <= 0 or idle_poll <= 0:
            raise ValueError("deliver_timeout and idle_poll must be > 0")
        lease_ttl = getattr(store, "lease_ttl", None)
        if isinstance(lease_ttl, int | float) and deliver_timeout >= lease_ttl:
            # otherwise a slow delivery's lease runs out and the row is handed out twice at the same time
            raise ValueError(
                f"deliver_timeout ({deliver_timeout:g}s) must be shorter than the store's lease_ttl "
                f"({lease_ttl:g}s)"
            )
        self.store = store
        self.sink = sink
        self.concurrency = concurrency
        # the fixed limit is a window whose floor and ceiling are the same
        self.window = AimdWindow(concurrency, concurrency if max_concurrency is None else max_concurrency)
        self._waiting = False  # the last claim filled the window: due rows may be waiting for a slot
        self.batch = batch
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.deliver_timeout = deliver_timeout
        self.idle_poll = idle_poll
        self.housekeeping_interval = housekeeping_interval
        self.expire_batch = expire_batch
        self.expire_rounds = expire_rounds
        self.coalesce = coalesce
        self.counters = DispatcherCounters()
        self.health = health if health is not None else SinkHealth(probe_policy(backoff))
        self.store_outage = store_outage if store_outage is not None else LoggedStoreOutage()
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # jitter, not cryptography
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[asyncio.Task[None], OutboxRow] = {}
        self._acks: list[int] = []  # delivered rows not yet acked in the store
        self._next_housekeeping = 0.0
        self._stopped = asyncio.Event()
        self._running = False

    # -- public API --------------------------------------------------------------------------------------

    async def ingest(self, items: Sequence[OutboxItem]) -> int:
        """``store.put_many(items)`` and wake the loop; returns how many items were new. Durable on return."""
        new = await self.store.put_many(items)
        if new:
            self._wake.set()
        return new

    def notify(self) -> None:
        """Wake the loop: call after writing to the store directly (``ingest`` does it for you)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Deliveries running now."""
        return len(self._tasks)

    async def run(self) -> None:
        """Deliver until :meth:`drain` is called. Never raises because of a sink or a failed store call."""
        if self._running:
            raise RuntimeError("Dispatcher.run() is already running")
        self._running = True
        try:
            # rows held back by an outage before a restart (or backing off because of it) go first: the
            # operator restarted because the cause is fixed
            await self._release_held("start")
            while not self._stopping:
                # one extra turn of the event loop lets deliveries that are about to finish do so, so that a
                # burst of completions costs one ack and one claim rather than one of each per row
                await asyncio.sleep(0)
                self._wake.clear()
                await self._flush_acks()
                asked, got = await self._claim_and_start()
                await self._housekeeping()
                if self._stopping:
                    break
                if asked and got == asked:
                    continue  # the batch was full: more rows may be due right now
                await self._sleep(await self._sleep_budget(asked > 0))
            await self._flush_acks()
        finally:
            self._running = False
            self._stopped.set()

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - a shutdown budget, not a cancel scope
        """Stop claiming and wait up to ``timeout`` for deliveries in progress; ``True`` if all finished.

        Deliveries still running at the deadline are cancelled and their rows put back to pending (counted as
        an attempt, error ``"cancelled at shutdown"``), so the next start delivers them again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping = True
        self._wake.set()
        if self._running:
            # a claim may be under way: its rows must be started (and then waited for) before we look
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=max(0.0, deadline - loop.time()))
        tasks = dict(self._tasks)  # a copy: finished tasks remove themselves from self._tasks
        done = True
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            if still:
                done = False
                for task in still:
                    task.cancel()
                await asyncio.gather(*still, return_exceptions=True)
                now = self._clock()
                for task in still:
                    with contextlib.suppress(Exception):  # not in flight any more (acked meanwhile) is fine
                        await self.store.retry(tasks[task].id, now, "cancelled at shutdown")
        await self._flush_acks()
        return done

    # -- loop internals ----------------------------------------------------------------------------------

    async def _claim_and_start(self) -> tuple[int, int]:
        free = self.window.limit - len(self._tasks) - len(self._acks)
        if free <= 0:
            return 0, 0  # the last claim filled the window: self._waiting stays as it set it
        asked = min(self.batch, free)
        allowed = self.health.may_claim(self._clock())
        if allowed is not None:
            if allowed == 0:
                return 0, 0  # paused by an outage: wait for the next probe
            asked = min(asked, allowed)
        try:
            rows = await self.store.claim(asked, self._clock(), coalesce=self.coalesce)
        except Exception as exc:
            self._store_failed("claim", exc)
            rows, asked = [], 0  # sleep as if idle; the store may recover (restart, disk space, lock)
        else:
            self.store_outage.succeeded(self._clock())
        if allowed is not None and not rows:
            self.health.probe_unused()
            return 0, 0  # paused and nothing to probe with: sleep until the next probe
        # the window, not the batch size or a lack of due rows, limited this claim: rows may be waiting for a
        # slot (the store is not asked whether they are: that would cost a round trip per claim)
        self._waiting = len(rows) == asked == free
        for row in rows:
            task = asyncio.create_task(self._deliver(row), name=f"outbox-deliver-{row.id}")
            self._tasks[task] = row
            task.add_done_callback(self._task_done)
        return asked, len(rows)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._wake.set()  # capacity is free, and the key's next row may be claimable

    async def _sleep_budget(self, had_capacity: bool) -> float:
        budget = self.idle_poll
        if had_capacity:
            try:
                due = await self.store.next_due()
            except Exception as exc:
                self._store_failed("next_due", exc)
                due = None
            if due is not None:
                budget = min(budget, max(0.0, due - self._clock()))
        if self.housekeeping_interval > 0:
            budget = min(budget, max(0.0, self._next_housekeeping - self._clock()))
        if self.health.paused:
            budget = min(budget, max(0.0, self.health.next_probe_at - self._clock()))
        return budget

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _housekeeping(self) -> None:
        if self.housekeeping_interval <= 0:
            return
        now = self._clock()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + self.housekeeping_interval
        try:
            for _ in range(self.expire_rounds):
                deleted = await self.store.expire_delivered(now, batch=self.expire_batch)
                self.counters.expired += deleted
                if deleted < self.expire_batch:
                    break
        except Exception as exc:
            self._store_failed("expire_delivered", exc)

    async def _deliver(self, row: OutboxRow) -> None:
        epoch = self.window.epoch
        outcome = await self._attempt(row)
        now = self._clock()
        self._adapt(outcome, epoch)
        transition = self.health.observe(outcome, now)
        if isinstance(outcome, Retry) and self.health.holds(outcome):
            try:
                await self.store.hold(row.id, outcome.reason)
                self.counters.held += 1
            except Exception as exc:
                self._store_failed("hold", exc, row_id=row.id)
            await self._act_on(transition)
            return
        await self._act_on(transition)
        try:
            action = decide(
                outcome,
                attempts=row.attempts,
                now=now,
                policy=self.backoff,
                max_attempts=self.max_attempts,
                rng=self._rng,
            )
        except TypeError as exc:  # a sink returned something else: a bug there, not a reason to lose the row
            action = decide(
                Retry(str(exc)), attempts=row.attempts, now=now, policy=self.backoff, rng=self._rng
            )
        try:
            await self._apply(row, action, now)
        except Exception as exc:
            self._store_failed("update", exc, row_id=row.id)

    async def _attempt(self, row: OutboxRow) -> Outcome:
        try:
            async with asyncio.timeout(self.deliver_timeout):  # unlike wait_for, no extra task per row
                return await self.sink.deliver(row)
        except TimeoutError:
            self.counters.sink_errors += 1
            return Retry(f"timeout after {self.deliver_timeout:g}s")
        except Exception as exc:
            # the class name only: an exception message may quote a request, a header or the payload
            self.counters.sink_errors += 1
            return Retry(type(exc).__name__)

    def _adapt(self, outcome: Outcome, started_epoch: int) -> None:
        if isinstance(outcome, Delivered):
            if self._waiting and not self.health.paused:
                self.window.grow()
        elif isinstance(outcome, Retry):
            self.window.shrink(started_epoch)

    async def _act_on(self, transition: Transition | None) -> None:
        if isinstance(transition, Paused):
            self.counters.outages += 1
            condition = transition.condition
            # one line for the whole outage, however many rows wait: what is wrong and what to do
            _log.error(
                f"ServiceNow deliveries paused: {condition.summary}",
                condition=condition.kind,
                what_to_do=condition.action,
                probing="one row at a time, backing off to at most 1 min apart",
            )
        elif isinstance(transition, Resumed):
            _log.info(
                "ServiceNow deliveries resumed",
                condition=transition.condition.kind,
                outage_seconds=round(transition.seconds, 1),
            )
            await self._release_held("recovery")
            self._wake.set()

    async def _release_held(self, why: str) -> None:
        try:
            moved = await self.store.release_held(self._clock())
        except Exception as exc:
            self._store_failed("release_held", exc)
            return
        if moved:
            _log.info("held-back rows are due now", rows=moved, on=why)

    async def _flush_acks(self) -> None:
        """Record the deliveries finished since the last loop turn: one store call for all of them."""
        if not self._acks:
            return
        ids, self._acks = self._acks, []
        try:
            await self.store.ack(ids, self._clock())
        except Exception as exc:
            self._acks.extend(ids)  # try again next turn rather than deliver them all a second time
            self._store_failed("ack", exc, rows=len(ids))
            return
        self.store_outage.succeeded(self._clock())
        self.counters.delivered += len(ids)

    def _store_failed(self, operation: str, exc: Exception, **fields: int) -> None:
        # one line per outage of the store, whichever call noticed first (see store_outage)
        self.counters.store_errors += 1
        self.store_outage.failed(operation, exc, self._clock(), **fields)

    async def _apply(self, row: OutboxRow, action: Action, now: float) -> None:
        if isinstance(action, Ack):
            # batched: the loop acks every row finished since its last turn in one store call (the row stays
            # in flight, so its key stays blocked, until then)
            self._acks.append(row.id)
        elif isinstance(action, Reschedule):
            await self.store.retry(row.id, action.at, action.error)
            self.counters.retried += 1
            # debug: the service logs a summary of retries once a minute (bridge/retry_summary.py)
            _log.debug(
                "outbox delivery will be retried",
                row_id=row.id,
                order_key=row.order_key,
                topic=row.topic,
                attempt=row.attempts + 1,
                in_seconds=round(action.at - now, 3),
                reason=action.error,
            )
        elif isinstance(action, Bury):
            await self.store.dead_letter(row.id, action.reason, now)
            self.counters.dead_lettered += 1
            _log.warning(
                "outbox row dead-lettered",
                row_id=row.id,
                order_key=row.order_key,
                topic=row.topic,
                attempt=row.attempts + 1,
                reason=action.reason,
            )
