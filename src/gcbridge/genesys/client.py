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
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import orjson
import structlog

from gcbridge.core.backoff import Backoff
from gcbridge.core.dedup import CopyMatcher
from gcbridge.core.health import HealthMonitor, Verdict
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
from gcbridge.genesys._intake_py import take_shared
from gcbridge.genesys.auth import AccessToken, TokenManager
from gcbridge.genesys.client_types import (
    ClientClosedError,
    ClientOptions,
    ClientStats,
    LifecycleEvent,
    PathStats,
    SubscribeResult,
    SubscriptionRejectedError,
)
from gcbridge.genesys.errors import GenesysApiError, InvalidClientError
from gcbridge.genesys.events import Event, Gap, Item
from gcbridge.genesys.intake import (
    CLOSED,
    DUPLICATE,
    MALFORMED,
    OTHER,
    SHARED,
    TAKEN,
    UNKNOWN_TOPIC,
    DedupWindow,
    Intake,
    Stream,
)
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

log = structlog.get_logger("gcbridge.genesys.client")

try:  # how many bytes the kernel holds unread on a socket (POSIX); elsewhere only aiohttp's queue is seen
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
except ImportError:  # pragma: no cover - Windows
    _FIONREAD = None

_NOTICES = {
    "socket_closing": Notice.SOCKET_CLOSING,
    "no_longer_subscribed": Notice.NO_LONGER_SUBSCRIBED,
    "token_revoked": Notice.TOKEN_REVOKED,
}


_END = object()


def _clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time`` without the method call when it is the standard loop's (``time.monotonic``)."""
    return time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time


