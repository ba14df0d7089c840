"""The lifecycle of one *path*: one OAuth client's channel and socket serving one shard of topics.

Pure: events (with ``now``) go in through :meth:`PathMachine.handle`, actions come out; the asyncio shell
(:mod:`gcbridge.genesys.client`) performs them and feeds the outcomes back. Nothing here sleeps or does I/O.

A path holds up to three kinds of connection attempt (:class:`Conn`), each with its own id so that a late
result of an abandoned attempt is recognised and ignored:

* ``current``: the connection that serves (or is being restored to serve) the shard;
* ``pending``: the replacement being built during a rotation (create channel -> open socket -> PUT);
* ``draining``: old connections kept open for ``drain_period`` after a rotation, so that events already in
  flight on them are still read (copies are removed by de-duplication), then closed.

Rotation is make-before-break: the replacement's socket is connected *before* it is subscribed, and the old
one is closed only after the replacement's subscription is live, so the switch is gap-free whether Genesys
delivers a topic to every channel subscribed to it or only to the newest one. An unplanned failure of the
current connection reports the path *down* (the shard's gap starts at its last delivered frame) and the path
retries with capped, jittered backoff, reusing the channel if it still exists (HEAD), else creating a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gcbridge.core.backoff import Backoff
from gcbridge.core.budget import ChannelBudget
from gcbridge.core.path_messages import (
    ChannelChecked,
    ChannelCheckFailed,
    ChannelCreated,
    ChannelCreateFailed,
    ChannelRef,
    CheckChannel,
    CloseSocket,
    Conn,
    CreateChannel,
    InvalidateToken,
    Notice,
    Notify,
    OpenSocket,
    PathAction,
    PathDown,
    PathEvent,
    PathState,
    PathTimings,
    PathUp,
    Phase,
    ProbeSocket,
    PutSubscriptions,
    Role,
    Shutdown,
    SocketClosed,
    SocketOpened,
    SocketOpenFailed,
    Subscribed,
    SubscribeFailed,
    SystemNotice,
    Tick,
    TokenRefreshed,
    TopicsSet,
)

#: The reason of a failure (and its gap) when the server closed a socket it had announced with
#: ``socket_closing`` before the path's replacement was live: the grace was too short for the rotation.
SOCKET_CLOSING_GRACE_EXCEEDED: Final = "socket_closing_grace_exceeded"


class IllegalTransition(RuntimeError):
    """An event the transition table does not allow in the current state (a bug, not a server fault)."""


# ----------------------------------------------------------------------------------------------------
# The machine

Handler = Callable[["PathMachine", "Conn", PathEvent], None]


@dataclass
class _Counters:
    reconnects: dict[str, int] = field(default_factory=dict)
    rotations: dict[str, int] = field(default_factory=dict)
    channels_created: int = 0


class PathMachine:
    """One path's lifecycle. ``new_conn_id`` hands out ids unique across the whole client."""

    def __init__(
        self,
        *,
        budget: ChannelBudget,
        backoff: Backoff,
        rotation_backoff: Backoff,
        timings: PathTimings,
        new_conn_id: Callable[[], int],
    ) -> None:
        self.budget = budget
        self.backoff = backoff
        self.rotation_backoff = rotation_backoff
        self.t = timings
        self._new_id = new_conn_id
        self.state = PathState.IDLE
        self.topics: tuple[str, ...] = ()
        self.version = 0
        self.current: Conn | None = None
        self.pending: Conn | None = None
        self.draining: list[Conn] = []
        self.failed: list[Conn] = []
        self.retry_at: float | None = None
        self.rotate_at: float | None = None
        self.rotate_reason = ""
        self.down_since: float | None = None
        self.down_reason = ""
        self.channel_gone = False  # the current channel is known to be gone: do not HEAD it again
        self.token_generation = 0
        self.nls_times: list[float] = []
        self.counters = _Counters()
        self._out: list[PathAction] = []

    # -- public ------------------------------------------------------------------------------------------
    def handle(self, event: PathEvent) -> list[PathAction]:
        self._out = []
        conn_id = getattr(event, "conn", None)
        if conn_id is None:
            handler = _STATE_TABLE.get((self.state, type(event)))
            if handler is None:
                raise IllegalTransition(f"{type(event).__name__} in state {self.state.value}")
            handler(self, _NO_CONN, event)
        else:
            role, conn = self._find(conn_id)
            handler = _CONN_TABLE.get((role, type(event)))
            if handler is None:
                raise IllegalTransition(f"{type(event).__name__} for a {role.value} connection")
            handler(self, conn, event)
        if self.state is not PathState.CLOSED:
            self._reconcile(event.now)
        return self._out

    def next_wakeup(self) -> float | None:
        times = [self.retry_at, self.rotate_at if self.state is PathState.LIVE else None]
        times += [c.close_at for c in self.draining]
        for c in (self.current, self.pending):
            if c is not None:
                times.append(c.put_retry_at)
        return min((t for t in times if t is not None), default=None)

    def conns(self) -> list[tuple[Role, Conn]]:
        out: list[tuple[Role, Conn]] = []
        if self.current is not None:
            out.append((Role.CURRENT, self.current))
        if self.pending is not None:
            out.append((Role.PENDING, self.pending))
        out += [(Role.DRAINING, c) for c in self.draining]
        out += [(Role.FAILED, c) for c in self.failed]
        return out

    @property
    def live_channel(self) -> ChannelRef | None:
        c = self.current
        return c.channel if c is not None and c.phase is Phase.LIVE else None

    # -- helpers -----------------------------------------------------------------------------------------
    def _find(self, conn_id: int) -> tuple[Role, Conn]:
        for role, conn in self.conns():
            if conn.id == conn_id:
                return role, conn
        return Role.STALE, _NO_CONN

    def _emit(self, action: PathAction) -> None:
        self._out.append(action)

    def _new_conn(self, phase: Phase) -> Conn:
        return Conn(self._new_id(), phase)

    def _discard(self, conn: Conn, reason: str) -> None:
        """Let go of a connection: close its socket if open (it then waits in ``failed``), free its slot."""
        if conn.socket_open or conn.phase is Phase.OPENING:
            # an open in flight is waited for (and then closed) so no socket outlives its path
            if conn.socket_open:
                self._emit(CloseSocket(conn.id, reason))
            conn.phase = Phase.CLOSING
            self.failed.append(conn)
        elif conn.holds_slot:
            conn.holds_slot = False
            self.budget.release()

    def _drop_slot(self, conn: Conn) -> None:
        if conn.holds_slot:
            conn.holds_slot = False
            self.budget.release()

    def _start_fresh(self, now: float) -> None:
        """Make a new current connection on a new channel (initial connect, or the old channel is gone)."""
        conn = self._new_conn(Phase.CREATING)
        if not self.budget.acquire():
            self._backoff_until(now + self.t.budget_retry)
            self._emit(Notify("reconnecting", "channel_budget_exhausted"))
            return
        conn.holds_slot = True
        self.current = conn
        self.state = PathState.CONNECTING
        self._emit(CreateChannel(conn.id, min_token_expiry=now))

    def _backoff_until(self, at: float) -> None:
        self.state = PathState.BACKOFF
        self.retry_at = at

    def _fail_current(
        self,
        now: float,
        reason: str,
        last_frame_at: float | None,
        retry_after: float | None,
        cause: str = "",
    ) -> None:
        """The current connection failed (before or after going live): report it and schedule a retry.
        ``cause`` (if any) leads the notice's detail: what the operator is to read about the failure."""
        lead_in = f"{cause}; " if cause else ""
        conn = self.current
        assert conn is not None
        was_live = conn.phase is Phase.LIVE
        if was_live and conn.live_since is not None:
            self.backoff.healthy_for(now - conn.live_since, self.t.healthy_period)
        if was_live and self.down_since is None:
            since = (last_frame_at if last_frame_at is not None else now) - self.t.gap_margin
            self.down_since = since
            self.down_reason = reason
            self._emit(PathDown(since, reason, conn.id))
        self.counters.reconnects[reason] = self.counters.reconnects.get(reason, 0) + 1
        keep = conn.channel if not self.channel_gone else None
        if self.pending is not None and self.pending.phase is not Phase.CREATING:
            # A rotation was already building a replacement: it becomes the recovery attempt.
            self._discard(conn, reason)
            self.current, self.pending = self.pending, None
            self.state = PathState.SUBSCRIBING if self.current.socket_open else PathState.CONNECTING
            self.channel_gone = False
            self._emit(
                Notify(
                    "reconnecting",
                    reason,
                    conn.channel.id if conn.channel else "",
                    f"{lead_in}via replacement",
                )
            )
            return
        if self.pending is not None:
            self._discard(self.pending, "rotation abandoned")
            self.pending = None
        # keep the slot with the channel (if it may be reused) by not releasing it in _discard
        if keep is not None:
            holds = conn.holds_slot
            conn.holds_slot = False
            self._discard(conn, reason)
            self.current = Conn(self._new_id(), Phase.CHECKING, channel=keep, holds_slot=holds)
        else:
            self._discard(conn, reason)
            self.current = None
        delay = self.backoff.next_delay(retry_after)
        self._backoff_until(now + delay)
        self._emit(Notify("reconnecting", reason, keep.id if keep else "", f"{lead_in}retry in {delay:.3f}s"))

    def _attempt(self, now: float) -> None:
        """Leave BACKOFF: reuse the old channel if it may still be alive and far from its deadline."""
        self.retry_at = None
        conn = self.current
        if conn is not None and conn.channel is not None:
            if any(c.channel is not None and c.channel.id == conn.channel.id for c in self.failed):
                self.retry_at = now + self.t.budget_retry  # never a second socket on our own channel
                return
            ch = conn.channel
            lead = self.t.lead_for(ch.deadline(self.t.channel_dies_with_token) - ch.created_at)
            if ch.deadline(self.t.channel_dies_with_token) - now > 2 * lead:
                conn.phase = Phase.CHECKING
                self.state = PathState.CONNECTING
                self._emit(CheckChannel(conn.id, ch.id))
                return
            self._drop_slot(conn)
            self.current = None
        self._start_fresh(now)

    def _go_live(self, conn: Conn, now: float) -> None:
        assert conn.channel is not None
        conn.phase = Phase.LIVE
        conn.live_since = now
        self.state = PathState.LIVE
        self.channel_gone = False
        ch = conn.channel
        deadline = ch.deadline(self.t.channel_dies_with_token)
        lead = self.t.lead_for(deadline - ch.created_at)
        # at least half of the remaining life: a short-lived replacement can never cause a rotation loop
        self.rotate_at = max(deadline - lead, now + (deadline - now) / 2)
        self.rotate_reason = "channel_expiry"
        if ch.token_generation < self.token_generation:
            self.rotate_at = min(self.rotate_at, now + self.t.token_rotation_delay)
            self.rotate_reason = "token_refresh"
        if conn.closing_at is not None:
            # socket_closing came before this socket served (it was a rotation's replacement, or still
            # subscribing): the server closes it when the grace ends, so replace it now, not at that close
            self.rotate_at = now
            self.rotate_reason = "socket_closing"
        self.down_since = None
        self._emit(PathUp(now, ch.id, conn.id))  # coverage needs every connection that serves
        self._emit(Notify("connected", channel_id=ch.id))

    def _start_rotation(self, now: float, reason: str) -> None:
        if self.pending is not None:
            return
        conn = self.current
        assert conn is not None
        assert conn.channel is not None
        if not self.budget.acquire():
            self.rotate_at = now + self.t.budget_retry
            self.rotate_reason = reason
            return
        pending = self._new_conn(Phase.CREATING)
        pending.holds_slot = True
        self.pending = pending
        self.state = PathState.ROTATING
        self.rotate_reason = reason
        self.rotate_at = None
        ch = conn.channel
        lead = self.t.lead_for(ch.deadline(self.t.channel_dies_with_token) - ch.created_at)
        self._emit(CreateChannel(pending.id, min_token_expiry=now + 2 * lead))
        self._emit(Notify("rotating", reason, ch.id))

    def _rotation_failed(self, now: float, error: str, retry_after: float | None) -> None:
        pending = self.pending
        assert pending is not None
        self.pending = None
        current = self.current
        assert current is not None
        delay = self.rotation_backoff.next_delay(retry_after)
        self.state = PathState.LIVE
        self.rotate_at = now + delay
        if current.lost_at is not None:
            # our own PUT already took the topics from the current channel: take them back, report the hole
            if self.down_since is None:
                self.down_since = current.lost_at - self.t.gap_margin
                self.down_reason = "rotation_failed"
                self._emit(PathDown(self.down_since, "rotation_failed", current.id))
            current.acked_version = -1
            current.lost_at = None
        self._discard(pending, "rotation failed")
        self._emit(Notify("rotating", "failed", pending.channel.id if pending.channel else "", error))

    def _finish_rotation(self, now: float) -> None:
        old, new = self.current, self.pending
        assert old is not None
        assert new is not None
        self.pending = None
        self.current = new
        self.rotation_backoff.reset()
        old.phase = Phase.CLOSING
        old.close_at = now + self.t.drain_period
        self.draining.append(old)
        reason = self.rotate_reason
        self.counters.rotations[reason] = self.counters.rotations.get(reason, 0) + 1
        self._go_live(new, now)
        took = f" {now - old.closing_at:.3f}s after socket_closing" if old.closing_at is not None else ""
        self._emit(
            Notify(
                "rotated",
                reason,
                new.channel.id if new.channel else "",
                f"from {old.channel.id if old.channel else ''}{took}",
            )
        )

    def _reconcile(self, now: float) -> None:
        """Bring every open connection's subscription up to the current topic version (one PUT at a time)."""
        for conn in (self.current, self.pending):
            if conn is None or conn.channel is None or not conn.socket_open:
                continue
            if conn is self.current and self.pending is not None:
                continue  # the replacement carries the new list; a PUT on the old channel could win it back
            if conn is self.pending and self.current is not None and self.current.put_version is not None:
                continue  # let the old channel's PUT land first, so that ours is the last word
            if conn.phase not in (Phase.SUBSCRIBING, Phase.LIVE) or conn.put_version is not None:
                continue
            if conn.acked_version >= self.version:
                continue
            if conn.put_retry_at is not None and conn.put_retry_at > now:
                continue
            conn.put_retry_at = None
            conn.put_version = self.version
            self._emit(PutSubscriptions(conn.id, conn.channel.id, self.topics, self.version))

    # -- handlers: state events ----------------------------------------------------------------------------
    def _on_topics(self, _c: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, TopicsSet)
        self.topics = ev.topics
        self.version += 1
        if self.state is PathState.IDLE and self.topics:
            self._start_fresh(ev.now)

    def _on_tick(self, _c: Conn, ev: PathEvent) -> None:
        now = ev.now
        for conn in self.draining:
            if conn.close_at is not None and conn.close_at <= now and conn.socket_open:
                conn.close_at = None
                self._emit(CloseSocket(conn.id, "rotated"))
        if self.state is PathState.BACKOFF and self.retry_at is not None and self.retry_at <= now:
            self._attempt(now)
        elif self.state is PathState.LIVE and self.rotate_at is not None and self.rotate_at <= now:
            self._start_rotation(now, self.rotate_reason or "channel_expiry")

    def _on_token(self, _c: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, TokenRefreshed)
        self.token_generation = max(self.token_generation, ev.generation)
        ch = self.live_channel
        if self.state is PathState.LIVE and ch is not None and ch.token_generation < ev.generation:
            at = ev.now + ev.delay
            if self.rotate_at is None or at < self.rotate_at:
                self.rotate_at = at
                self.rotate_reason = "token_refresh"

    def _on_token_ignored(self, _c: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, TokenRefreshed)
        self.token_generation = max(self.token_generation, ev.generation)

    def _on_shutdown(self, _c: Conn, ev: PathEvent) -> None:
        for role, conn in self.conns():
            if role is Role.FAILED:
                continue
            self._discard(conn, "client closing")
        self.current = self.pending = None
        self.draining = []
        self.retry_at = self.rotate_at = None
        self.state = PathState.CLOSED

    def _ignore(self, _c: Conn, _ev: PathEvent) -> None:
        return

    def _close_stale(self, conn: Conn, ev: PathEvent) -> None:
        # a socket finished opening for an attempt we already let go of: close it at once
        assert isinstance(ev, SocketOpened)
        conn.socket_open = True
        self._emit(CloseSocket(ev.conn, "abandoned"))

    # -- handlers: connection events -----------------------------------------------------------------------
    def _on_created(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, ChannelCreated)
        self.counters.channels_created += 1
        conn.channel = ev.channel
        conn.phase = Phase.OPENING
        self._emit(Notify("channel_created", channel_id=ev.channel.id))
        self._emit(OpenSocket(conn.id, ev.channel))

    def _on_create_failed_current(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, ChannelCreateFailed)
        self._drop_slot(conn)
        self.current = None
        delay = self.backoff.next_delay(ev.retry_after)
        self._backoff_until(ev.now + delay)
        self._emit(Notify("reconnecting", "create_failed", detail=ev.error))

    def _on_create_failed_pending(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, ChannelCreateFailed)
        self._rotation_failed(ev.now, ev.error, ev.retry_after)

    def _on_checked(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, ChannelChecked)
        if ev.exists and conn.channel is not None:
            conn.phase = Phase.OPENING
            self._emit(OpenSocket(conn.id, conn.channel))
            return
        self._drop_slot(conn)
        self.current = None
        self._start_fresh(ev.now)

    def _on_check_failed(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, ChannelCheckFailed)
        delay = self.backoff.next_delay(ev.retry_after)
        self._backoff_until(ev.now + delay)
        self._emit(Notify("reconnecting", "check_failed", detail=ev.error))

    def _on_opened(self, conn: Conn, ev: PathEvent) -> None:
        conn.socket_open = True
        conn.phase = Phase.SUBSCRIBING
        if conn is self.current:
            self.state = PathState.SUBSCRIBING

    def _on_open_failed_current(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SocketOpenFailed)
        conn.phase = Phase.CLOSING  # the open is over: nothing to wait for
        self.channel_gone = ev.channel_gone
        self._fail_current(ev.now, "connect_failed", None, None)

    def _on_open_failed_pending(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SocketOpenFailed)
        conn.phase = Phase.CLOSING
        self._rotation_failed(ev.now, ev.error, None)

    def _on_subscribed(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, Subscribed)
        if conn.put_version != ev.version:
            return
        conn.put_version = None
        conn.acked_version = ev.version
        if ev.rejected:
            self._emit(
                Notify(
                    "subscription_rejected",
                    channel_id=conn.channel.id if conn.channel else "",
                    rejected=ev.rejected,
                )
            )
        if conn is self.pending:
            self._finish_rotation(ev.now)
        elif conn.phase is Phase.SUBSCRIBING:
            self._go_live(conn, ev.now)
        elif self.down_since is not None and self.pending is None:
            assert conn.channel is not None
            self.down_since = None
            self._emit(PathUp(ev.now, conn.channel.id, conn.id))

    def _on_subscribe_failed(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SubscribeFailed)
        if conn.put_version != ev.version:
            return
        conn.put_version = None
        if conn is self.pending:
            self._rotation_failed(ev.now, ev.error, ev.retry_after)
        elif conn.phase is Phase.LIVE and not ev.channel_gone:
            conn.put_retry_at = ev.now + self.backoff.next_delay(ev.retry_after)
            self._emit(Notify("reconnecting", "subscribe_failed", detail=ev.error))
        else:
            self.channel_gone = ev.channel_gone
            self._fail_current(ev.now, "subscribe_failed", None, ev.retry_after)

    def _on_closed_current(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SocketClosed)
        conn.socket_open = False
        self.channel_gone = ev.channel_gone
        if conn.closing_at is None:
            self._fail_current(ev.now, ev.reason, ev.read_through, None)
            return
        # The server announced this close (socket_closing) and its grace ran out before a replacement served:
        # a real gap, named for what happened rather than for the close code.
        pending = self.pending
        where = pending.phase.value if pending is not None else "none in progress"
        cause = (
            f"the server closed the socket ({ev.reason}) {ev.now - conn.closing_at:.3f}s after "
            f"socket_closing, before its replacement was live (replacement: {where})"
        )
        # The server stopped sending at the grace's end, which our clock bounds only by the notice: the last
        # frame we read may have been read well after it was sent (a loaded bridge read a second late in the
        # soak, more than gap_margin), so a gap from it began after events were already withheld and lost
        # them unreported. The notice was sent a whole grace before the close: from there, at worst the gap
        # also claims what was delivered (the back-fill finds those rows already in the outbox). The notice
        # itself was read as late as the loop ran then.
        last = min(conn.closing_at, ev.last_frame_at) - ev.read_lag
        self._fail_current(ev.now, SOCKET_CLOSING_GRACE_EXCEEDED, last, None, cause)

    def _on_closed_pending(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SocketClosed)
        conn.socket_open = False
        self._rotation_failed(ev.now, ev.reason, None)

    def _on_closed_draining(self, conn: Conn, ev: PathEvent) -> None:
        conn.socket_open = False
        self.draining.remove(conn)
        self._drop_slot(conn)

    def _on_closed_failed(self, conn: Conn, ev: PathEvent) -> None:
        conn.socket_open = False
        self.failed.remove(conn)
        self._drop_slot(conn)

    def _on_notice_pending(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SystemNotice)
        if ev.notice is Notice.SOCKET_CLOSING and conn.closing_at is None:
            # the replacement itself will be closed: it still finishes this rotation (the old socket closes
            # too), then is replaced at once (_go_live); ignoring it lost the path at the grace's end
            conn.closing_at = ev.now

    def _on_notice_current(self, conn: Conn, ev: PathEvent) -> None:
        assert isinstance(ev, SystemNotice)
        now = ev.now
        if ev.notice is Notice.TOKEN_REVOKED:
            if conn.channel is not None:
                self._emit(InvalidateToken(conn.channel.token_generation))
            self.channel_gone = True
            if conn.socket_open:
                self._emit(CloseSocket(conn.id, "token_revoked"))
            return
        if ev.notice is Notice.SOCKET_CLOSING and conn.closing_at is None:
            conn.closing_at = now  # a socket not serving yet is replaced as soon as it serves (_go_live)
        if conn.phase is not Phase.LIVE:
            return  # not serving yet: the failure (if any) arrives as a close
        if self.pending is not None:
            if ev.notice is Notice.NO_LONGER_SUBSCRIBED:
                # expected: our replacement took the topics (exclusive semantics), when the notice was sent
                conn.lost_at = ev.sent_from
            return
        if ev.notice is Notice.SOCKET_CLOSING:
            self._start_rotation(now, "socket_closing")
            return
        # no_longer_subscribed with no rotation of ours in progress: someone else took the topics, so events
        # stop reaching us from when the notice was sent until our replacement is live; that is a gap
        if self.down_since is None:
            self.down_since = ev.sent_from - self.t.gap_margin
            self.down_reason = "no_longer_subscribed"
            self._emit(PathDown(self.down_since, "no_longer_subscribed", conn.id))
        self.nls_times = [t for t in self.nls_times if t > now - self.t.nls_window] + [now]
        excess = len(self.nls_times) - self.t.nls_limit
        if excess > 0:
            # another client keeps taking them: take them back ever more slowly instead of fighting
            self.rotate_at = now + self.rotation_backoff.policy.ceiling(excess + 2)
            self.rotate_reason = "no_longer_subscribed"
            self._emit(
                Notify(
                    "rotating",
                    "no_longer_subscribed",
                    conn.channel.id if conn.channel else "",
                    "repeated: backing off",
                )
            )
            return
        self._start_rotation(now, "no_longer_subscribed")


