"""``GenesysSim``: the simulator's public, in-process API and its asyncio shell.

One aiohttp application serves the REST API, the token endpoint, the notification WebSockets and the fault
controls (``/_sim/...``) on one port. Decisions are taken by :class:`~gcbridge.sim.genesys.core.SimCore` with
loop time as ``now``; this module owns the timers and the sockets and carries the decisions out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from gcbridge import _json
from gcbridge.sim.genesys import messages
from gcbridge.sim.genesys.bodies import BodyGenerator
from gcbridge.sim.genesys.channels import Action, Channel, ChannelEnded, EndReason, TopicsTaken
from gcbridge.sim.genesys.config import MAX_REQUEST_BYTES, SimConfig
from gcbridge.sim.genesys.connection import Connection, SocketState
from gcbridge.sim.genesys.control import add_control_routes
from gcbridge.sim.genesys.core import SimCore
from gcbridge.sim.genesys.ledger import Delivery, PublishedRecord
from gcbridge.sim.genesys.org_rest import add_org_routes
from gcbridge.sim.genesys.org_service import OrgService
from gcbridge.sim.genesys.rest import Faults, InjectedFailure, RestApi, error_response
from gcbridge.sim.genesys.subscriptions import Grant, RequestError, grant
from gcbridge.sim.genesys.tokens import TokenRecord
from gcbridge.sim.genesys.topics import TopicError, expand

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _EndNotice:
    """What a socket is told when its channel ends, and how it is closed."""

    system_topic: str | None
    system_topic_type: str | None
    reason: str | None
    message: str
    close_code: int


# How each way of ending a channel shows on its socket (spec 2.3, 2.4).
_END_NOTICES: dict[EndReason, _EndNotice] = {
    EndReason.EVICTED: _EndNotice(
        messages.NO_LONGER_SUBSCRIBED,
        "no_longer_subscribed",
        None,
        "Channel removed: the OAuth client created more channels than allowed",
        1000,
    ),
    EndReason.EXPIRED: _EndNotice(None, None, None, "channel expired", 1000),
    EndReason.TOKEN_EXPIRED: _EndNotice(None, None, None, "access token expired", 1000),
    EndReason.TOKEN_REVOKED: _EndNotice(
        messages.TOKEN_REVOKED,
        "token_revoked",
        "user_tokens_revoked",
        "The access token was revoked",
        1000,
    ),
}


@dataclass(frozen=True, slots=True)
class TokenIssued:
    """One successful ``/oauth/token`` issuance (``at`` is wall-clock)."""

    at: float
    client_id: str
    token_key: str


class GenesysSim:
    """A local Genesys Cloud org: OAuth, the Notification API and its WebSockets, with injectable faults.

    Create it, ``await start()``, point a client at :attr:`base_url` with :attr:`config`'s client id and
    secret, then drive it with :meth:`publish` / :meth:`start_traffic` and the fault methods, and check what
    happened in :attr:`ledger`. ``channel_id=None`` in a fault method means every connected socket.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.core = SimCore(self.config)
        self.faults = Faults()
        self.ledger: list[PublishedRecord] = []
        self.token_log: list[TokenIssued] = []
        self.sockets_kicked = 0
        """How often a WebSocket connected to a channel that already had one (which was then disconnected)."""
        self.base_url = ""
        self._bodies = BodyGenerator(self.config.seed)
        self._rng = random.Random(self.config.seed)
        self._connections: dict[str, Connection] = {}
        self._all_connections: set[Connection] = set()
        self._refuse_handshakes: list[int] = []
        self._seq = 0
        self._due_at = -math.inf
        self._duplicates = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._traffic: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self.org: OrgService | None = None
        """The simulated org world, when ``config.org`` is set (started with the simulator)."""
        if self.config.org is not None:
            self.org = OrgService(self.config.org, self.publish, self.now, self.config.org.time_scale)

    # == lifecycle ===========================================================================================
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port) and return the base URL, e.g. ``http://127.0.0.1:8765``."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        app = self.make_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = _bound_port(self._runner)
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.base_url = f"http://{shown_host}:{bound_port}"
        self._reaper = asyncio.get_running_loop().create_task(self._reap())
        if self.org is not None:
            self.org.start()
        return self.base_url

    def make_app(self) -> web.Application:
        """The aiohttp application (REST, token, WebSocket and control routes); :meth:`start` serves it."""
        rest = RestApi(self)
        app = web.Application(middlewares=[rest.middleware], client_max_size=MAX_REQUEST_BYTES)
        rest.add_routes(app)
        app.router.add_get("/channels/{channel_id}", self._websocket, allow_head=False)
        add_control_routes(app, self)
        if self.org is not None:
            add_org_routes(app, self.org)
        return app

    async def stop(self) -> None:
        """Close every socket (1001), stop the generator and timers, and stop serving."""
        await self.stop_traffic()
        if self.org is not None:
            await self.org.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for conn in list(self._all_connections):
            conn.close_soon(1001, "server shutting down")
        # Give clients a moment to answer the close frames, then cut whatever is left.
        for _ in range(100):
            if not self._all_connections:
                break
            await asyncio.sleep(0.01)
        for conn in list(self._all_connections):
            conn.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GenesysSim:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # == inspection ==========================================================================================
    def now(self) -> float:
        """Loop time: the clock of every lifetime in the simulator."""
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    @property
    def channels(self) -> list[Channel]:
        """Live channels (``id, oauth_client, token, created, expires, connected, topics, last_used``;
        times are loop seconds, see :meth:`now`)."""
        self.process_due()
        return self.core.channels.all()

    def channel(self, channel_id: str) -> Channel | None:
        self.process_due()
        return self.core.channels.get(channel_id, self.now())

    @property
    def token_requests(self) -> int:
        """Number of tokens issued by ``/oauth/token`` (details in :attr:`token_log`)."""
        return len(self.token_log)

    @property
    def connected_channel_ids(self) -> list[str]:
        return [cid for cid, c in self._connections.items() if c.is_open]

    def unsent_bytes(self) -> int:
        """Bytes written to the sockets that their transports still hold (a slow client has not taken them
        yet); the ledger counts them as sent already."""
        return sum(c.buffered() for c in self._connections.values())

    def deliveries_to(self, channel_id: str) -> list[PublishedRecord]:
        """Published records that were written to ``channel_id``'s socket."""
        return [r for r in self.ledger if channel_id in r.sent_to]

    # == configuration =======================================================================================
    def add_oauth_client(self, client_id: str, secret: str, token_ttl: float | None = None) -> None:
        """Register another OAuth client (own channel budget; for two-path redundancy tests)."""
        self.core.add_client(client_id, secret, token_ttl)

    def forbid_topic(self, pattern: str, missing_permissions: Sequence[str] = ()) -> None:
        """Deny every individual topic matching the fnmatch ``pattern`` (spec 2.2 permission model)."""
        self.core.permissions.forbid(pattern, tuple(missing_permissions))

    def allow_topic(self, pattern: str) -> None:
        self.core.permissions.allow(pattern)

    # == events ==============================================================================================
    def publish(self, topic: str, body: dict[str, Any] | None = None) -> int:
        """Publish one event on an individual ``topic`` to every channel subscribed to it; returns its
        sequence number. ``body=None`` generates a realistic body for the topic's family. The outcome per
        channel is in :attr:`ledger`."""
        if not _is_individual(topic):
            raise TopicError(f"publish needs an individual topic, not {topic!r}")
        self.process_due()
        self._seq += 1
        seq = self._seq
        correlation_id = messages.new_uuid()
        body = body if body is not None else self._bodies.body(topic)
        payload = _json.dumps(messages.event(topic, body, correlation_id, seq))
        record = PublishedRecord(seq, topic, time.time(), correlation_id, body)
        copies = 2 if self._duplicates > 0 else 1
        self._duplicates = max(0, self._duplicates - 1)
        for channel in self.core.channels.recipients(topic):
            conn = self._connections.get(channel.id)
            reason = "not_connected"
            for _ in range(copies):
                reason = conn.send_payload(payload) if conn is not None else "not_connected"
            sent = reason == "sent"
            record.deliveries.append(Delivery(channel.id, sent, reason, copies if sent else 0))
        self.ledger.append(record)
        if len(self.ledger) > self.config.ledger_max:
            del self.ledger[: max(1, self.config.ledger_max // 10)]
        return seq

    async def publish_paced(
        self, topic: str, body: dict[str, Any] | None = None, high_water: int = 1 << 20
    ) -> int:
        """Like :meth:`publish`, but first waits while a socket has more than ``high_water`` bytes unsent
        (for throughput benchmarks that must not overrun a slow client)."""
        while any(c.buffered() > high_water for c in self._connections.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.001)  # the transport offers no public "drained" event to wait on
        return self.publish(topic, body)

    def start_traffic(self, rate_per_s: float, topics: Iterable[str] | None = None) -> None:
        """Publish realistic events at ``rate_per_s`` (real seconds) in the background, on random ``topics``
        or, if none are given, on whatever individual topics are subscribed at the time."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        chosen = None if topics is None else list(topics)
        for topic in chosen or ():
            expand(topic)
        if self._traffic is not None:
            self._traffic.cancel()
        self._traffic = asyncio.get_running_loop().create_task(self._generate(rate_per_s, chosen))

    async def stop_traffic(self) -> None:
        task, self._traffic = self._traffic, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _generate(self, rate: float, topics: list[str] | None) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        due = loop.time()
        while True:
            due += interval
            # Catch up after a stall of the loop, but never in an unbounded burst.
            due = max(due, loop.time() - 1.0)
            await asyncio.sleep(max(0.0, due - loop.time()))
            pool = topics if topics is not None else self.core.channels.subscribed_topics()
            if pool:
                try:
                    self.publish(self._rng.choice(pool))
                except Exception:
                    log.exception("traffic generator failed to publish")

    # == faults ==============================================================================================
    def _targets(self, channel_id: str | None) -> list[Connection]:
        if channel_id is None:
            live = (SocketState.OPEN, SocketState.STALLED)
            return [c for c in self._connections.values() if c.state in live]
        conn = self._connections.get(channel_id)
        return [conn] if conn is not None else []

    async def socket_closing(self, channel_id: str | None = None, grace: float = 60.0) -> list[str]:
        """Send ``v2.system.socket_closing`` and close the socket (1001) after ``grace`` simulated seconds."""
        targets = self._targets(channel_id)
        for conn in targets:
            channel = self.core.channels.get(conn.channel_id, self.now())
            conn.send(
                self._system(
                    messages.SOCKET_CLOSING,
                    conn.channel_id,
                    channel.oauth_client if channel else "",
                    "WebSocket is closing for maintenance: connect a new WebSocket within one minute",
                )
            )
            conn.close_later(self.config.scaled(grace), 1001, "maintenance")
        return [c.channel_id for c in targets]

    async def drop_socket(self, channel_id: str | None = None) -> list[str]:
        """Drop the TCP connection with no close frame (the client sees 1006)."""
        targets = self._targets(channel_id)
        for conn in targets:
            conn.abort()
        return [c.channel_id for c in targets]

    async def close_socket(self, code: int = 1001, channel_id: str | None = None) -> list[str]:
        """Close with ``code`` (1000, 1001 "idle timeout", 1011, ...). Returns at once: no event reaches the
        sockets after the call, and the close handshake completes in the background."""
        targets = self._targets(channel_id)
        reason = "idle timeout" if code == 1001 else "closed by simulator"
        for conn in targets:
            conn.close_soon(code, reason)
        return [c.channel_id for c in targets]

    def stall_socket(self, channel_id: str | None = None) -> list[str]:
        """Go silent but keep TCP open: no heartbeats, events (recorded as not sent), pongs or acks."""
        targets = self._targets(channel_id)
        for conn in targets:
            conn.stall()
        return [c.channel_id for c in targets]

    def resume_socket(self, channel_id: str | None = None) -> list[str]:
        """End a stall (what was not sent during it stays lost)."""
        targets = [c for c in self._connections.values() if channel_id in (None, c.channel_id)]
        for conn in targets:
            conn.resume()
        return [c.channel_id for c in targets]

    def expire_channel(self, channel_id: str) -> bool:
        """Expire the channel now (its socket is closed; HEAD answers 404). False if it did not exist."""
        actions = self.core.channels.end(channel_id, EndReason.EXPIRED)
        self._apply(actions)
        return bool(actions)

    def revoke_token(self, token: str | None = None) -> int:
        """Revoke ``token`` (``None``: every live token): its sockets get ``token_revoked``; its channels die
        (if ``channel_dies_with_token``). Returns the number of tokens revoked."""
        now = self.now()
        live = [r for r in self.core.tokens.live(now) if token is None or r.value.reveal() == token]
        if not self.config.channel_dies_with_token:
            for record in live:
                for channel in self.core.channels.all():
                    if channel.token == record.value:
                        notice = _END_NOTICES[EndReason.TOKEN_REVOKED]
                        self._notify_end(channel.id, channel.oauth_client, notice, close=False)
        self._apply(self.core.revoke(token, now))
        return len(live)

    def fail_next_rest(self, n: int = 1, status: int = 503, retry_after: float | None = None) -> None:
        """The next ``n`` ``/api/v2`` requests fail with ``status`` (ErrorBody, ``Retry-After`` if given)."""
        self.faults.api.extend(InjectedFailure(status, retry_after) for _ in range(n))

    def fail_next_token(self, n: int = 1, status: int = 503, retry_after: float | None = None) -> None:
        """The next ``n`` ``/oauth/token`` requests fail with ``status``."""
        self.faults.token.extend(InjectedFailure(status, retry_after) for _ in range(n))

    def duplicate_next(self, n: int = 1) -> None:
        """The next ``n`` published events are written twice to each socket (spec 6: duplicate delivery)."""
        self._duplicates += n

    def refuse_handshakes(self, n: int = 1, status: int = 503) -> None:
        """The next ``n`` WebSocket upgrades are answered with HTTP ``status`` instead."""
        self._refuse_handshakes.extend([status] * n)

    def set_rest_delay(self, seconds: float) -> None:
        """Delay every REST answer (``/api/v2`` and ``/oauth/token``) by ``seconds`` (real, not scaled)."""
        self.faults.rest_delay = max(0.0, seconds)

    def clear_faults(self) -> None:
        self.faults.api.clear()
        self.faults.token.clear()
        self.faults.rest_delay = 0.0
        self._refuse_handshakes.clear()

    # == called by the REST handlers =========================================================================
    def process_due(self) -> None:
        """Carry out every expiry due by now (a timer does it too; calling it first keeps answers exact)."""
        if self._loop is None:
            return
        now = self.now()
        if now < self._due_at:
            return
        self._apply(self.core.tick(now))
        deadline = self.core.next_deadline(now)
        self._due_at = math.inf if deadline is None else deadline

    def state_changed(self) -> None:
        """Lifetimes changed: recompute the next deadline (and wake the expiry timer)."""
        self._due_at = -math.inf
        self._wakeup.set()

    def token_issued(self, record: TokenRecord) -> None:
        self.token_log.append(TokenIssued(time.time(), record.client_id, record.key))
        self.state_changed()

    def create_channel(self, record: TokenRecord) -> Channel:
        channel, actions = self.core.channels.create(record.client_id, record.value, self.now())
        self._apply(actions)
        self.state_changed()
        return channel

    def subscribe(self, channel_id: str, granted: Grant, *, replace: bool) -> None:
        self._apply(self.core.channels.subscribe(channel_id, granted, self.now(), replace=replace))
        self.state_changed()

    # == actions =============================================================================================
    def _apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, ChannelEnded):
                self._notify_end(
                    action.channel_id, action.oauth_client, _END_NOTICES[action.reason], close=True
                )
            elif isinstance(action, TopicsTaken):
                channel = self.core.channels.get(action.channel_id, self.now())
                conn = self._connections.get(action.channel_id)
                if conn is not None:
                    conn.send(
                        self._system(
                            messages.NO_LONGER_SUBSCRIBED,
                            action.channel_id,
                            channel.oauth_client if channel else "",
                            "Another channel subscribed to these topics",
                            system_topic_type="no_longer_subscribed",
                            reason="another_channel_subscribed",
                            data={"topics": list(action.topics), "channelId": action.by_channel},
                        )
                    )

    def _notify_end(self, channel_id: str, oauth_client: str, notice: _EndNotice, *, close: bool) -> None:
        conn = self._connections.get(channel_id)
        if conn is None:
            return
        if notice.system_topic is not None:
            conn.send(
                self._system(
                    notice.system_topic,
                    channel_id,
                    oauth_client,
                    notice.message,
                    system_topic_type=notice.system_topic_type,
                    reason=notice.reason,
                )
            )
        if close:
            conn.close_soon(notice.close_code, notice.message)

    def _system(
        self, topic: str, channel_id: str, oauth_client: str, message: str, **kw: Any
    ) -> dict[str, Any]:
        return messages.system(
            topic,
            channel_id=channel_id,
            oauth_client_id=oauth_client,
            organization_id=self.config.organization_id,
            message=message,
            **kw,
        )

    async def _reap(self) -> None:
        """Process expiries when they fall due (loop-time timer, woken early when state changes)."""
        while True:
            self._wakeup.clear()
            self.process_due()
            deadline = self.core.next_deadline(self.now())
            timeout = 3600.0 if deadline is None else min(3600.0, max(0.0, deadline - self.now()) + 0.001)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    # == WebSocket ===========================================================================================
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_handshakes:
            status = self._refuse_handshakes.pop(0)
            return error_response(status, message="WebSocket handshake refused (simulator fault)")
        self.process_due()
        channel_id = request.match_info["channel_id"]
        channel = self.core.channels.get(channel_id, self.now())
        if channel is None and self.config.missing_channel_ws == "404":
            return error_response(404, "not.found", f"Channel {channel_id} not found")
        ws = web.WebSocketResponse(
            autoping=False, compress=False, max_msg_size=MAX_REQUEST_BYTES, timeout=5.0
        )
        if not ws.can_prepare(request).ok:
            return error_response(400, "bad.request", "Expected a WebSocket upgrade request")
        await ws.prepare(request)
        if channel is None:
            await ws.send_str(
                _json.dumps_str(messages.ws_result("404", "", message=f"Channel {channel_id} not found"))
            )
            await ws.close(code=1000, message=b"channel not found")
            return ws
        previous = self._connections.get(channel_id)
        if previous is not None:
            # Spec 2.3: "If you connect a second WebSocket with the same channel ID, the first disconnects."
            self.sockets_kicked += 1
            previous.send(
                self._system(
                    messages.NO_LONGER_SUBSCRIBED,
                    channel_id,
                    channel.oauth_client,
                    "Another WebSocket connected to this channel",
                    system_topic_type="no_longer_subscribed",
                )
            )
            previous.close_soon(1000, "another WebSocket connected to this channel")
        conn = Connection(
            channel_id,
            ws,
            request,
            max_frame_size=self.config.max_frame_size,
            send_buffer_limit=self.config.send_buffer_limit,
        )
        self._connections[channel_id] = conn
        self._all_connections.add(conn)
        self.core.channels.set_connected(channel_id, True, self.now())
        conn.start_heartbeats(self.config.scaled(self.config.heartbeat_interval))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        self._on_text(conn, msg.data)
                    except Exception:
                        # A bug here must cost one answer, not the socket or the simulator.
                        log.exception("simulator failed on a client message")
                        conn.send(messages.ws_result("500", "error", message="Internal simulator error"))
                elif msg.type is WSMsgType.PING:
                    if conn.is_open:
                        await ws.pong(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.send(messages.ws_result("400", "error", message="Binary messages are not supported"))
        finally:
            conn.finished()
            self._all_connections.discard(conn)
            if self._connections.get(channel_id) is conn:
                del self._connections[channel_id]
                self.core.channels.set_connected(channel_id, False, self.now())
        return ws

    def _on_text(self, conn: Connection, text: str) -> None:
        if not conn.is_open:
            return  # a stalled socket ignores everything
        try:
            data = _json.loads(text)
        except _json.JSONDecodeError:
            conn.send(messages.ws_result("400", "error", message="Message is not valid JSON"))
            return
        if not isinstance(data, dict):
            conn.send(messages.ws_result("400", "error", message="Message must be a JSON object"))
            return
        kind = data.get("message")
        if kind == "ping":
            conn.send(messages.PONG)
        elif kind in ("subscribe", "unsubscribe"):
            self._ws_subscription(conn, kind, data)
        else:
            conn.send(
                messages.ws_result(
                    "400",
                    "error",
                    correlation_id=_opt_str(data.get("correlationId")),
                    message=f"Unsupported message {kind!r}",
                )
            )

    def _ws_subscription(self, conn: Connection, kind: str, data: dict[str, Any]) -> None:
        correlation_id = _opt_str(data.get("correlationId"))
        topics = data.get("topics")
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            conn.send(
                messages.ws_result(
                    "400",
                    "error",
                    correlation_id=correlation_id,
                    topics=[],
                    message=f"Required data missing from {kind} request.",
                )
            )
            return
        now = self.now()
        if self.core.channels.get(conn.channel_id, now) is None:
            conn.send(
                messages.ws_result("404", "error", correlation_id=correlation_id, message="Channel not found")
            )
            return
        try:
            if kind == "unsubscribe":
                self.core.channels.unsubscribe(conn.channel_id, topics, now)
                status = "unsubscribed"
            else:
                granted = grant(
                    topics,
                    self.core.permissions,
                    ignore_errors=False,
                    max_combined_length=self.config.max_combined_topic_length,
                )
                self.subscribe(conn.channel_id, granted, replace=False)
                status = "subscribed"
        except RequestError as exc:
            conn.send(
                messages.ws_result(
                    str(exc.status),
                    "error",
                    correlation_id=correlation_id,
                    topics=[],
                    message=exc.message,
                )
            )
            return
        conn.send(messages.ws_result("200", status, correlation_id=correlation_id, topics=list(topics)))


@functools.lru_cache(maxsize=4096)
def _is_individual(topic: str) -> bool:
    try:
        return expand(topic) == (topic,)
    except TopicError:
        return False


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _bound_port(runner: web.AppRunner) -> int:
    """The port a ``port=0`` site bound, from the runner's public list of listening addresses."""
    addresses = runner.addresses
    if not addresses:
        raise RuntimeError("the simulator's listening socket is missing")
    return int(addresses[0][1])