class _Buffer:
    """The items waiting for the consumer: a deque with one waiting getter and one waiting putter (cheaper per
    item than asyncio.Queue, which matters at 100k events/s)."""

    __slots__ = ("ended", "items", "limit", "putting", "waiting")

    def __init__(self, limit: int) -> None:
        self.items: deque[Any] = deque()
        self.limit = limit
        self.ended = False  # the end marker is in (or was taken from) ``items``
        # the getter's future while the consumer waits for items: a cell, read per event by compiled code
        self.waiting: list[asyncio.Future[None] | None] = [None]
        # the putter's future while a reader waits for space: a cell too
        self.putting: list[asyncio.Future[None] | None] = [None]

    def put(self, item: Any) -> None:
        self.items.append(item)
        if self.waiting[0] is not None:
            self.wake_getter()

    def wake_getter(self) -> None:
        waiting = self.waiting
        getter, waiting[0] = waiting[0], None
        if getter is not None and not getter.done():
            getter.set_result(None)

    def full(self) -> bool:
        return len(self.items) >= self.limit

    async def wait_for_space(self) -> None:
        while len(self.items) >= self.limit:
            putter = self.putting[0] = asyncio.get_running_loop().create_future()
            await putter

    async def wait_for_items(self) -> None:
        while not self.items:
            getter = self.waiting[0] = asyncio.get_running_loop().create_future()
            await getter

    async def get(self) -> Any:
        items = self.items
        if not items:
            await self.wait_for_items()
        item = items.popleft()
        self.taken()
        return item

    def taken(self) -> None:
        """Items were taken: let a waiting reader go on once half the room is free."""
        if self.putting[0] is not None and len(self.items) <= self.limit // 2:
            self._wake_putter()

    def _wake_putter(self) -> None:
        putting = self.putting
        putter, putting[0] = putting[0], None
        if putter is not None and not putter.done():
            putter.set_result(None)


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
            raise ValueError("give exactly one of region= (e.g. 'mypurecloud.ie') or base_url=")
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
        # the per-frame work of the readers; resends on one socket are caught by its DedupWindow
        self._intake = Intake(
            self._queue.items, self.core.planner.shard_index, DedupWindow(o.dedup_window, o.dedup_max_entries)
        )
        self._copies = CopyMatcher(o.dedup_window, o.dedup_max_entries)  # copies across sockets
        self._sockets: dict[int, _Socket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[LifecycleEvent], None]] = []
        self._handlers: list[tuple[str, Callable[[Event], Any]]] = []
        self._unhook: list[Callable[[], None]] = []
        self._n = _Counters()
        self._started = False
        self._closed = False
        self._fatal: BaseException | None = None

    # == lifecycle ======================================================================================
    async def __aenter__(self) -> NotificationClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Fetch the first token of every credential; :class:`InvalidClientError` on bad credentials."""
        if self._started:
            return
        self._started = True
        if self._session is None:
            self._session = new_session()
        try:
            for i, (cid, secret) in enumerate(self._creds):
                tm = TokenManager(self._session, self.hosts.token_url, cid, secret)
                self._tokens.append(tm)
                self._apis.append(NotificationsApi(self._session, self.hosts.api_base, tm))
                self._unhook.append(tm.on_token(functools.partial(self._on_token, i)))
                await tm.start()
                await tm.get()  # raises InvalidClientError at once for a wrong secret or region
        except BaseException:
            await self.aclose()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="gcbridge-ticker")

    async def aclose(self) -> None:
        """Close every socket and stop every task; the iterator ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            for sock in list(self._sockets.values()):  # the last word on what each socket delivered
                self._dispatch(self.core.evidence(sock.conn, sock.health.last_good))
            self._dispatch(self.core.shutdown(self._now()))
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
        return Stream(self._intake, self._queue, _END, self._next)

    def batches(self, max_size: int = 64) -> AsyncIterator[list[Item]]:
        """The same stream as ``async for item in client``, in lists (never empty, in arrival order): each
        holds what arrived since the previous one, at most ``max_size`` items. A natural unit for writing
        to a store; use one way of consuming per client, not both.

        Larger lists are not cheaper: frames are parsed as their list is made, and a list that stays in the
        CPU cache while it is used is the fastest (64 measured best; bench/README.md)."""
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        return self._iterate_batches(max_size)

    async def _iterate_batches(self, max_size: int) -> AsyncIterator[list[Item]]:
        queue, intake = self._queue, self._intake
        take_batch, problems, items = intake.take_batch, intake.problems, queue.items
        while True:
            if not items:
                await queue.wait_for_items()
            batch = take_batch(max_size)
            queue.taken()
            if problems:
                self._report_deferred()
            if not batch:  # every frame a resend or not an event
                continue
            if queue.ended:  # the end may be in this batch, or in a later one
                cut = next((i for i, item in enumerate(batch) if item is _END), -1)
                if cut >= 0:
                    if cut:
                        yield batch[:cut]
                    self._put_nowait(_END)
                    if self._fatal is not None:
                        raise self._fatal
                    return
            yield batch

    async def _next(self, item: Any) -> Item:
        """The stream's next item, for :class:`Stream`: ``item`` is one it took from the buffer already (a
        deferred frame finished, with problems to report; the end), or None."""
        queue, intake = self._queue, self._intake
        while True:
            if intake.problems:
                self._report_deferred()
            if item is None:
                item = await queue.get()
            if type(item) is str:  # a deferred event frame (see Intake): parsed here, where it is used
                item = intake.finish(item)
                continue
            if item is _END:
                self._put_nowait(_END)
                if self._fatal is not None:
                    raise self._fatal
                raise StopAsyncIteration
            return cast(Item, item)

    def stats(self) -> ClientStats:
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
            buffered=len(self._queue.items),
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
            raise RuntimeError("start the client first (async with NotificationClient(...) as client)")

    def _feed(self, event: PathEvent) -> None:
        if self._closed and not isinstance(event, SocketClosed):
            return
        try:
            outs = self.core.handle(event)
        except Exception:  # a core bug must not kill the client; it is logged loudly
            log.exception("notification core rejected an event", gcb_event=type(event).__name__)
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
                    log.warning("topic rejected by Genesys", topic=topic, reason=reason)
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
            self._lifecycle(
                action.kind,
                channel_id=action.channel_id,
                shard=key[0],
                reason=action.reason,
                detail=action.detail,
            )

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
                    log.exception("notification core failed on a timer tick")
                    await asyncio.sleep(1.0)

    def _on_token(self, credential: int, token: AccessToken) -> None:
        self._n.token_refreshes += 1
        self._lifecycle("token_refreshed", detail=f"credential {credential} generation {token.generation}")
        if self._started and not self._closed:
            try:
                self._dispatch(self.core.token_refreshed(self._now(), credential, token.generation))
            except Exception:
                log.exception("notification core failed on a token refresh")

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

    async def _send_ping(self, sock: _Socket) -> None:
        with contextlib.suppress(Exception):
            await sock.ws.send_str(PING_MESSAGE)

    async def _watch(self, sock: _Socket) -> None:
        loop = asyncio.get_running_loop()
        while not sock.ws.closed:
            decision = sock.health.check(loop.time())
            if decision.verdict is Verdict.OK or decision.verdict is Verdict.SEND_PING:
                # the evidence that decides the shard's gaps: this socket delivered until its last good moment
                self._dispatch(self.core.evidence(sock.conn, sock.health.last_good))
            if decision.verdict is Verdict.SEND_PING:
                with contextlib.suppress(Exception):
                    await sock.ws.send_str(PING_MESSAGE)
            elif decision.verdict is not Verdict.OK:
                sock.close_reason = decision.verdict.value
                log.warning("socket silent: closing it", channel_id=sock.channel_id, reason=sock.close_reason)
                # a silent peer will not answer a close handshake: cut the connection and wake the reader
                # (aiohttp has no public abort for a client WebSocket)
                sock.ws._response.close()
                sock.ws._reader.feed_eof()
                return
            sock.recheck.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, decision.next_check - loop.time())):
                    await sock.recheck.wait()

    async def _read(self, sock: _Socket) -> None:
        # The hot path. The common frame (one socket per shard) goes through the Intake's Reader (compiled
        # when built): an event frame is stamped and left, unparsed, for the consumer (Stream, batches()),
        # which parses, de-duplicates and builds the Event as it takes it; the reader parses everything else
        # (the lifecycle's frames). Everything rare goes out to a method. Measured in bench/bench_receive.py.
        loop = asyncio.get_running_loop()
        clock = _clock_of(loop)
        ws, health, queue = sock.ws, sock.health, self._queue
        receive, intake, copies = ws.receive, self._intake, self._copies
        self._copies.joined(sock.conn, clock())
        items, limit = queue.items, queue.limit
        shard, channel_id = sock.key[0], sock.channel_id
        open_by_shard = self._open_by_shard
        open_by_shard[shard] = open_by_shard.get(shard, 0) + 1
        # ``canonical[0]``: until when events on this shard may also arrive on another socket (a rotation's
        # overlap, other paths) and must be compared by their canonical key; shared by the shard's readers
        canonical = self._canonical.setdefault(shard, [0.0])
        until = self.core.compare_copies_until(open_by_shard[shard], clock(), opened=True)
        canonical[0] = max(canonical[0], until)
        reader = intake.reader(health, queue, canonical, channel_id, clock, shard)
        step = reader.step
        reason = "closed"
        # back-pressure leaves a backlog of unread frames: ``backlog`` while it may (see HealthMonitor.hold)
        backlog = settled = False
        unread = _unread_of(ws)  # aiohttp's queue of received, unread messages (a stand-in: never empty)
        try:
            while True:
                if backlog and not unread and _caught_up(ws):
                    # caught up twice, with a wait on the loop between (the receive after the first found
                    # nothing queued): a layer below aiohttp (TLS) has handed over what it still held too
                    if settled:
                        backlog = settled = False
                        health.caught_up()
                    else:
                        settled = True
                why = step(await receive())
                if why == TAKEN:
                    continue
                payload, now = reader.payload, reader.now
                if why == CLOSED:
                    reason = self._close_reason_of(sock, payload)
                    break
                if why == SHARED:
                    try:
                        why = take_shared(intake, copies, sock.conn, payload, now, channel_id)
                    except orjson.JSONDecodeError as exc:
                        why, payload = MALFORMED, exc
                    else:
                        payload = intake.other
                    if why == DUPLICATE:
                        continue
                if why == MALFORMED:
                    self._malformed(channel_id, shard, f"not JSON: {payload}")
                    continue
                if why == OTHER:
                    if self._other_frame(sock, payload):
                        reason = "channel_gone"
                        break
                    continue
                # an Event is in the buffer (FULL, UNKNOWN_TOPIC, or taken above)
                if why == UNKNOWN_TOPIC:
                    log.info("event for a topic not subscribed", topic=items[-1][0], channel_id=channel_id)
                if queue.waiting[0] is not None:
                    queue.wake_getter()
                if len(items) >= limit:
                    # our consumer is slow; the server is not silent, but what it sends now waits unread
                    health.hold(now)
                    backlog, settled = True, False
                    await queue.wait_for_space()
                    health.resume()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one bad frame or socket error kill the client
            reason = f"read_error:{type(exc).__name__}"
            log.warning("socket read failed", channel_id=channel_id, error=str(exc))
        finally:
            self._copies.left(sock.conn)
            open_by_shard[shard] -= 1
            if open_by_shard[shard] == 1:  # an overlap ended: the core says how long copies may still come
                canonical[0] = self.core.compare_copies_until(1, loop.time(), opened=False)
            self._sockets.pop(sock.conn, None)
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
                    )
                )

    def _other_frame(self, sock: _Socket, data: Any) -> bool:
        """Handle a frame that is not an event (rare); True when it says the channel is gone."""
        kind = classify(data)
        if kind is Frame.PONG:
            sock.health.pong(sock.health.last_frame)
            self._dispatch(self.core.evidence(sock.conn, sock.health.last_good))  # answers a probe
        elif kind is Frame.SYSTEM:
            self._system(sock, data, sock.health.last_frame)
        elif kind is Frame.CHANNEL_GONE:
            sock.channel_gone = True
            log.warning("channel gone", channel_id=sock.channel_id, message=str(data.get("message")))
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
        self._feed(SystemNotice(now, sock.conn, notice))

    def _malformed(self, channel_id: str, shard: int, reason: str) -> None:
        self._n.malformed += 1
        log.warning("malformed frame dropped", channel_id=channel_id, reason=reason)
        self._lifecycle("dropped", channel_id=channel_id, shard=shard, reason=reason)

    def _report_deferred(self) -> None:
        """What the consumer's parse of deferred frames found besides Events (rare)."""
        problems = self._intake.problems
        found, problems[:] = list(problems), []
        for channel_id, shard, status, payload in found:
            if status == MALFORMED:
                self._malformed(channel_id, shard, f"not JSON: {payload}")
            elif status == UNKNOWN_TOPIC:
                log.info("event for a topic not subscribed", topic=payload.topic, channel_id=channel_id)
            else:  # its first topicName named an event, its last something else: not a notification we know
                self._malformed(channel_id, shard, "topicName given twice")

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
        log.warning(
            "gap in notifications",
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
            log.error("notification client cannot continue", error=str(exc))
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
                log.exception("lifecycle callback failed")

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


def _unread_of(ws: Any) -> Any:
    reader = getattr(ws, "_reader", None)
    buffer = getattr(reader, "_buffer", None)
    return buffer if buffer is not None else (None,)


def _caught_up(ws: Any) -> bool:
    """Whether nothing the server sent waits unread: aiohttp holds no message and reads on, and the kernel
    holds no unread byte (where the OS says; on loopback the rest is in flight, which ``gap_margin`` covers).
    Called only while a backlog is open and aiohttp's queue is empty, so the system call is rare."""
    reader = getattr(ws, "_reader", None)
    if reader is None or reader.is_eof() or getattr(reader._protocol, "_reading_paused", True):
        return False
    if _FIONREAD is None:
        return True
    raw = ws.get_extra_info("socket")
    fd = raw.fileno() if raw is not None else -1
    if fd < 0:
        return False
    try:
        return int.from_bytes(fcntl.ioctl(fd, _FIONREAD, b"\0\0\0\0"), sys.byteorder) == 0
    except OSError:
        return False


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