_NO_CONN = Conn(-1, Phase.CLOSING)

_S = PathState
# The transition tables, written out row by row: (state or role, event) -> handler. A pair that is not
# here raises IllegalTransition (a bug in the shell, not a server fault).

# Events for the path as a whole (no connection id), by the path's state.
_STATE_TABLE: Final[dict[tuple[PathState, type], Handler]] = {
    (_S.IDLE, TopicsSet): PathMachine._on_topics,
    (_S.IDLE, Tick): PathMachine._on_tick,
    (_S.IDLE, TokenRefreshed): PathMachine._on_token_ignored,
    (_S.IDLE, Shutdown): PathMachine._on_shutdown,
    (_S.CONNECTING, TopicsSet): PathMachine._on_topics,
    (_S.CONNECTING, Tick): PathMachine._on_tick,
    (_S.CONNECTING, TokenRefreshed): PathMachine._on_token_ignored,
    (_S.CONNECTING, Shutdown): PathMachine._on_shutdown,
    (_S.SUBSCRIBING, TopicsSet): PathMachine._on_topics,
    (_S.SUBSCRIBING, Tick): PathMachine._on_tick,
    (_S.SUBSCRIBING, TokenRefreshed): PathMachine._on_token_ignored,
    (_S.SUBSCRIBING, Shutdown): PathMachine._on_shutdown,
    (_S.LIVE, TopicsSet): PathMachine._on_topics,
    (_S.LIVE, Tick): PathMachine._on_tick,
    (_S.LIVE, TokenRefreshed): PathMachine._on_token,
    (_S.LIVE, Shutdown): PathMachine._on_shutdown,
    (_S.ROTATING, TopicsSet): PathMachine._on_topics,
    (_S.ROTATING, Tick): PathMachine._on_tick,
    (_S.ROTATING, TokenRefreshed): PathMachine._on_token_ignored,
    (_S.ROTATING, Shutdown): PathMachine._on_shutdown,
    (_S.BACKOFF, TopicsSet): PathMachine._on_topics,
    (_S.BACKOFF, Tick): PathMachine._on_tick,
    (_S.BACKOFF, TokenRefreshed): PathMachine._on_token_ignored,
    (_S.BACKOFF, Shutdown): PathMachine._on_shutdown,
    # closed: late calls while the client closes change nothing
    (_S.CLOSED, TopicsSet): PathMachine._ignore,
    (_S.CLOSED, Tick): PathMachine._ignore,
    (_S.CLOSED, TokenRefreshed): PathMachine._ignore,
    (_S.CLOSED, Shutdown): PathMachine._ignore,
}
_R = Role
# Events about one connection, by that connection's role in the path. A pending connection is always on a
# new channel, so it is never checked (HEAD). A stale connection (one already let go of) ignores everything;
# a failed or draining one only waits for its socket to close (a late open is closed at once).
_CONN_TABLE: Final[dict[tuple[Role, type], Handler]] = {
    (_R.CURRENT, ChannelCreated): PathMachine._on_created,
    (_R.CURRENT, ChannelCreateFailed): PathMachine._on_create_failed_current,
    (_R.CURRENT, ChannelChecked): PathMachine._on_checked,
    (_R.CURRENT, ChannelCheckFailed): PathMachine._on_check_failed,
    (_R.CURRENT, SocketOpened): PathMachine._on_opened,
    (_R.CURRENT, SocketOpenFailed): PathMachine._on_open_failed_current,
    (_R.CURRENT, Subscribed): PathMachine._on_subscribed,
    (_R.CURRENT, SubscribeFailed): PathMachine._on_subscribe_failed,
    (_R.CURRENT, SocketClosed): PathMachine._on_closed_current,
    (_R.CURRENT, SystemNotice): PathMachine._on_notice_current,
    (_R.PENDING, ChannelCreated): PathMachine._on_created,
    (_R.PENDING, ChannelCreateFailed): PathMachine._on_create_failed_pending,
    (_R.PENDING, SocketOpened): PathMachine._on_opened,
    (_R.PENDING, SocketOpenFailed): PathMachine._on_open_failed_pending,
    (_R.PENDING, Subscribed): PathMachine._on_subscribed,
    (_R.PENDING, SubscribeFailed): PathMachine._on_subscribe_failed,
    (_R.PENDING, SocketClosed): PathMachine._on_closed_pending,
    (_R.PENDING, SystemNotice): PathMachine._on_notice_pending,
    (_R.DRAINING, ChannelCreated): PathMachine._ignore,
    (_R.DRAINING, ChannelCreateFailed): PathMachine._ignore,
    (_R.DRAINING, ChannelChecked): PathMachine._ignore,
    (_R.DRAINING, ChannelCheckFailed): PathMachine._ignore,
    (_R.DRAINING, SocketOpened): PathMachine._ignore,
    (_R.DRAINING, SocketOpenFailed): PathMachine._ignore,
    (_R.DRAINING, Subscribed): PathMachine._ignore,
    (_R.DRAINING, SubscribeFailed): PathMachine._ignore,
    (_R.DRAINING, SocketClosed): PathMachine._on_closed_draining,
    (_R.DRAINING, SystemNotice): PathMachine._ignore,
    (_R.FAILED, ChannelCreated): PathMachine._ignore,
    (_R.FAILED, ChannelCreateFailed): PathMachine._ignore,
    (_R.FAILED, ChannelChecked): PathMachine._ignore,
    (_R.FAILED, ChannelCheckFailed): PathMachine._ignore,
    (_R.FAILED, SocketOpened): PathMachine._close_stale,
    (_R.FAILED, SocketOpenFailed): PathMachine._on_closed_failed,
    (_R.FAILED, Subscribed): PathMachine._ignore,
    (_R.FAILED, SubscribeFailed): PathMachine._ignore,
    (_R.FAILED, SocketClosed): PathMachine._on_closed_failed,
    (_R.FAILED, SystemNotice): PathMachine._ignore,
    (_R.STALE, ChannelCreated): PathMachine._ignore,
    (_R.STALE, ChannelCreateFailed): PathMachine._ignore,
    (_R.STALE, ChannelChecked): PathMachine._ignore,
    (_R.STALE, ChannelCheckFailed): PathMachine._ignore,
    (_R.STALE, SocketOpened): PathMachine._ignore,
    (_R.STALE, SocketOpenFailed): PathMachine._ignore,
    (_R.STALE, Subscribed): PathMachine._ignore,
    (_R.STALE, SubscribeFailed): PathMachine._ignore,
    (_R.STALE, SocketClosed): PathMachine._ignore,
    (_R.STALE, SystemNotice): PathMachine._ignore,
}

__all__ = [
    "SOCKET_CLOSING_GRACE_EXCEEDED",
    "ChannelCheckFailed",
    "ChannelChecked",
    "ChannelCreateFailed",
    "ChannelCreated",
    "ChannelRef",
    "CheckChannel",
    "CloseSocket",
    "Conn",
    "CreateChannel",
    "IllegalTransition",
    "InvalidateToken",
    "Notice",
    "Notify",
    "OpenSocket",
    "PathAction",
    "PathDown",
    "PathEvent",
    "PathMachine",
    "PathState",
    "PathTimings",
    "PathUp",
    "Phase",
    "ProbeSocket",
    "PutSubscriptions",
    "Role",
    "Shutdown",
    "SocketClosed",
    "SocketOpenFailed",
    "SocketOpened",
    "SubscribeFailed",
    "Subscribed",
    "SystemNotice",
    "Tick",
    "TokenRefreshed",
    "TopicsSet",
]
