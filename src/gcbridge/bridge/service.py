"""The bridge service: notification client -> durable outbox -> dispatcher -> ServiceNow, plus admin.

::

    NotificationClient --(events, gaps)--> Ingest --put_many--> SqliteOutbox --claim--> Dispatcher
            |                                 |                                            |
        lifecycle -> metrics, logs       gap journal                          MeasuredSink -> Router

An event counts as received once ``put_many`` has returned (it is then on disk). Gaps are counted, logged
and journalled for operators. The service's own downtime is journalled as a gap at the next start.

Signals: SIGTERM/SIGINT drain (stop receiving: close the sockets; write every event the client already
holds to the outbox; let in-flight ServiceNow writes finish within ``outbox.drain_timeout``), whatever
disposition the process inherited; a second SIGINT stops waiting for those writes (back to pending);
SIGHUP re-reads the config file's topic list and subscribes/unsubscribes the difference without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

import gcbridge
from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge.admin import EVENTS_FLOW_STATES, AdminServer
from gcbridge.bridge.backfill_metrics import BackfillMetrics
from gcbridge.bridge.backfill_runner import BackfillRunner, Filler
from gcbridge.bridge.backfill_setup import open_backfill, single_topics
from gcbridge.bridge.backfill_source import build_backfiller
from gcbridge.bridge.config import BridgeConfig, ConfigError, load_config
from gcbridge.bridge.gaps import GapJournal, GapLog, downtime_gap, gap_of_entry
from gcbridge.bridge.gaps_pg import PgGapJournal
from gcbridge.bridge.ha import FencedWriter, HaCoordinator, open_postgres_parts
from gcbridge.bridge.ha_view import HaView
from gcbridge.bridge.history import MinuteHistory, Sample
from gcbridge.bridge.ingest import BatchWriter, Ingest
from gcbridge.bridge.lifecycle import Lifecycle
from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.bridge.outbox_choice import OpenOutbox, describe_outbox, open_outbox
from gcbridge.bridge.outbox_location import OutboxLocationError, outbox_location_problem
from gcbridge.bridge.ports import DeliverySink, EventSource, SubscribeAnswer
from gcbridge.bridge.process_stats import process_counts
from gcbridge.bridge.retry_summary import RetrySummary
from gcbridge.bridge.router import build_router
from gcbridge.bridge.sink import MeasuredSink, probe_answered
from gcbridge.bridge.standby import StandbyPublisher
from gcbridge.bridge.status import build_status, channel_rows, topic_count
from gcbridge.core.backoff import BackoffPolicy
from gcbridge.genesys import NotificationClient
from gcbridge.genesys.client_types import LifecycleEvent
from gcbridge.outbox.backfill_postgres import DEFAULT_LEASE
from gcbridge.outbox.base import OutboxItem, OutboxStats, OutboxStore, RowInfo, Selection, SinkCondition
from gcbridge.outbox.dispatcher import Dispatcher
from gcbridge.outbox.pg_leases import ShardLeaseStore
from gcbridge.outbox.pg_standby import StandbyCoverageStore
from gcbridge.outbox.postgres import PostgresOutbox
from gcbridge.outbox.store_outage import LoggedStoreOutage
from gcbridge.secrets import Secret
from gcbridge.servicenow.conditions import KINDS as SINK_CONDITIONS
from gcbridge.servicenow.rest import create_session
from gcbridge.stopsignals import Phase, next_phase, unless_set

REFRESH_INTERVAL: Final = 1.0
"""Seconds between snapshots of client and outbox state into the gauges (and the ``alive`` mark)."""
SHUTDOWN_GAP_MARGIN: Final = 0.5
"""Seconds the ``service_down`` gap starts before the sockets close (events in flight then are lost)."""
SERVICENOW_PROBE_INTERVAL: Final = 15.0
"""Seconds without a delivery after which an unauthenticated GET checks that ServiceNow still answers."""

_FATAL_ADVICE: Final = (
    "fix the cause, then restart the service; `gcbridge check --config <file>` tests the credentials, "
    "the region and the connections (invalid_client: a wrong client id, secret or region)"
)
RETRY_SUMMARY_PERIOD: Final = 60.0
"""Seconds between two info lines summarising delivery retries (each retry is logged at debug)."""

EXIT_OK: Final = 0
EXIT_FATAL: Final = 1


class BridgeService:
    """One running bridge. ``await run()`` is the whole life of ``gcbridge run``; tests and the demo use
    ``start()`` / ``stop()`` and :attr:`admin_url` directly."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        config_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        client_factory: Callable[[BridgeConfig], EventSource] | None = None,
        install_signals: bool = True,
        filler_factory: Callable[[BridgeConfig], Filler] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._clock = clock
        self._client_factory = client_factory or build_client
        self._install_signals = install_signals
        self._filler_factory = filler_factory or build_backfiller
        self.backfill: BackfillRunner | None = None
        self.log = bridge_logging.get_logger("gcbridge.service")
        self.metrics = BridgeMetrics()
        self.lifecycle = Lifecycle()
        self.journal: GapLog = GapJournal(config.outbox.gap_log_path)
        self.ha: HaCoordinator | None = None
        """Shard leases across instances (``[ha]``), else ``None``."""
        self._leases: ShardLeaseStore | None = None
        self._instance_id = ""
        """This instance's id with ``[ha]`` on PostgreSQL (also a hot standby's), else empty."""
        self.standby: StandbyPublisher | None = None
        self.ha_view: HaView | None = None
        """The ``ha`` part of /status and the gcbridge_ha_* metrics (with ``[ha]``)."""
        """With ``[ha] standby = true``: this instance is a redundant path that owns no shard."""
        self.history = MinuteHistory()
        self.retry_summary = RetrySummary(RETRY_SUMMARY_PERIOD)
        self.topics: list[str] = list(config.genesys.topics)
        self.started_at = clock()
        self.admin: AdminServer | None = None
        self.client: EventSource | None = None
        self.outbox: OpenOutbox | None = None
        self.dispatcher: Dispatcher | None = None
        self.sink: MeasuredSink | None = None
        self.ingest: Ingest | None = None
        self.fatal_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._router: DeliverySink | None = None
        self._last_probe = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        # one alive mark at a time, and none after the stop's: a periodic mark still being written when the
        # stop begins would otherwise land last and turn a clean stop into a crash with a later start
        self._alive_lock = asyncio.Lock()
        self._stopped_mark = False
        self._ingest_task: asyncio.Task[None] | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
        self._signal_phase: Phase = "running"
        self._outbox_stats: OutboxStats | None = None
        self._last_refresh = 0.0
        self._reload_lock = asyncio.Lock()
        self.store_outage = LoggedStoreOutage()
        """Failed outbox calls of the ingest and the dispatcher, as one outage (one log line, a readiness
        reason) while the database restarts."""

    # -- public API --------------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str | None:
        return self.admin.url if self.admin is not None and self.admin.port is not None else None

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or a fatal error), drain, and return the exit code.

        A stop signal during start-up (a token endpoint that keeps failing, topics that take long to go
        live) interrupts the start and drains what was received so far.
        """
        if self._install_signals:
            self._add_signal_handlers()
        starting = asyncio.create_task(self.start(), name="gcbridge-start")
        stop_asked = asyncio.create_task(self._stop_requested.wait(), name="gcbridge-stop-wait")
        await asyncio.wait({starting, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            self.log.info("stop requested during start-up")
            starting.cancel()
        try:
            await starting
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            stop_asked.cancel()
            self.log.error(
                "start-up failed",
                error=str(exc),
                error_type=type(exc).__name__,
                what_to_do=_FATAL_ADVICE,
            )
            await self._abort()
            return EXIT_FATAL
        await stop_asked
        await self.stop()
        return EXIT_FATAL if self.lifecycle.state == "failed" else EXIT_OK

    async def start(self) -> None:
        cfg = self.config
        self.log.info(
            "starting",
            version=gcbridge.__version__,
            endpoint=self.endpoint,
            topics=topic_count(self.topics),
            outbox=describe_outbox(cfg.outbox),
        )
        self.journal.load()
        if cfg.outbox.url is None:
            problem = outbox_location_problem(cfg.outbox.path, create=True)
            if problem is not None:
                raise OutboxLocationError(problem)
        # one instance per outbox without [ha]; with it, a fixed instance_id: a restart takes back its own
        # in-flight rows at once (a per-start id leaves them to the claim lease)
        owner = "single" if cfg.ha is None else cfg.ha.instance_id
        self.outbox = await open_outbox(cfg.outbox, owner=owner)
        client_cfg = await self._open_postgres_parts(self.outbox)
        if self.outbox.recovered_on_open:
            self.log.warning(
                "rows left in flight by the previous run are pending again",
                rows=self.outbox.recovered_on_open,
                what_to_do="nothing: they are delivered again, and ServiceNow coalesces a repeated write",
            )
        mapping = cfg.servicenow.mapping.compiled
        d = cfg.outbox.dispatcher
        sn = cfg.servicenow
        if d.max_concurrency > sn.concurrency:
            # the dispatcher's adaptive window bounds the requests; the writer's fixed bound must not cap it
            sn = sn.model_copy(update={"concurrency": d.max_concurrency})
        self._session = create_session(
            connect_timeout=sn.timeouts.connect,
            total_timeout=sn.timeouts.total,
            limit=max(sn.concurrency, 4),
            verify_tls=sn.verify_tls,
        )
        self._router = build_router(
            sn, self._session, mapping=mapping, on_request=self.metrics.record_servicenow_request
        )
        self.sink = MeasuredSink(self._router, self.metrics, clock=self._clock)
        self.dispatcher = Dispatcher(
            self.outbox,
            self.sink,
            concurrency=d.concurrency,
            max_concurrency=d.max_concurrency or None,  # 0: fixed at concurrency
            batch=d.batch,
            backoff=BackoffPolicy(initial=d.backoff_initial, cap=d.backoff_max),
            max_attempts=d.max_attempts or None,
            deliver_timeout=d.deliver_timeout,
            idle_poll=d.idle_poll,
            coalesce=d.coalesce,
            clock=self._clock,
            store_outage=self.store_outage,
        )
        self._dispatch_task = asyncio.create_task(self.dispatcher.run(), name="gcbridge-dispatcher")
        self.backfill = await open_backfill(
            cfg.backfill,
            self.outbox,
            self._filler_factory(cfg),
            mapping,
            self.journal,
            BackfillMetrics(self.metrics.registry),
            self.log,
            clock=self._clock,
            on_written=self.dispatcher.notify,
            # several instances share the job table: each runs jobs under its own id, leased like its shards
            owner=self._instance_id or "single",
            lease=cfg.ha.lease_ttl if cfg.ha is not None else DEFAULT_LEASE,
        )
        if cfg.admin.enabled:
            self.admin = AdminServer(
                self,
                self.metrics,
                host=cfg.admin.host,
                port=cfg.admin.port,
                dead_letters=_DeadLetters(self.outbox, self.dispatcher, self._clock, self.log),
                backfill=self,
            )
            await self.admin.start()
            self.log.info("admin endpoint listening", url=self.admin_url)
        client = self.client = self._client_factory(client_cfg)
        client.on_lifecycle(self._on_lifecycle)
        writer: BatchWriter = _WakingStore(self.dispatcher)
        if self.ha is not None and isinstance(self.outbox, PostgresOutbox):
            writer = FencedWriter(self.outbox, self.ha, on_written=self.dispatcher.notify)
        self.ingest = Ingest(
            client,
            writer,
            mapping,
            self.metrics,
            self.journal,
            self.log,
            self._clock,
            on_gap=self.backfill.enqueue_gap if cfg.backfill.enabled else None,
            store_outage=self.store_outage,
            gap_handler=self.standby.own_gap if self.standby is not None else None,
        )
        await client.start()  # the first token: a wrong secret or region fails here, clearly
        self._ingest_task = asyncio.create_task(self._run_ingest(), name="gcbridge-ingest")
        if self.ha is not None:
            # only the owned shards' topics; a takeover's gap is journalled with its lease
            await self.ha.start(client)
        else:
            self._log_rejections(await client.subscribe(list(self.topics)))
        live_at = self._clock()
        alone = self.ha is None and self.standby is None  # else downtime is a matter of shard leases
        gap = downtime_gap(self.journal.last_run(), live_at, self.topics) if alone else None
        if gap is not None:
            await self.ingest.record_gap(gap)
        self._stopped_mark = False
        await self._mark_alive(live_at)
        await self.backfill.start()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="gcbridge-refresh"))
        if self.standby is not None:
            self._tasks.append(asyncio.create_task(self.standby.run(), name="gcbridge-standby"))
        if self.lifecycle.state == "starting":
            self.lifecycle.fire("started")
        self.log.info("running", topics=topic_count(self.topics))

    def request_stop(self) -> None:
        """Begin a drain (what SIGTERM and SIGINT do)."""
        self._stop_requested.set()

    async def stop(self) -> None:
        """Drain: stop receiving, store what was received, finish in-flight writes, close everything."""
        self.lifecycle.fire("stop")
        timeout = self.config.outbox.drain_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        self.log.info("draining", timeout=timeout)
        if self.ha is not None:
            # make-before-break: the other instances subscribe and take over before our sockets close
            await self.ha.leave(min(self.ha.cfg.handoff_timeout, timeout / 2))
        await self._stop_receiving()
        if self._ingest_task is not None:
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._ingest_task), timeout=max(1.0, self._left(deadline))
                )
            except Exception as exc:  # TimeoutError included
                self.log.error(
                    "outbox flush did not finish",
                    queued=self.ingest.queued if self.ingest else 0,
                    error=f"{type(exc).__name__}: {exc}",
                    what_to_do="the queued events were lost: back-fill the last minutes before this stop, "
                    "and raise outbox.drain_timeout if it recurs",
                )
        finished = True
        if self.dispatcher is not None:
            drained, finished_in_time = await unless_set(
                self._hurry, self.dispatcher.drain(timeout=max(0.1, self._left(deadline)))
            )
            # Hurried: deliveries still running go back to pending at once, for the next start.
            finished = bool(finished_in_time) if drained else await self.dispatcher.drain(timeout=0.0)
        for task in [self._dispatch_task, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(
            *(t for t in [self._dispatch_task, *self._tasks] if t is not None), return_exceptions=True
        )
        stats = await self._safe_outbox_stats()
        await self._close_resources()
        self.lifecycle.fire("drained")
        self.log.info(
            "stopped",
            deliveries_finished=finished,
            pending=stats.pending if stats else None,
            received=self.ingest.received if self.ingest else 0,
        )

    async def reload_topics(self) -> None:
        """Re-read the config file's topic list and apply the difference (what SIGHUP does)."""
        client = self.client
        if self.config_path is None or client is None:
            return
        if self.ha is not None:
            self.log.warning(
                "reload ignored: topics are shared by the instances of [ha]",
                what_to_do="change the topics in every instance's config file, then restart them one by one",
            )
            return
        async with self._reload_lock:
            try:
                new = load_config(self.config_path).genesys.topics
            except ConfigError as exc:
                self.log.error(
                    "reload refused: the config file is invalid; keeping the current topics",
                    problems=exc.problems,
                    what_to_do="fix the file (`gcbridge check --config <file>` shows the problems), "
                    "then send SIGHUP again",
                )
                return
            added = [t for t in new if t not in self.topics]
            removed = [t for t in self.topics if t not in new]
            if not added and not removed:
                self.log.info("reload: topics unchanged", topics=topic_count(self.topics))
                return
            try:
                if added:
                    self._log_rejections(await client.subscribe(added))
                if removed:
                    await client.unsubscribe(removed)
            except Exception as exc:
                self.log.error(
                    "reload: subscription change failed",
                    error=str(exc),
                    added=added,
                    removed=removed,
                    what_to_do="send SIGHUP again: it applies whatever difference is left",
                )
                return
            self.topics = list(new)
            self.log.info(
                "reload: topics applied", added=added, removed=removed, topics=topic_count(self.topics)
            )

    def _log_rejections(self, result: SubscribeAnswer | None) -> None:
        # Each rejected topic has its line from the client's subscription_rejected lifecycle event.
        pending = result.pending if result is not None else ()
        if pending:
            self.log.warning(
                "topics not live yet; the client keeps trying",
                topics=len(pending),
                what_to_do="nothing yet: /readyz turns ready once they are live",
            )

    @property
    def endpoint(self) -> str:
        g = self.config.genesys
        return g.region or g.base_url or ""

    # -- StatusSource ------------------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self.lifecycle.alive

    async def status(self) -> dict[str, Any]:
        now = self._clock()
        await self._refresh(now)
        sink = self.sink
        doc = build_status(
            now=now,
            state=self.lifecycle.state,
            started_at=self.started_at,
            version=gcbridge.__version__,
            endpoint=self.endpoint,
            topics=topic_count(self.topics),
            client_stats=self._client_stats(),
            outbox=self._outbox_stats,
            received=self.ingest.received if self.ingest else 0,
            unrouted=self.ingest.unrouted if self.ingest else 0,
            gaps_count=self.journal.count,
            gaps_seconds=self.journal.seconds,
            recent_gaps=list(self.journal.recent),
            deliveries={
                "delivered": sink.delivered if sink else 0,
                "retry": sink.retried if sink else 0,
                "rejected": sink.rejected if sink else 0,
            },
            servicenow_reachable=sink.reachable if sink else None,
            servicenow_last_error=sink.last_error if sink else None,
            servicenow_instance=self.config.servicenow.instance_url,
            last_event_at=self.ingest.last_event_at if self.ingest else None,
            history=self.history.documents(),
            servicenow_condition=self._condition_doc(),
            delivery_problems=self._delivery_problems(),
        )
        doc["backfill"] = self.backfill.status_doc() if self.backfill is not None else {"enabled": False}
        if self.ha_view is not None:
            doc["ha"] = self.ha_view.document()
        doc["process"] = process_counts()
        self.metrics.ready.set(1 if doc["readiness"]["ready"] else 0)
        return doc

    async def backfill_by_hand(
        self, start: float, end: float, topics: Sequence[str] | None
    ) -> dict[str, Any]:
        """One back-fill job now (``POST /backfill``, ``gcbridge backfill``); ``topics``: the service's own
        when ``None``. Returns the job's document once its first attempt ended."""
        if self.backfill is None:
            raise RuntimeError("the service is not running")
        chosen = single_topics(topics if topics is not None else self.topics)
        job = await self.backfill.run_by_hand(start, end, chosen)
        return job.document()

    # -- internals ---------------------------------------------------------------------------------------

    def _left(self, deadline: float) -> float:
        return deadline - asyncio.get_running_loop().time()

    async def _run_ingest(self) -> None:
        assert self.ingest is not None
        try:
            await self.ingest.run()
        finally:
            if self.lifecycle.state in ("starting", "running"):
                # The stream ended without a stop request: the client gave up (for example invalid_client).
                failure = self.ingest.failure
                self.fatal_error = self.fatal_error or (
                    f"{type(failure).__name__}: {failure}" if failure else "the notification stream ended"
                )
                self.log.error(
                    "failed: no more events can be received",
                    error=self.fatal_error,
                    what_to_do=_FATAL_ADVICE,
                )
                self.lifecycle.fire("fatal")
                self._stop_requested.set()

    async def _stop_receiving(self) -> None:
        """Close the sockets; the client's stream then ends after the events it already holds."""
        client = self.client
        if client is None:
            return
        # The client drains its sockets first (reads each until it answers a ping) and reports a socket that
        # did not answer as a gap up to when its close began; the next start's downtime gap runs from this
        # mark, so it is taken before the close begins (and a margin earlier, for events in flight).
        await self._mark_alive(self._clock() - SHUTDOWN_GAP_MARGIN, clean=True)
        try:
            await client.aclose()
        except Exception as exc:
            self.log.warning(
                "closing the notification client failed",
                error=str(exc),
                what_to_do="nothing: the service stops all the same",
            )

    async def _mark_alive(self, at: float, *, clean: bool = False) -> None:
        """The journal's alive mark, written one at a time; once the stop's (clean) mark is written, later
        periodic marks are dropped."""
        async with self._alive_lock:
            if self._stopped_mark:
                return
            await self.journal.mark_alive(at, clean=clean)
            self._stopped_mark = clean

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            now = self._clock()
            try:
                await self._refresh(now)
                if self.lifecycle.state == "running":
                    await self._mark_alive(now)
                    await self._probe_servicenow(now)
                self._summarise_retries(now)
            except Exception as exc:
                if isinstance(self.journal, PgGapJournal) or self.store_outage.failing:
                    # the journal lives in the outbox database: its outage is said once, for every caller
                    self.store_outage.failed("refresh", exc, now)
                    continue
                self.log.warning(
                    "state refresh failed",
                    error=str(exc),
                    what_to_do="if it repeats, check the disk that holds the outbox and the gap journal",
                )

    def _summarise_retries(self, now: float) -> None:
        sink = self.sink
        if sink is None:
            return
        summary = self.retry_summary.observe(now, sink.retried, self._outbox_stats, sink.last_error)
        if summary is not None:
            self.log.info(summary.message, **summary.fields())

    async def _probe_servicenow(self, now: float) -> None:
        # Deliveries tell whether ServiceNow answers; a quiet bridge asks it now and then instead.
        sink = self.sink
        if sink is None or self._session is None:
            return
        recent = sink.last_outcome_at is not None and now - sink.last_outcome_at < SERVICENOW_PROBE_INTERVAL
        if recent or (now - self._last_probe < SERVICENOW_PROBE_INTERVAL and sink.reachable is not None):
            return
        self._last_probe = now
        url = f"{self.config.servicenow.instance_url}/api/now/table/sys_user"
        try:
            async with self._session.get(
                url, params={"sysparm_limit": "1"}, timeout=aiohttp.ClientTimeout(total=10)
            ) as r:
                reachable = probe_answered(r.status, r.headers.get("Content-Type", ""))
        except (aiohttp.ClientError, TimeoutError):
            reachable = False
        sink.note_reachable(reachable)

    async def _refresh(self, now: float) -> None:
        if now - self._last_refresh < 0.2:
            return
        self._last_refresh = now
        stats = await self._safe_outbox_stats()
        if stats is not None:
            self._outbox_stats = stats
            self.metrics.set_outbox(stats)
        self._update_client_gauges()
        if self.backfill is not None:
            await self.backfill.refresh()
        self.history.record(self._history_sample(now))
        self._update_condition_gauge()
        if self.ha_view is not None:
            await self.ha_view.refresh(now)

    def _history_sample(self, now: float) -> Sample:
        request_seconds, requests = 0.0, 0
        for metric in self.metrics.servicenow_request.collect():
            for s in metric.samples:
                if s.name.endswith("_sum"):
                    request_seconds += s.value
                elif s.name.endswith("_count"):
                    requests += int(s.value)
        stats = self._outbox_stats
        return Sample(
            at=now,
            received=self.ingest.received if self.ingest else 0,
            written=self.sink.delivered if self.sink else 0,
            outbox_depth=stats.pending + stats.in_flight if stats else 0,
            latency_seconds=request_seconds,
            requests=requests,
        )

    def _condition(self) -> SinkCondition | None:
        health = self.dispatcher.health if self.dispatcher is not None else None
        return health.condition if health is not None and health.paused else None

    def _condition_doc(self) -> dict[str, Any] | None:
        condition = self._condition()
        if condition is None:
            return None
        assert self.dispatcher is not None
        since = self.dispatcher.health.since
        return {
            "kind": condition.kind,
            "summary": condition.summary,
            "action": condition.action,
            "since": since,
        }

    def _delivery_problems(self) -> list[str]:
        condition = self._condition()
        problems = [condition.summary] if condition is not None else []
        if self.store_outage.problem is not None:
            problems.append(self.store_outage.problem)
        rejection = self.sink.wholesale_rejection() if self.sink is not None else None
        if rejection is not None:
            problems.append(rejection)
        return problems

    def _update_condition_gauge(self) -> None:
        condition = self._condition()
        for kind in SINK_CONDITIONS:
            value = 1 if condition is not None and condition.kind == kind else 0
            self.metrics.servicenow_condition.labels(condition=kind).set(value)

    async def _safe_outbox_stats(self) -> OutboxStats | None:
        if self.outbox is None:
            return self._outbox_stats
        try:
            return await self.outbox.stats(self._clock())
        except Exception:
            return self._outbox_stats

    def _client_stats(self) -> object:
        if self.client is None:
            return None
        try:
            return self.client.stats()
        except Exception:
            return None

    def _update_client_gauges(self) -> None:
        stats = self._client_stats()
        if stats is None:
            return
        rows = channel_rows(stats)
        held = getattr(stats, "channels_held", None)
        self.metrics.channels_in_use.set(held if isinstance(held, int) else len(rows))
        self.metrics.shards_total.set(len({r["shard"] for r in rows}))
        self.metrics.shards_live.set(len({r["shard"] for r in rows if r["state"] in EVENTS_FLOW_STATES}))
        self.metrics.duplicates_dropped.set(getattr(stats, "duplicates_dropped", 0) or 0)
        self.metrics.loop_lag.set(getattr(stats, "loop_lag", 0.0) or 0.0)

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        # Counted here, not logged: the client writes one line per change of a path itself (through the
        # service's log set-up), the gap journal writes the gap's line, and a fatal error gets the service's
        # own "failed" line. Logging them here too would say everything twice.
        kind = str(getattr(event, "kind", ""))
        reason = str(getattr(event, "reason", "") or "unspecified")
        self.metrics.record_lifecycle(kind, reason)
        if kind == "fatal":
            detail = getattr(event, "detail", None)
            self.fatal_error = f"{reason}: {detail}" if detail else reason

    def _add_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signal_phase, action = next_phase(self._signal_phase, sig)
        if action == "stop":
            self.log.info("signal received; draining", signal=sig.name)
            self.request_stop()
        elif action == "hurry":
            self.log.warning(
                "second signal: not waiting for deliveries in progress (they stay in the outbox)",
                signal=sig.name,
            )
            self._hurry.set()
        else:
            self.log.info("signal received; already draining", signal=sig.name)

    def _on_hup(self) -> None:
        self.log.info("SIGHUP: reloading topics")
        task = asyncio.create_task(self.reload_topics(), name="gcbridge-reload")
        self._tasks.append(task)

    async def _abort(self) -> None:
        """Undo a start that failed half-way: nothing was received, so there is nothing to drain."""
        self.lifecycle.fire("fatal")
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()
        tasks = [t for t in [self._ingest_task, self._dispatch_task, *self._tasks] if t is not None]
        if self.dispatcher is not None:
            with contextlib.suppress(Exception):
                await self.dispatcher.drain(timeout=1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_resources()

    async def _open_postgres_parts(self, outbox: OpenOutbox) -> BridgeConfig:
        """Beside a PostgreSQL outbox: the gap journal in its database and, with ``[ha]``, this instance's
        membership (:func:`gcbridge.bridge.ha.open_postgres_parts`); as a hot standby (``[ha] standby``), its
        coverage publisher instead. Returns the client's config."""
        if self.config.outbox.url is None or not isinstance(outbox, PostgresOutbox):
            return self.config
        parts = await open_postgres_parts(
            self.config,
            self.topics,
            log=self.log,
            on_gap=self._on_takeover_gap,
            channels_in_use=self._channels_in_use,
        )
        self.journal, self._leases, self.ha = parts.journal, parts.leases, parts.coordinator
        self._instance_id = parts.instance_id
        ha = self.config.ha
        if ha is not None:
            instance_id = parts.instance_id
            coverage = StandbyCoverageStore(outbox.pool, instance_id)
            if ha.standby:
                self.standby = StandbyPublisher(
                    coverage, self.topics, self._client_stats, self._clock, self.log
                )
                self.log.info(
                    "running as a hot standby: every topic, no shard leases", instance_id=instance_id
                )
            self.ha_view = HaView(
                self.metrics,
                instance_id=instance_id,
                coordinator=self.ha,
                standby=self.standby,
                coverage=coverage,
            )
        return parts.client_config

    async def _on_takeover_gap(self, entry: dict[str, Any]) -> None:
        self.journal.remember(entry)
        if self.ingest is not None:
            self.ingest.announce_gap(entry)
        if self.backfill is not None and self.config.backfill.enabled:
            # a failover's gap is repaired like any other: once, by the instance that took the shard over
            await self.backfill.enqueue_gap(gap_of_entry(entry))

    def _channels_in_use(self) -> int:
        held = getattr(self._client_stats(), "channels_held", None)
        return held if isinstance(held, int) else 0

    async def _close_resources(self) -> None:
        if self.backfill is not None:
            await self.backfill.close()  # a job still running is taken up again at the next start
        if self.ha is not None:
            await self.ha.stop()
        if self._leases is not None:
            with contextlib.suppress(Exception):
                await self._leases.close()
        with contextlib.suppress(Exception):
            await self.journal.close()
        if self.admin is not None:
            await self.admin.stop()
        if self._router is not None:
            with contextlib.suppress(Exception):
                await self._router.close()
        if self._session is not None:
            await self._session.close()
        if self.outbox is not None:
            with contextlib.suppress(Exception):
                await self.outbox.close()


class _WakingStore:
    """The outbox as Ingest sees it: a put wakes the dispatcher at once instead of at its next poll."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def put_many(self, items: Sequence[OutboxItem]) -> int:
        return await self._dispatcher.ingest(items)


class _DeadLetters:
    """The service's own outbox behind the admin endpoint's dead-letter routes (``gcbridge outbox`` while the
    service runs and holds the outbox); a replay wakes the dispatcher, so replayed rows go out at once."""

    def __init__(
        self, outbox: OutboxStore, dispatcher: Dispatcher, clock: Callable[[], float], log: Any
    ) -> None:
        self._outbox, self._dispatcher, self._clock, self._log = outbox, dispatcher, clock, log

    async def dead_letters(self, limit: int, offset: int) -> tuple[list[RowInfo], OutboxStats]:
        rows = await self._outbox.dead_letters(limit=limit, offset=offset)
        return rows, await self._outbox.stats(self._clock())

    async def row(self, row_id: int) -> RowInfo | None:
        return await self._outbox.inspect(row_id)

    async def replay(self, rows: Selection) -> int:
        replayed = await self._outbox.replay(rows, self._clock())
        self._dispatcher.notify()
        self._log.info("dead letters replayed (admin endpoint)", rows=replayed)
        return replayed

    async def purge(self, rows: Selection) -> int:
        purged = await self._outbox.purge(rows)
        self._log.warning("dead letters purged (admin endpoint)", rows=purged)
        return purged


def build_client(config: BridgeConfig) -> EventSource:
    """The Genesys notification client for ``config.genesys``."""
    g = config.genesys
    return NotificationClient(
        region=g.region,
        client_id=g.client_id,
        client_secret=Secret(g.secret().get_secret_value()),
        base_url=g.base_url,
        options=g.client_options(),
        extra_credentials=[(c.client_id, Secret(c.secret().get_secret_value())) for c in g.extra_credentials],
    )
