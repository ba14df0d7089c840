"""Back-fill of a :class:`~gcbridge.genesys.Gap` from the Genesys Cloud REST API (the I/O shell).

``Backfiller.fill(gap)`` yields, per topic family of the gap, events that bring a consumer up to date, each
with exactly the body of the live topic it stands for (so its ``dedup_key`` equals the live event's when the
state is the same), and an :class:`Unfillable` for topics it cannot repair, with the reason:

* ``v2.routing.queues.{id}.conversations``, ``v2.users.{id}.conversations``: the sync details query over the
  gap widened by ``margin`` (and back by ``max_conversation_age``, for conversations that started earlier),
  all pages, de-duplicated by conversation id; then ``GET /api/v2/conversations/{id}`` for every conversation
  that had activity in the gap: one event per gap topic the conversation concerns, with its current state.
* ``v2.detail.events.conversation.{id}.{family}``: rebuilt from the analytics sessions and segments, for the
  events that happened within the widened gap.
* ``v2.users.{id}.presence`` (bulk, 50 users a request), ``v2.users.{id}.routingStatus`` (one request a user),
  ``v2.analytics.queues.{id}.observations`` (one query, a snapshot as of the read).

Requests are paced under ``max_requests_per_minute`` (rolling minute); a 429 waits ``Retry-After`` and goes
on; a 403 makes its family :class:`Unfillable` (``missing permission ...``) while the others go on; any other
failure raises :class:`BackfillError`. The pure parts live in :mod:`.backfill_plan` and
:mod:`.backfill_shapes`, the REST calls in :mod:`.analytics_api`.

Example::

    async with Backfiller.from_credentials(client_id=cid, client_secret=secret, region="eu_west_1") as bf:
        run = bf.fill(gap)
        async for item in run:
            ...  # an Event (metadata["backfill"] says where it came from) or an Unfillable
        print(run.report)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gcbridge._logs import get_logger
from gcbridge.genesys.analytics_api import (
    CONVERSATION_PATH,
    DETAILS_QUERY_PATH,
    OBSERVATIONS_QUERY_PATH,
    PRESENCE_BULK_PATH,
    ROUTING_STATUS_PATH,
    AnalyticsApi,
)
from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.backfill_plan import (
    OBSERVATION_METRICS,
    BackfillPlan,
    RollingLimit,
    chunks,
    details_query,
    had_activity,
    observations_query,
    parse_iso,
    plan,
)
from gcbridge.genesys.backfill_shapes import (
    detail_events,
    topic_conversation,
    topic_observation,
    topic_presence,
    topic_routing_status,
)
from gcbridge.genesys.errors import GenesysApiError, GenesysError, GenesysUsageError
from gcbridge.genesys.events import Event, Gap
from gcbridge.genesys.regions import hosts_for_base_url, resolve_region
from gcbridge.genesys.rest import ApiCaller, RestPolicy, new_session
from gcbridge.secrets import Secret

__all__ = ["BackfillError", "BackfillOptions", "BackfillReport", "BackfillRun", "Backfiller", "Unfillable"]

log = get_logger(__name__)

#: The ``version`` of the live notifications (the envelope's ``version``).
EVENT_VERSION = "2"
MAX_BULK_PRESENCE = 50
MAX_OBSERVATION_QUEUES = 100
DETAIL_PERMISSION = "analytics:conversationDetail:view (or analytics:agentConversationDetail:view)"
CONVERSATION_PERMISSION = "conversation:communication:view"
OBSERVATION_PERMISSION = "analytics:queueObservation:view"
PRESENCE_PERMISSION = "(none documented) for presence"
ROUTING_PERMISSION = "(none documented) for routing status"


class BackfillError(GenesysError):
    """A back-fill run failed (not a missing permission): the message says which call and why. Retry later."""


@dataclass(frozen=True)
class BackfillOptions:
    """How a back-fill reads. Times in seconds."""

    margin: float = 120.0
    """Added before ``gap.start`` and after ``gap.end`` (events in flight, clocks, analytics lag)."""
    page_size: int = 100
    """``paging.pageSize`` of the details query."""
    max_requests_per_minute: int = 200
    """Our own cap in any rolling minute, under the token's 300/min (which channel calls share)."""
    max_conversation_age: float = 4 * 3600.0
    """How long before the gap a conversation that changed in it may have started (the query reaches back
    this far; the sync query covers whole UTC days, so yesterday's late conversations are found)."""
    max_ids_per_query: int = 50
    """Queue or user ids in one details query filter (more are split over several queries)."""
    max_pages: int = 1000
    """Pages of one details query before giving up (:class:`BackfillError`): a guard against endless drift."""
    max_rate_limited: int = 100
    """429 answers waited out for one request before :class:`BackfillError`."""
    observation_metrics: tuple[str, ...] = OBSERVATION_METRICS
    rest_policy: RestPolicy = field(default_factory=RestPolicy)
    """Retries of 5xx and connection errors, request timeout (429s have ``max_rate_limited``)."""

    def __post_init__(self) -> None:
        if self.margin < 0 or self.max_conversation_age < 0:
            raise GenesysUsageError("BackfillOptions.margin and max_conversation_age must be >= 0")
        if not 1 <= self.page_size <= 100:
            raise GenesysUsageError(f"BackfillOptions.page_size must be 1..100, got {self.page_size}")
        for name in ("max_requests_per_minute", "max_ids_per_query", "max_pages"):
            if getattr(self, name) < 1:
                raise GenesysUsageError(f"BackfillOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_rate_limited < 0:
            raise GenesysUsageError("BackfillOptions.max_rate_limited must be >= 0")


@dataclass(frozen=True)
class Unfillable:
    """Topics (of one family) that cannot be back-filled, and why; the gap stays open for a person."""

    topics: tuple[str, ...]
    reason: str


@dataclass
class BackfillReport:
    """Filled in while a run iterates; complete when the iterator ends. ``read_at`` is the moment the first
    REST request for states was sent (every event reflects a state read at or after it); ``errors`` lists
    problems that did not stop the run (e.g. a conversation the details query found but the conversation API
    did not)."""

    events: int = 0
    requests: int = 0
    conversations: int = 0
    unfillable: list[Unfillable] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    read_at: float | None = None


class BackfillRun:
    """An async iterator of ``Event | Unfillable`` for one gap; :attr:`report` says what it did."""

    def __init__(self, items: AsyncGenerator[Event | Unfillable, None], report: BackfillReport) -> None:
        self._items = items
        self.report = report

    def __aiter__(self) -> AsyncIterator[Event | Unfillable]:
        return self

    async def __anext__(self) -> Event | Unfillable:
        return await self._items.__anext__()

    async def aclose(self) -> None:
        """Stop early (a run not iterated to its end)."""
        await self._items.aclose()


class _Forbidden(Exception):
    """A 403 for one family: becomes an :class:`Unfillable`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Backfiller:
    """Back-fills gaps through one OAuth client's REST access (see the module docstring).

    ``clock`` (wall-clock UNIX seconds) stamps ``read_at``; ``monotonic`` and ``sleep`` pace the requests
    (inject all three to run in simulated time). Runs of one back-filler share its rate cap."""

    def __init__(
        self,
        tokens: TokenManager,
        session: aiohttp.ClientSession,
        api_base: str,
        *,
        options: BackfillOptions | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        _owns: tuple[TokenManager | None, aiohttp.ClientSession | None] = (None, None),
    ) -> None:
        self.options = options if options is not None else BackfillOptions()
        self._tokens = tokens
        self._session = session
        self._api_base = api_base.rstrip("/")
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng
        self._limit = RollingLimit(self.options.max_requests_per_minute)
        # what from_credentials created, closed by aclose
        self._owned_tokens, self._owned_session = _owns

    @classmethod
    def from_credentials(
        cls,
        *,
        client_id: str,
        client_secret: str | Secret,
        region: str | None = None,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        options: BackfillOptions | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Backfiller:
        """A back-filler with its own token manager (and session, unless given), like ``NotificationClient``
        takes them: ``region`` (e.g. ``eu_west_1``) or ``base_url`` (the simulator). Call inside a running
        event loop; :meth:`aclose` closes what it created."""
        if (region is None) == (base_url is None):
            raise GenesysUsageError("give exactly one of region= (e.g. 'mypurecloud.ie') or base_url=")
        hosts = hosts_for_base_url(base_url) if base_url else resolve_region(str(region))
        own_session = session is None
        http = session if session is not None else new_session()
        tokens = TokenManager(http, hosts.token_url, client_id, client_secret)
        owns = (tokens, http if own_session else None)
        return cls(tokens, http, hosts.api_base, options=options, clock=clock, sleep=sleep, _owns=owns)

    async def __aenter__(self) -> Backfiller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the token manager and session if :meth:`from_credentials` created them."""
        tokens, self._owned_tokens = self._owned_tokens, None
        if tokens is not None:
            await tokens.aclose()
        session, self._owned_session = self._owned_session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        return f"Backfiller(api_base={self._api_base!r}, client_id={self._tokens.client_id!r})"

    def fill(self, gap: Gap) -> BackfillRun:
        """Start a back-fill of ``gap``: iterate the returned run to get its events."""
        report = BackfillReport()
        run = _Run(self.options, self._clock, self._caller(report), gap, report)
        return BackfillRun(run.items(), report)

    # -- pacing (shared by every run of this back-filler) ----------------------------------------------------
    async def _before_send(self) -> None:
        while (delay := self._limit.delay(self._monotonic())) > 0:
            await self._sleep(delay)
        self._limit.sent()

    def _answered(self) -> None:
        self._limit.answered(self._monotonic())

    def _caller(self, report: BackfillReport) -> ApiCaller:
        def after_send() -> None:
            self._answered()
            report.requests += 1

        return ApiCaller(
            self._session,
            self._api_base,
            self._tokens,
            policy=self.options.rest_policy,
            rng=self._rng,
            sleep=self._sleep,
            max_rate_limited=self.options.max_rate_limited,
            before_send=self._before_send,
            after_send=after_send,
        )


class _Run:
    """One back-fill of one gap."""

    def __init__(
        self,
        options: BackfillOptions,
        clock: Callable[[], float],
        caller: ApiCaller,
        gap: Gap,
        report: BackfillReport,
    ) -> None:
        self.options = options
        self.clock = clock
        self.gap = gap
        self.report = report
        self.api = AnalyticsApi(caller)
        self.window = (gap.start - self.options.margin, gap.end + self.options.margin)

    async def items(self) -> AsyncGenerator[Event | Unfillable, None]:
        gap, report = self.gap, self.report
        todo = plan(gap.topics)
        log.info("genesys back-fill started", gap_start=gap.start, gap_end=gap.end, topics=len(gap.topics))
        try:
            by_reason: dict[str, list[str]] = {}
            for topic, reason in todo.unfillable.items():
                by_reason.setdefault(reason, []).append(topic)
            for reason, unknown in by_reason.items():
                yield self._unfillable(tuple(unknown), reason)
            families: tuple[tuple[Any, tuple[str, ...]], ...] = (
                (self._conversations, _conversation_topics(todo)),
                (self._presence, tuple(todo.presence.values())),
                (self._routing_status, tuple(todo.routing_status.values())),
                (self._observations, tuple(todo.observations.values())),
            )
            for family, topics in families:
                if not topics:
                    continue
                try:
                    async for item in family(todo):
                        if isinstance(item, Event):
                            report.events += 1
                        yield item
                except _Forbidden as exc:
                    yield self._unfillable(topics, exc.reason)
        except GenesysError as exc:
            if isinstance(exc, BackfillError):
                raise
            log.warning(
                "genesys back-fill failed",
                error=str(exc),
                what_to_do="retry later; if it keeps failing, check the error (network, credentials, region)",
            )
            raise BackfillError(f"back-fill of gap {gap.start:.3f}..{gap.end:.3f} failed: {exc}") from None
        log.info(
            "genesys back-fill finished",
            events=report.events,
            requests=report.requests,
            conversations=report.conversations,
            unfillable=sum(len(u.topics) for u in report.unfillable),
        )

    def _unfillable(self, topics: tuple[str, ...], reason: str) -> Unfillable:
        item = Unfillable(topics, reason)
        if item not in self.report.unfillable:
            self.report.unfillable.append(item)
        log.warning(
            "genesys back-fill cannot repair topics",
            topics=len(topics),
            first_topic=topics[0] if topics else None,
            reason=reason,
            what_to_do="the gap stays open for these topics: repair by hand, or grant what the reason names",
        )
        return item

    def _asking(self) -> float:
        """The moment a request for states is sent: the earliest the server can have read them, so a live
        event received after it may be newer than the answer (the service's guarded put compares with it)."""
        now = self.clock()
        if self.report.read_at is None:
            self.report.read_at = now
        return now

    def _event(self, topic: str, body: dict[str, Any], source: str, read_at: float) -> Event:
        metadata = {"backfill": {"source": source, "read_at": read_at, "gap": [self.gap.start, self.gap.end]}}
        return Event(topic, body, EVENT_VERSION, metadata, "", read_at, "backfill")

    # -- conversations and detail events ---------------------------------------------------------------------
    async def _conversations(self, todo: BackfillPlan) -> AsyncGenerator[Event | Unfillable, None]:
        start, end = self.window
        found: dict[str, dict[str, Any]] = {}
        read_at = self._asking()
        try:
            for dimension, ids in (
                ("queueId", todo.queue_conversations),
                ("userId", todo.user_conversations),
            ):
                if ids:
                    await self._query(dimension, list(ids), found)
            missing = [cid for cid in todo.details if cid not in found]
            if missing:
                await self._query("conversationId", missing, found)
        except _Forbidden as exc:
            yield self._unfillable(_conversation_topics(todo), exc.reason)
            return
        conversation_topics = (*todo.queue_conversations.values(), *todo.user_conversations.values())
        try:
            async for event in self._current_states(todo, found):
                yield event
        except _Forbidden as exc:
            yield self._unfillable(conversation_topics, exc.reason)
        for cid, families in todo.details.items():
            conv = found.get(cid)
            if conv is None:
                yield self._unfillable(
                    tuple(families.values()),
                    f"conversation {cid} not found by the details query (it started more than "
                    f"max_conversation_age before the gap, or is not in analytics yet)",
                )
                continue
            for family, at, body in detail_events(conv, families):
                if start <= at <= end:
                    yield self._event(families[family], body, "POST " + DETAILS_QUERY_PATH, read_at)

    async def _query(self, dimension: str, ids: list[str], found: dict[str, dict[str, Any]]) -> None:
        """Every conversation of the details query for ``ids`` (all pages, de-duplicated) that had activity in
        the widened gap (or, by ``conversationId``, any of them) into ``found``."""
        start, end = self.window
        since = start - self.options.max_conversation_age
        for group in chunks(ids, self.options.max_ids_per_query):
            for number in range(1, self.options.max_pages + 1):
                body = details_query(since, end, dimension, group, self.options.page_size, number)
                page = await self._guarded(self.api.details_page(body), DETAIL_PERMISSION)
                if not page:  # None: past the last page; []: an empty page ends it too
                    break
                for conv in page:
                    if dimension == "conversationId" or had_activity(conv, start, end):
                        found.setdefault(conv["conversationId"], conv)
            else:
                raise BackfillError(
                    f"the details query for {dimension} did not end within {self.options.max_pages} pages "
                    "(BackfillOptions.max_pages)"
                )

    async def _current_states(
        self, todo: BackfillPlan, found: dict[str, dict[str, Any]]
    ) -> AsyncGenerator[Event, None]:
        wanted_queues, wanted_users = todo.queue_conversations, todo.user_conversations
        if not wanted_queues and not wanted_users:
            return
        for cid, conv in sorted(found.items(), key=lambda item: _start_key(item[1])):
            if not _concerns(conv, wanted_queues, wanted_users):
                continue
            read_at = self._asking()
            try:
                rest = await self._guarded(self.api.conversation(cid), CONVERSATION_PERMISSION)
            except GenesysApiError as exc:
                if exc.status != 404:
                    raise
                self.report.errors.append(f"conversation {cid}: found by analytics, not by the API (404)")
                continue
            self.report.conversations += 1
            body = topic_conversation(rest)
            participants = [p for p in rest.get("participants") or [] if isinstance(p, dict)]
            queue_ids = dict.fromkeys(p["queueId"] for p in participants if isinstance(p.get("queueId"), str))
            user_ids = dict.fromkeys(p["userId"] for p in participants if isinstance(p.get("userId"), str))
            source = "GET " + CONVERSATION_PATH
            for qid in queue_ids:
                if qid in wanted_queues:
                    yield self._event(wanted_queues[qid], body, source, read_at)
            for uid in user_ids:
                if uid in wanted_users:
                    yield self._event(wanted_users[uid], body, source, read_at)

    # -- users -----------------------------------------------------------------------------------------------
    async def _presence(self, todo: BackfillPlan) -> AsyncGenerator[Event | Unfillable, None]:
        for group in chunks(list(todo.presence), MAX_BULK_PRESENCE):
            read_at = self._asking()
            answers = await self._guarded(self.api.presences(group), PRESENCE_PERMISSION)
            by_user = {str(a.get("userId") or a.get("id")): a for a in answers}
            for uid in group:
                answer = by_user.get(uid)
                if answer is None:
                    yield self._unfillable((todo.presence[uid],), f"user {uid} not found by the presence API")
                    continue
                yield self._event(
                    todo.presence[uid], topic_presence(answer), "GET " + PRESENCE_BULK_PATH, read_at
                )

    async def _routing_status(self, todo: BackfillPlan) -> AsyncGenerator[Event | Unfillable, None]:
        for uid, topic in todo.routing_status.items():
            read_at = self._asking()
            answer = await self._guarded(self.api.routing_status(uid), ROUTING_PERMISSION)
            yield self._event(topic, topic_routing_status(answer, uid), "GET " + ROUTING_STATUS_PATH, read_at)

    # -- queues ----------------------------------------------------------------------------------------------
    async def _observations(self, todo: BackfillPlan) -> AsyncGenerator[Event | Unfillable, None]:
        for group in chunks(list(todo.observations), MAX_OBSERVATION_QUEUES):
            query = observations_query(group, self.options.observation_metrics)
            read_at = self._asking()
            results = await self._guarded(self.api.observations(query), OBSERVATION_PERMISSION)
            by_queue: dict[str, dict[str, Any]] = {}
            for result in results:
                group_of = result.get("group")
                if isinstance(group_of, dict) and isinstance(group_of.get("queueId"), str):
                    by_queue.setdefault(group_of["queueId"], result)
            for qid in group:
                result = by_queue.get(qid)
                if result is None:
                    yield self._unfillable(
                        (todo.observations[qid],), f"queue {qid} not in the observations answer"
                    )
                    continue
                body = topic_observation(result, read_at)
                yield self._event(todo.observations[qid], body, "POST " + OBSERVATIONS_QUERY_PATH, read_at)

    @staticmethod
    async def _guarded(call: Awaitable[Any], permission: str) -> Any:
        """Await a REST call; a 403 becomes :class:`_Forbidden` naming ``permission``."""
        try:
            return await call
        except GenesysApiError as exc:
            if exc.status == 403:
                code = f" {exc.code}" if exc.code else ""
                raise _Forbidden(
                    f"missing permission {permission} ({exc.method} {exc.path}: HTTP 403{code})"
                ) from None
            raise


def _conversation_topics(todo: BackfillPlan) -> tuple[str, ...]:
    return (
        *todo.queue_conversations.values(),
        *todo.user_conversations.values(),
        *(t for families in todo.details.values() for t in families.values()),
    )


def _start_key(conv: dict[str, Any]) -> tuple[float, str]:
    try:
        return parse_iso(conv["conversationStart"]), conv["conversationId"]
    except (KeyError, TypeError, ValueError):
        return float("inf"), str(conv.get("conversationId"))


def _concerns(conv: dict[str, Any], queues: dict[str, str], users: dict[str, str]) -> bool:
    """Whether an analytics conversation touches one of the gap's queues or users."""
    for p in conv.get("participants") or []:
        if not isinstance(p, dict):
            continue
        if p.get("userId") in users:
            return True
        for session in p.get("sessions") or []:
            for segment in session.get("segments") or [] if isinstance(session, dict) else []:
                if isinstance(segment, dict) and segment.get("queueId") in queues:
                    return True
    return False
