"""``NotificationClient``: the asyncio shell around the pure core in :mod:`gcbridge.core`.

The core decides (which channel to create, when to rotate, when a path is down, what gap to report); this
module performs the I/O it asks for (REST through :class:`~gcbridge.genesys.rest.NotificationsApi`, WebSockets
through aiohttp), feeds the outcomes back, reads frames, de-duplicates events and hands them to the user in
arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gcbridge._logs import get_logger
from gcbridge.core.backoff import Backoff
from gcbridge.core.dedup import CopyMatcher, DedupWindow
from gcbridge.core.health import HealthMonitor, Verdict
from gcbridge.core.lifecycle_log import LifecycleLog
from gcbridge.core.loop_lag import LagWindow
from gcbridge.core.path import (
    ChannelChecked,
    ChannelCheckFailed,
    ChannelCreated,
    ChannelCreateFailed,
    ChannelRef,
    CheckChannel,
    CloseSocket,
    CreateChannel,
    InvalidateToken,
    Notice,
    Notify,
    OpenSocket,
    PathEvent,
    PathState,
    ProbeSocket,
    PutSubscriptions,
    SocketClosed,
    SocketOpened,
    SocketOpenFailed,
    Subscribed,
    SubscribeFailed,
    SystemNotice,
)
from gcbridge.core.supervisor import ClientCore, GapFound, Output, PathKey, Routed, TopicsRejected
from gcbridge.core.topics import normalise_topics, topic_matches
from gcbridge.genesys.auth import AccessToken, TokenManager
from gcbridge.genesys.catch_up import CatchUp
from gcbridge.genesys.client_types import (
    ClientClosedError,
    ClientOptions,
    ClientStats,
    LifecycleEvent,
    PathStats,
    SubscribeResult,
    SubscriptionRejectedError,
)
from gcbridge.genesys.errors import (
    ClientNotStartedError,
    GenesysApiError,
    GenesysUsageError,
    InvalidClientError,
    StartTimeoutError,
    TokenUnavailableError,
)
from gcbridge.genesys.events import Event, Gap, Item
from gcbridge.genesys.intake import Intake, Kind
from gcbridge.genesys.regions import RegionHosts, hosts_for_base_url, resolve_region
from gcbridge.genesys.rest import NotificationsApi, new_session
from gcbridge.genesys.socket import (
    PING_MESSAGE,
    Frame,
    SocketOpenError,
    classify,
    open_socket,
)
from gcbridge.secrets import Secret

log = get_logger(__name__)

_NOTICES = {
    "socket_closing": Notice.SOCKET_CLOSING,
    "no_longer_subscribed": Notice.NO_LONGER_SUBSCRIBED,
    "token_revoked": Notice.TOKEN_REVOKED,
}


_END = object()
_UNKNOWN_TOPICS_SAID_MAX = 1_000  # bounds the memory of topics already said
_DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
_LAG_PROBE_INTERVAL = 0.25  # how often the loop's lateness is measured (a few wake-ups a second: no cost)
_LAG_KEEP = 600.0  # seconds of measurements kept: a stalled socket is found well within this
_LAG_NOTICE_LOOKBACK = 10.0  # a system notice read now may have waited as long as the loop was late lately


class _Buffer:
    """The items waiting for the consumer, in arrival order. Readers wait for room when it holds ``limit``
    items (back-pressure: never a drop); gaps and the end marker are put regardless."""

    __slots__ = ("_getters", "_putters", "bounded", "ended", "items", "limit")

    def __init__(self, limit: int) -> None:
        self.items: deque[Any] = deque()
        self.limit = limit
        self.ended = False  # the end marker is in (or was taken from) ``items``
        self.bounded = True  # False while the client drains its sockets before closing (see ``unbound``)
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.items)

    def put(self, item: Any) -> None:
        self.items.append(item)
        if self._getters:
            _wake_all(self._getters)

    def full(self) -> bool:
        return self.bounded and len(self.items) >= self.limit

    def unbound(self) -> None:
        """Stop holding readers back (for good): a closing client reads what its sockets still hold even
        when nobody consumes, so that the close does not wait for the consumer; the excess is what the
        server sent before it answered the last ping, read within ``pong_timeout``."""
        self.bounded = False
        _wake_all(self._putters)

    async def wait_for_space(self) -> None:
        while self.full():
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            await putter

    async def wait_for_items(self) -> None:
        while not self.items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            await getter

    async def get(self) -> Any:
        if not self.items:
            await self.wait_for_items()
        item = self.items.popleft()
        self._taken()
        return item

    def take(self, max_size: int) -> list[Any]:
        """The oldest ``max_size`` items (all, when fewer)."""
        items = self.items
        batch = [items.popleft() for _ in range(min(len(items), max_size))]
        self._taken()
        return batch

    def _taken(self) -> None:
        # waiting readers go on once half the room is free: one wake-up per half buffer, not per item
        if self._putters and len(self.items) <= self.limit // 2:
            _wake_all(self._putters)


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    woken, waiters[:] = list(waiters), []
    for waiter in woken:
        if not waiter.done():
            waiter.set_result(None)


@dataclass
class _Socket:
    conn: int
    key: PathKey
    channel_id: str
    ws: aiohttp.ClientWebSocketResponse
    health: HealthMonitor
    opened_at: float
    close_reason: str = ""
    channel_gone: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # set to make the watcher check at once (a probe was asked for: its pong deadline is sooner)
    recheck: asyncio.Event = field(default_factory=asyncio.Event)
    # pings sent and pongs read: the server answers each ping in order, after what it sent before it
    pings: int = 0
    pongs: int = 0
    # the pongs that prove the socket drained (the answer to the closing client's ping); 0: no drain asked
    drained_at_pongs: int = 0

    @property
    def drained(self) -> bool:
        return 0 < self.drained_at_pongs <= self.pongs


@dataclass
class _Counters:  # events, duplicates and unknown-topic events are counted by the Intake
    gaps: int = 0
    gap_seconds: float = 0.0
    token_refreshes: int = 0
    malformed: int = 0


class NotificationClient:
    """A self-healing Genesys Cloud notification client. Use it as an async context manager::

        async with NotificationClient(region="mypurecloud.ie", client_id=cid, client_secret=secret) as client:
            await client.subscribe(["v2.users.<id>.presence"])
            async for item in client:        # Event or Gap, in arrival order
                ...

    ``region`` is an enum name (``eu_west_1``) or a domain/host (``mypurecloud.ie``); ``base_url`` overrides
    it (the simulator, a proxy). ``extra_credentials`` adds OAuth clients: every shard is then served by one
    channel per client (a *path*), merged through one de-duplication point, so one dying socket loses nothing.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | Secret,
        region: str | None = None,
        base_url: str | None = None,
        options: ClientOptions | None = None,
        extra_credentials: Iterable[tuple[str, str | Secret]] = (),
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if (region is None) == (base_url is None):
            raise GenesysUsageError("give exactly one of region= (e.g. 'mypurecloud.ie') or base_url=")
        self.hosts: RegionHosts = hosts_for_base_url(base_url) if base_url else resolve_region(str(region))
        self.options = options or ClientOptions()
        self._creds: list[tuple[str, Secret]] = [
            (cid, s if isinstance(s, Secret) else Secret(s))
            for cid, s in [(client_id, client_secret), *extra_credentials]
        ]
        self._rng = rng or random.Random()
        o = self.options
        self.core = ClientCore(
            credentials=len(self._creds),
            channel_budget=o.channel_budget,
            rotation_headroom=o.rotation_headroom,
            max_topics_per_shard=o.max_topics_per_channel,
            combine_topics=o.combine_topics,
            timings=o.timings(),
            backoff_factory=lambda: Backoff(o.backoff, rng=self._rng),
            token_rotation_stagger=o.token_rotation_stagger,
        )
        self._own_session = session is None
        self._session = session
        self._tokens: list[TokenManager] = []
        self._apis: list[NotificationsApi] = []
        self._queue = _Buffer(o.queue_size)
        self._open_by_shard: dict[int, int] = {}
        self._canonical: dict[int, list[float]] = {}
        self._copies = CopyMatcher(o.dedup_window, o.dedup_max_entries)  # copies across sockets
        # the per-frame work of the readers: one de-duplication point for every socket
        self._intake = Intake(
            self.core.planner.shard_of, DedupWindow(o.dedup_window, o.dedup_max_entries), self._copies
        )
        self._sockets: dict[int, _Socket] = {}
        # what a reader does with a frame that is not a new event of a subscribed topic (nor a duplicate);
        # each returns True when the frame says the channel is gone
        self._rare_frame: dict[Kind, Callable[[_Socket, Any], bool]] = {
            Kind.UNKNOWN_TOPIC: self._unknown_topic,
            Kind.OTHER: self._other_frame,
            Kind.MALFORMED: self._not_json,
        }
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        # how late the loop has run: a failed socket's gap starts that much before its last frame read
        self._lag = LagWindow(keep=max(_LAG_KEEP, 2 * o.heartbeat_timeout))
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._drain_progress = asyncio.Event()  # a socket answered the closing ping or stopped (see _drain)
        self._listeners: list[Callable[[LifecycleEvent], None]] = []
        self._handlers: list[tuple[str, Callable[[Event], Any]]] = []
        self._unhook: list[Callable[[], None]] = []
        self._n = _Counters()
        self._lifecycle_log = LifecycleLog()  # one log line per change of a path, retries at debug
        self._unknown_topics_said: set[str] = set()  # topics whose unsubscribed events were logged at info
        self._started = False
        self._closed = False
        self._fatal: BaseException | None = None

    # == lifecycle ======================================================================================
    async def __aenter__(self) -> NotificationClient:
        """:meth:`start` the client and return it; on failure everything started so far is closed."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """:meth:`aclose` the client, whatever ended the block (the exception, if any, propagates)."""
        await self.aclose()

    async def start(self) -> None:
        """Fetch the first token of every credential, within ``ClientOptions.start_timeout`` in all.

        Raises :class:`InvalidClientError` at once for a wrong secret (or region), and
        :class:`StartTimeoutError` (naming the token URL and the last failure) when no token came within
        ``start_timeout``: a wrong ``base_url`` or region, an unreachable host. Idempotent.
        """
        if self._started:
            return
        self._started = True
        if self._session is None:
            self._session = new_session()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.options.start_timeout
        try:
            for i, (cid, secret) in enumerate(self._creds):
                tm = TokenManager(self._session, self.hosts.token_url, cid, secret)
                self._tokens.append(tm)
                self._apis.append(NotificationsApi(self._session, self.hosts.api_base, tm))
                self._unhook.append(tm.on_token(functools.partial(self._on_token, i)))
                await tm.start()
                try:
                    await tm.get(max_wait=max(0.0, give_up_at - loop.time()))
                except TokenUnavailableError:
                    raise StartTimeoutError(
                        self.hosts.token_url, self.options.start_timeout, tm.last_failure
                    ) from None
        except BaseException:
            await self.aclose()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="gcbridge-ticker")
        self._spawn(self._measure_lag())

    async def aclose(self) -> None:
        """Close every socket and stop every task; the iterator ends after what was read. Idempotent.

        First every open socket is drained: pinged, and read until it answers (within ``pong_timeout``),
        so that the events the server sent before the close began reach the stream. What a socket that
        did not answer may have held is reported as a :class:`Gap` (from its last proven moment to when
        the close began), before the end of the stream."""
        if self._closed:
            return
        self._closed = True
        cancelled: asyncio.CancelledError | None = None
        if self._started:
            drained_at = self._now()
            try:
                await self._drain(drained_at)
            except asyncio.CancelledError as exc:
                # close all the same (no socket or task may outlive aclose), then let the cancellation go on
                cancelled = exc
            for sock in list(self._sockets.values()):  # the last word on what each socket delivered
                self._dispatch(self.core.evidence(sock.conn, sock.health.last_good))
            self._dispatch(self.core.shutdown(self._now(), drained_at))
        for sock in list(self._sockets.values()):
            await self._close_ws(sock)
        tasks = [t for t in self._tasks if not t.done()]
        if self._ticker is not None:
            tasks.append(self._ticker)
        for s in self._sockets.values():
            tasks += s.tasks
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sockets.clear()
        for unhook in self._unhook:
            unhook()
        for tm in self._tokens:
            await tm.aclose()
        if self._own_session and self._session is not None:
            await self._session.close()
        self._put_nowait(_END)
        self._changed.set()
        if cancelled is not None:
            raise cancelled

    # == topics =========================================================================================
    async def subscribe(self, topics: Iterable[str]) -> SubscribeResult:
        """Add topics (any number; combined ``prefix?a&b`` forms are expanded). Waits up to
        ``subscribe_timeout`` for them to be live; raises :class:`SubscriptionRejectedError` if every one of
        them was rejected, ``InvalidTopicError`` / ``TopicCapacityError`` (nothing changed) on bad input."""
        self._check_open()
        wanted = normalise_topics(topics)
        self._dispatch(self.core.subscribe(self._now(), wanted))
        await self._wait_live(wanted)
        rejected = {t: self.core.rejected[t] for t in wanted if t in self.core.rejected}
        pending = tuple(t for t in wanted if t not in rejected and not self._is_live(t))
        permitted = tuple(t for t in wanted if t not in rejected and t not in pending)
        if wanted and len(rejected) == len(wanted):
            raise SubscriptionRejectedError(rejected)
        return SubscribeResult(permitted, rejected, pending)

    async def unsubscribe(self, topics: Iterable[str]) -> None:
        """Remove topics; a shard left empty closes its channel."""
        self._check_open()
        self._dispatch(self.core.unsubscribe(self._now(), topics))

    @property
    def topics(self) -> frozenset[str]:
        return (
            frozenset().union(*self.core.planner.shards().values())
            if self.core.planner.shards()
            else frozenset()
        )

    # == observation ====================================================================================
    def on(self, pattern: str, handler: Callable[[Event], Any]) -> None:
        """Call ``handler(event)`` (sync or async) for events whose topic matches ``pattern`` (``*`` = one
        segment, final ``#`` = the rest) when the stream is consumed with :meth:`run`."""
        self._handlers.append((pattern, handler))

    def on_lifecycle(self, callback: Callable[[LifecycleEvent], None]) -> Callable[[], None]:
        """Call ``callback`` (synchronously; do not block) for every :class:`LifecycleEvent`; returns an
        unregister function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    async def run(self, on_gap: Callable[[Gap], Any] | None = None) -> None:
        """Consume the stream: :meth:`on` handlers get events, ``on_gap`` gets gaps, until closed."""
        async for item in self:
            if isinstance(item, Gap):
                if on_gap is not None:
                    result = on_gap(item)
                    if inspect.isawaitable(result):
                        await result
                continue
            for pattern, handler in self._handlers:
                if topic_matches(pattern, item.topic):
                    result = handler(item)
                    if inspect.isawaitable(result):
                        await result

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._iterate()

    def batches(self, max_size: int = 64) -> AsyncIterator[list[Item]]:
        """The same stream as ``async for item in client``, in lists (never empty, in arrival order): each
        holds what arrived since the previous one, at most ``max_size`` items. A natural unit for writing
        to a store; use one way of consuming per client, not both."""
        if max_size < 1:
            raise GenesysUsageError(f"max_size must be at least 1, not {max_size}")
        return self._iterate_batches(max_size)

    async def _iterate(self) -> AsyncIterator[Item]:
        queue = self._queue
        while True:
            item = await queue.get()
            if item is _END:
                self._end_of_stream()
                return
            yield item

    async def _iterate_batches(self, max_size: int) -> AsyncIterator[list[Item]]:
        queue = self._queue
        while True:
            if not queue.items:
                await queue.wait_for_items()
            batch = queue.take(max_size)
            if queue.ended:  # the end may be in this batch, or in a later one
                cut = next((i for i, item in enumerate(batch) if item is _END), -1)
                if cut >= 0:
                    if cut:
                        yield batch[:cut]
                    self._end_of_stream()
                    return
            yield batch

    def _end_of_stream(self) -> None:
        """The end marker was taken: leave it for any later iterator, and raise what stopped the client."""
        self._put_nowait(_END)
        if self._fatal is not None:
            raise self._fatal

    def stats(self) -> ClientStats:
        """A snapshot of the client now: every path's state and channel, counters of events, duplicates,
        gaps, reconnects and rotations by reason, token refreshes, rejected topics. Cheap; call it from the
        event loop's thread at any time, before :meth:`start` and after :meth:`aclose` too."""
        now_loop = self._now()
        core = self.core.snapshot()
        paths = []
        for p in core.paths:
            sock = self._sockets.get(p.conn) if p.conn is not None else None
            paths.append(
                PathStats(
                    path=f"{p.shard}/{p.credential}",
                    shard=p.shard,
                    credential=p.credential,
                    state=p.state,
                    channel_id=p.channel_id,
                    topics=p.topics,
                    connected_since=self._wall(p.live_since, now_loop) if p.live_since else None,
                    last_frame_at=self._wall(sock.health.last_frame, now_loop) if sock else None,
                    expires_at=self._wall(p.deadline, now_loop) if p.deadline is not None else None,
                )
            )
        n, intake = self._n, self._intake
        return ClientStats(
            paths=tuple(paths),
            topics=core.topics,
            events_received=intake.events,
            duplicates_dropped=intake.duplicates,
            gaps=n.gaps,
            gap_seconds=n.gap_seconds,
            reconnects_by_reason=core.reconnects_by_reason,
            rotations_by_reason=core.rotations_by_reason,
            token_refreshes=n.token_refreshes,
            channels_created=core.channels_created,
            rejected_topics=core.rejected,
            malformed_frames=n.malformed,
            unknown_topic_events=intake.unknown_topic,
            channels_held=core.channels_held,
            buffered=len(self._queue),
            loop_lag=self._lag.worst_since(now_loop - 60.0),
        )

    # == internals: the core loop =======================================================================
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @staticmethod
    def _wall(t: float, now_loop: float) -> float:
        return time.time() - (now_loop - t)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed")
        if not self._started:
            raise ClientNotStartedError(
                "start the client first: async with NotificationClient(...) as client"
            )

    def _feed(self, event: PathEvent) -> None:
        if self._closed and not isinstance(event, SocketClosed):
            return
        try:
            outs = self.core.handle(event)
        except Exception:  # a core bug must not kill the client; it is logged loudly
            log.exception(
                "notification core rejected an event (a bug: please report it)",
                gcb_event=type(event).__name__,
            )
            return
        self._dispatch(outs)

    def _dispatch(self, outs: list[Output]) -> None:
        for out in outs:
            if isinstance(out, Routed):
                self._execute(out.path, out.action)
            elif isinstance(out, GapFound):
                self._report_gap(out)
            elif isinstance(out, TopicsRejected):
                for topic, reason in out.rejected:
                    log.warning(
                        "topic rejected by Genesys; grant the OAuth client the permission it names, then "
                        "subscribe again",
                        topic=topic,
                        reason=reason,
                    )
                    self._lifecycle("subscription_rejected", reason=reason, detail=topic)
        self._wake.set()
        self._changed.set()

    def _execute(self, key: PathKey, action: Any) -> None:
        if isinstance(action, CreateChannel):
            self._spawn(self._create(key, action))
        elif isinstance(action, CheckChannel):
            self._spawn(self._check(key, action))
        elif isinstance(action, OpenSocket):
            self._spawn(self._open(key, action))
        elif isinstance(action, PutSubscriptions):
            self._spawn(self._put(key, action))
        elif isinstance(action, CloseSocket):
            sock = self._sockets.get(action.conn)
            if sock is not None:
                sock.close_reason = sock.close_reason or action.reason
                self._spawn(self._close_ws(sock))
        elif isinstance(action, ProbeSocket):
            sock = self._sockets.get(action.conn)
            if sock is not None and sock.health.probe(self._now()):
                self._spawn(self._send_ping(sock))
                sock.recheck.set()
        elif isinstance(action, InvalidateToken):
            tm = self._tokens[key[1]]
            cur = tm.current
            if cur is not None and cur.generation == action.generation:
                tm.invalidate(cur)
        elif isinstance(action, Notify):
            if action.kind == "subscription_rejected":
                return  # reported per topic by the supervisor
            self._log_notice(key, action)
            self._lifecycle(
                action.kind,
                channel_id=action.channel_id,
                shard=key[0],
                reason=action.reason,
                detail=action.detail,
            )

    def _log_notice(self, key: PathKey, notice: Notify) -> None:
        line = self._lifecycle_log.notice(
            f"{key[0]}/{key[1]}", notice.kind, self._now(), reason=notice.reason, detail=notice.detail
        )
        if line is not None:
            log.log(line.level, line.event, channel_id=notice.channel_id, **line.fields)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            wake = self.core.next_wakeup()
            self._wake.clear()
            timeout = None if wake is None else max(0.0, wake - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            now = loop.time()
            wake = self.core.next_wakeup()
            if wake is not None and wake <= now:
                try:
                    self._dispatch(self.core.tick(now))
                except Exception:  # a core bug must not stop every timer of the client
                    log.exception("notification core failed on a timer tick (a bug: please report it)")
                    await asyncio.sleep(1.0)

    async def _measure_lag(self) -> None:
        # a timer fires as late as the loop runs: that is how long a frame may have waited unread meanwhile
        loop = asyncio.get_running_loop()
        while not self._closed:
            due = loop.time() + _LAG_PROBE_INTERVAL
            await asyncio.sleep(_LAG_PROBE_INTERVAL)
            now = loop.time()
            self._lag.observe(now, now - due)

    def _on_token(self, credential: int, token: AccessToken) -> None:
        self._n.token_refreshes += 1
        self._lifecycle("token_refreshed", detail=f"credential {credential} generation {token.generation}")
        if self._started and not self._closed:
            try:
                self._dispatch(self.core.token_refreshed(self._now(), credential, token.generation))
            except Exception:
                log.exception("notification core failed on a token refresh (a bug: please report it)")

    # == internals: I/O =================================================================================
    async def _create(self, key: PathKey, action: CreateChannel) -> None:
        api, tm = self._apis[key[1]], self._tokens[key[1]]
        try:
            token = await tm.get()
            if token.expires_at < action.min_token_expiry:
                tm.invalidate(token)  # the channel must outlive the one it replaces: make a new token now
            info = await api.create_channel()
        except InvalidClientError as exc:
            self._go_fatal(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._feed(ChannelCreateFailed(self._now(), action.conn, _describe(exc), _retry_after(exc)))
            return
        now = self._now()
        ref = ChannelRef(
            id=info.id,
            connect_uri=info.connect_uri,
            created_at=now,
            expires_at=now + max(0.0, info.expires - time.time()),
            token_generation=info.token.generation,
            token_expires_at=info.token.expires_at,
        )
        self._feed(ChannelCreated(now, action.conn, ref))

    async def _check(self, key: PathKey, action: CheckChannel) -> None:
        try:
            exists = await self._apis[key[1]].channel_exists(action.channel_id)
        except InvalidClientError as exc:
            self._go_fatal(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._feed(ChannelCheckFailed(self._now(), action.conn, _describe(exc), _retry_after(exc)))
            return
        self._feed(ChannelChecked(self._now(), action.conn, exists))

    async def _open(self, key: PathKey, action: OpenSocket) -> None:
        o = self.options
        assert self._session is not None
        # a reused channel delivers as soon as its socket connects, maybe before the reader task runs: copies
        # from this socket are matched against what other sockets deliver from now on
        self._copies.joined(action.conn, self._now())
        try:
            ws = await open_socket(
                self._session,
                action.channel.connect_uri,
                connect_timeout=o.connect_timeout,
                close_timeout=o.close_timeout,
                max_size=o.max_message_size,
            )
        except SocketOpenError as exc:
            self._copies.left(action.conn)
            self._feed(SocketOpenFailed(self._now(), action.conn, str(exc), exc.channel_gone))
            return
        now = self._now()
        if self._closed:
            self._copies.left(action.conn)
            await ws.close()
            return
        health = HealthMonitor(
            now,
            heartbeat_timeout=o.heartbeat_timeout,
            ping_interval=o.ping_interval,
            pong_timeout=o.pong_timeout,
        )
        sock = _Socket(action.conn, key, action.channel.id, ws, health, now)
        self._sockets[action.conn] = sock
        self._feed(SocketOpened(now, action.conn))
        loop = asyncio.get_running_loop()
        sock.tasks = [
            loop.create_task(self._read(sock), name=f"gcbridge-read-{sock.channel_id}"),
            loop.create_task(self._watch(sock), name=f"gcbridge-watch-{sock.channel_id}"),
        ]

    async def _put(self, key: PathKey, action: PutSubscriptions) -> None:
        try:
            result = await self._apis[key[1]].put_subscriptions(action.channel_id, action.topics)
        except InvalidClientError as exc:
            self._go_fatal(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            gone = isinstance(exc, GenesysApiError) and exc.status == 404
            self._feed(
                SubscribeFailed(
                    self._now(), action.conn, action.version, _describe(exc), _retry_after(exc), gone
                )
            )
            return
        self._feed(Subscribed(self._now(), action.conn, action.version, tuple(result.rejected.items())))

    async def _close_ws(self, sock: _Socket) -> None:
        with contextlib.suppress(Exception):
            await sock.ws.close()

    async def _send_ping(self, sock: _Socket, *, drain: bool = False) -> None:
        # counted just before the frame is written (in the order of the wire), even if the send fails:
        # then no pong comes, as for a lost one
        sock.pings += 1
        if drain:
            sock.drained_at_pongs = sock.pings
        with contextlib.suppress(Exception):
            await sock.ws.send_str(PING_MESSAGE)

    async def _drain(self, drained_at: float) -> None:
        """Ping every open socket (now, ``drained_at``) and read until each answers or ``pong_timeout``
        passes. A pong read proves that everything the server sent before it saw the ping was read (frames
        arrive in order): the socket covered its shard until ``drained_at``. The readers are no longer held
        back by the buffer's bound, so a consumer that stopped consuming does not stall the close."""
        socks = [s for s in self._sockets.values() if not s.ws.closed]
        if not socks:
            return
        self._queue.unbound()
        try:
            await asyncio.gather(*(self._send_ping(s, drain=True) for s in socks))
            loop = asyncio.get_running_loop()
            give_up_at = loop.time() + self.options.pong_timeout
            while True:
                # a socket whose reader ended (closed, dropped) has nothing more to read
                waiting = [s for s in socks if not s.drained and s.conn in self._sockets]
                left = give_up_at - loop.time()
                if not waiting or left <= 0:
                    break
                self._drain_progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._drain_progress.wait()
        finally:  # cancelled too: what answered is proven, the rest ends in a gap
            for sock in socks:
                if sock.drained:
                    self._dispatch(self.core.evidence(sock.conn, drained_at))
                else:
                    log.debug("socket did not answer the closing ping in time", channel_id=sock.channel_id)

    async def _watch(self, sock: _Socket) -> None:
        loop = asyncio.get_running_loop()
        while not sock.ws.closed:
            decision = sock.health.check(loop.time())
            if decision.verdict is Verdict.OK or decision.verdict is Verdict.SEND_PING:
                # the evidence that decides the shard's gaps: this socket delivered until its last good moment
                self._dispatch(self.core.evidence(sock.conn, sock.health.last_good))
            if decision.verdict is Verdict.SEND_PING:
                await self._send_ping(sock)
            elif decision.verdict is not Verdict.OK:
                sock.close_reason = decision.verdict.value
                log.debug("socket silent: closing it", channel_id=sock.channel_id, reason=sock.close_reason)
                # a silent peer may not answer a close handshake either: stop the reader now (it reports
                # the socket closed and starts the close, which ``close_timeout`` bounds)
                sock.tasks[0].cancel()  # the reader (see _open)
                return
            sock.recheck.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, decision.next_check - loop.time())):
                    await sock.recheck.wait()

    async def _read(self, sock: _Socket) -> None:
        # The hot path: parse, de-duplicate and buffer every frame as it arrives (Intake.take); the rest
        # (the lifecycle's frames, bad frames) goes out to methods. Measured in bench/bench_receive.py.
        loop = asyncio.get_running_loop()
        ws, health, queue, intake = sock.ws, sock.health, self._queue, self._intake
        shard, channel_id, conn = sock.key[0], sock.channel_id, sock.conn
        open_by_shard = self._open_by_shard
        open_by_shard[shard] = open_by_shard.get(shard, 0) + 1
        # ``canonical[0]``: until when events on this shard may also arrive on another socket (a rotation's
        # overlap, other paths) and must be compared by their canonical key; shared by the shard's readers
        canonical = self._canonical.setdefault(shard, [0.0])
        canonical[0] = max(
            canonical[0], self.core.compare_copies_until(open_by_shard[shard], loop.time(), opened=True)
        )
        catch_up = CatchUp(loop)  # after back-pressure: when all that waited unread has been read
        reason = "closed"
        try:
            while True:
                if catch_up.open:
                    catch_up.before_receive()
                    msg = await ws.receive()
                    if catch_up.after_receive():
                        health.caught_up()
                else:
                    msg = await ws.receive()
                if msg.type not in _DATA:
                    reason = self._close_reason_of(sock, msg)
                    break
                now = loop.time()
                health.frame(now)
                kind, payload = intake.take(msg.data, now, time.time(), channel_id, conn, now < canonical[0])
                if kind is Kind.EVENT:
                    queue.put(payload)
                elif kind is not Kind.DUPLICATE and self._rare_frame[kind](sock, payload):
                    reason = "channel_gone"
                    break
                if queue.full():
                    # our consumer is slow; the server is not silent, but what it sends now waits unread
                    health.hold(now)
                    catch_up.held()
                    await queue.wait_for_space()
                    health.resume()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one bad frame or socket error kill the client
            reason = f"read_error:{type(exc).__name__}"
            log.debug("socket read failed", channel_id=channel_id, error=str(exc))
        finally:
            self._copies.left(sock.conn)
            open_by_shard[shard] -= 1
            if open_by_shard[shard] == 1:  # an overlap ended: the core says how long copies may still come
                canonical[0] = self.core.compare_copies_until(1, loop.time(), opened=False)
            self._sockets.pop(sock.conn, None)
            self._drain_progress.set()
            for t in sock.tasks:
                if t is not asyncio.current_task():
                    t.cancel()
            if not ws.closed:
                self._spawn(self._close_ws(sock))
            if not self._closed:
                self._feed(
                    SocketClosed(
                        loop.time(),
                        sock.conn,
                        sock.close_reason or reason,
                        health.last_good,
                        sock.channel_gone,
                        # a measurement after the last read tells how late that read was too
                        read_lag=self._lag.worst_since(health.last_good - _LAG_PROBE_INTERVAL),
                    )
                )

    def _unknown_topic(self, sock: _Socket, event: Event) -> bool:
        # Once per topic at info (a burst of them would be a burst of lines); the counter keeps the total.
        said = self._unknown_topics_said
        if event.topic in said or len(said) >= _UNKNOWN_TOPICS_SAID_MAX:
            log.debug("event for a topic not subscribed", topic=event.topic, channel_id=sock.channel_id)
        else:
            said.add(event.topic)
            log.info(
                "event for a topic not subscribed (delivered; further ones for this topic at debug)",
                topic=event.topic,
                channel_id=sock.channel_id,
            )
        self._queue.put(event)
        return False

    def _not_json(self, sock: _Socket, error: str) -> bool:
        self._malformed(sock.channel_id, sock.key[0], f"not JSON: {error}")
        return False

    def _other_frame(self, sock: _Socket, data: Any) -> bool:
        """Handle a frame that is not an event (rare); True when it says the channel is gone."""
        kind = classify(data)
        if kind is Frame.PONG:
            sock.pongs += 1
            if sock.drained:
                self._drain_progress.set()
            sock.health.pong(sock.health.last_frame)
            self._dispatch(self.core.evidence(sock.conn, sock.health.last_good))  # answers a probe
        elif kind is Frame.SYSTEM:
            self._system(sock, data, sock.health.last_frame)
        elif kind is Frame.CHANNEL_GONE:
            sock.channel_gone = True
            log.debug("channel gone", channel_id=sock.channel_id, message=str(data.get("message")))
            return True
        elif kind is Frame.MALFORMED:
            self._malformed(sock.channel_id, sock.key[0], "not a notification object")
        return False

    def _close_reason_of(self, sock: _Socket, msg: aiohttp.WSMessage) -> str:
        if sock.close_reason:
            return sock.close_reason
        if msg.type is aiohttp.WSMsgType.ERROR:
            if isinstance(msg.data, aiohttp.WebSocketError) and msg.data.code == 1009:
                self._malformed(sock.channel_id, sock.key[0], "message larger than max_message_size")
                return "oversize_message"
            return "socket_error"
        code = sock.ws.close_code
        return f"closed_{code}" if code else "dropped"

    def _system(self, sock: _Socket, data: dict[str, Any], now: float) -> None:
        topic = str(data.get("topicName"))
        body = data.get("eventBody")
        kind = body.get("systemTopicType") if isinstance(body, dict) else None
        name = topic.removeprefix("v2.system.")
        notice = _NOTICES.get(name) or _NOTICES.get(str(kind))
        if notice is None:
            log.info("system message", topic=topic, channel_id=sock.channel_id)
            return
        # the lateness measured after this read is not known yet: the recent worst stands in for it
        lag = self._lag.worst_since(now - _LAG_NOTICE_LOOKBACK)
        self._feed(SystemNotice(now, sock.conn, notice, read_lag=lag))

    def _malformed(self, channel_id: str, shard: int, reason: str) -> None:
        self._n.malformed += 1
        log.warning(
            "malformed frame dropped (counted in stats().malformed_frames)",
            channel_id=channel_id,
            reason=reason,
        )
        self._lifecycle("dropped", channel_id=channel_id, shard=shard, reason=reason)

    def _report_gap(self, gap: GapFound) -> None:
        now_loop = self._now()
        item = Gap(
            self._wall(gap.start, now_loop),
            self._wall(gap.end, now_loop),
            gap.topics,
            gap.reason or "dropped",
        )
        self._n.gaps += 1
        self._n.gap_seconds += item.seconds
        # debug: the Gap item in the stream is the report; the program decides how to log it (the service's
        # gap journal writes one line), and the path's own 'lost its connection' line is already a warning
        log.debug(
            "gap in notifications: events in it may be missing (the Gap item in the stream has its interval)",
            shard=gap.shard,
            seconds=round(item.seconds, 3),
            reason=item.reason,
            topics=len(item.topics),
        )
        self._lifecycle("gap", shard=gap.shard, reason=item.reason, detail=f"{item.seconds:.3f}s")
        self._put_nowait(item)

    def _put_nowait(self, item: Any) -> None:
        self._queue.put(item)  # gaps and the end marker are never held back by the size bound
        if item is _END:
            self._queue.ended = True

    def _go_fatal(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("notification client cannot continue; the stream ends with this error", error=str(exc))
            self._lifecycle("fatal", reason=type(exc).__name__, detail=str(exc))
            self._put_nowait(_END)

    def _lifecycle(
        self, kind: str, *, channel_id: str = "", shard: int | None = None, reason: str = "", detail: str = ""
    ) -> None:
        if not self._listeners:
            return
        ev = LifecycleEvent(kind, time.time(), channel_id, shard, reason, detail)
        for cb in list(self._listeners):
            try:
                cb(ev)
            except Exception:
                log.exception(
                    "lifecycle callback failed; fix the callback given to on_lifecycle (it must not raise)"
                )

    def _is_live(self, topic: str) -> bool:
        shard = self.core.planner.shard_of(topic)
        return shard is not None and self.core.confirmed(shard, self.core.version_of(shard))

    async def _wait_live(self, topics: list[str]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.subscribe_timeout
        while not self._closed and self._fatal is None:
            if all(t in self.core.rejected or self._is_live(t) for t in topics):
                return
            left = deadline - loop.time()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()
        if self._fatal is not None:
            raise self._fatal


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _retry_after(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


__all__ = [
    "ClientClosedError",
    "ClientOptions",
    "ClientStats",
    "LifecycleEvent",
    "NotificationClient",
    "PathState",
    "PathStats",
    "SubscribeResult",
    "SubscriptionRejectedError",
]
