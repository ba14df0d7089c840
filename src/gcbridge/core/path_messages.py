"""What goes into and out of a :class:`~gcbridge.core.path.PathMachine`: settings, channel references,
states, the events it takes (each with ``now``) and the actions it returns. Plain frozen values, no logic
beyond small derived properties."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class PathTimings:
    """The timings a path decides with (seconds). :class:`gcbridge.genesys.ClientOptions` documents them."""

    rotation_lead: float = 3600.0
    rotation_lead_fraction: float = 0.1
    token_rotation_delay: float = 5.0
    drain_period: float = 2.0
    healthy_period: float = 60.0
    gap_margin: float = 0.5
    budget_retry: float = 1.0
    channel_dies_with_token: bool = True
    nls_limit: int = 3
    nls_window: float = 600.0

    def lead_for(self, lifetime: float) -> float:
        return min(self.rotation_lead, max(0.0, lifetime) * self.rotation_lead_fraction)


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A channel as the path sees it; times are in the machine's (monotonic) clock."""

    id: str
    connect_uri: str
    created_at: float
    expires_at: float
    token_generation: int = 0
    token_expires_at: float | None = None

    def deadline(self, dies_with_token: bool) -> float:
        if dies_with_token and self.token_expires_at is not None:
            return min(self.expires_at, self.token_expires_at)
        return self.expires_at


# ----------------------------------------------------------------------------------------------------
# States


class PathState(enum.Enum):
    IDLE = "idle"  # no topics yet
    CONNECTING = "connecting"  # current: creating or checking its channel, opening its socket
    SUBSCRIBING = "subscribing"  # current: socket open, PUT in flight
    LIVE = "live"
    ROTATING = "rotating"  # current live, a replacement is being built
    BACKOFF = "backoff"  # current failed; waiting to retry
    CLOSED = "closed"


class Role(enum.Enum):
    CURRENT = "current"
    PENDING = "pending"
    DRAINING = "draining"
    FAILED = "failed"  # failed attempt whose socket is still closing
    STALE = "stale"  # unknown or already discarded


class Phase(enum.Enum):
    CREATING = "creating"
    CHECKING = "checking"
    OPENING = "opening"
    SUBSCRIBING = "subscribing"
    LIVE = "live"
    CLOSING = "closing"


@dataclass(slots=True)
class Conn:
    id: int
    phase: Phase
    channel: ChannelRef | None = None
    holds_slot: bool = False
    socket_open: bool = False
    live_since: float | None = None
    acked_version: int = -1
    put_version: int | None = None  # version of the PUT in flight
    put_retry_at: float | None = None
    close_at: float | None = None
    lost_at: float | None = None  # a no_longer_subscribed arrived while a rotation was in progress
    # when the server announced ``socket_closing`` on this socket: it closes it after a grace, whatever
    # this connection's role was then (current, not yet live, or a rotation's replacement)
    closing_at: float | None = None


# ----------------------------------------------------------------------------------------------------
# Events (inputs)


@dataclass(frozen=True, slots=True)
class TopicsSet:
    now: float
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    now: float
    conn: int
    channel: ChannelRef


@dataclass(frozen=True, slots=True)
class ChannelCreateFailed:
    now: float
    conn: int
    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelChecked:
    now: float
    conn: int
    exists: bool


@dataclass(frozen=True, slots=True)
class ChannelCheckFailed:
    now: float
    conn: int
    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class SocketOpened:
    now: float
    conn: int


@dataclass(frozen=True, slots=True)
class SocketOpenFailed:
    now: float
    conn: int
    error: str
    channel_gone: bool = False


@dataclass(frozen=True, slots=True)
class Subscribed:
    now: float
    conn: int
    version: int
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SubscribeFailed:
    now: float
    conn: int
    version: int
    error: str
    retry_after: float | None = None
    channel_gone: bool = False


@dataclass(frozen=True, slots=True)
class SocketClosed:
    """A socket ended. ``last_frame_at``: its last good moment (the last frame read, or the start of a
    backlog). ``read_lag``: how late the event loop ran around then (the shell's measurement): a frame read
    at ``last_frame_at`` may have been sent that much earlier, so what an abrupt end lost (the frames still
    unread behind it) was sent from :attr:`read_through` on."""

    now: float
    conn: int
    reason: str
    last_frame_at: float
    channel_gone: bool = False
    read_lag: float = 0.0

    @property
    def read_through(self) -> float:
        """Up to when, in the server's sending time, everything on the socket is known to have been read."""
        return self.last_frame_at - self.read_lag


class Notice(enum.Enum):
    SOCKET_CLOSING = "socket_closing"
    NO_LONGER_SUBSCRIBED = "no_longer_subscribed"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 (a message kind, not a secret)


@dataclass(frozen=True, slots=True)
class SystemNotice:
    """A system message read at ``now``. ``read_lag``: how late the event loop has lately been running (the
    shell's measurement), so the notice may have been sent that much earlier (:attr:`sent_from`)."""

    now: float
    conn: int
    notice: Notice
    read_lag: float = 0.0

    @property
    def sent_from(self) -> float:
        """The earliest the notice may have been sent: where a loss it announces may begin."""
        return self.now - self.read_lag


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    now: float
    generation: int
    delay: float  # when to rotate onto the new token (the supervisor staggers paths)


@dataclass(frozen=True, slots=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True)
class Shutdown:
    now: float


PathEvent = (
    TopicsSet
    | ChannelCreated
    | ChannelCreateFailed
    | ChannelChecked
    | ChannelCheckFailed
    | SocketOpened
    | SocketOpenFailed
    | Subscribed
    | SubscribeFailed
    | SocketClosed
    | SystemNotice
    | TokenRefreshed
    | Tick
    | Shutdown
)

# ----------------------------------------------------------------------------------------------------
# Actions (outputs)


@dataclass(frozen=True, slots=True)
class CreateChannel:
    conn: int
    min_token_expiry: float  # the shell must use a token valid at least until then (refresh if needed)


@dataclass(frozen=True, slots=True)
class CheckChannel:
    conn: int
    channel_id: str


@dataclass(frozen=True, slots=True)
class OpenSocket:
    conn: int
    channel: ChannelRef


@dataclass(frozen=True, slots=True)
class PutSubscriptions:
    conn: int
    channel_id: str
    topics: tuple[str, ...]
    version: int


@dataclass(frozen=True, slots=True)
class CloseSocket:
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeSocket:
    """Check at once that this live socket still delivers: send a ping; no pong within ``pong_timeout`` means
    it is dead (asked for when a sibling path of the same shard failed, so a silent socket is found fast)."""

    conn: int


@dataclass(frozen=True, slots=True)
class InvalidateToken:
    generation: int


@dataclass(frozen=True, slots=True)
class PathDown:
    """The path stopped serving: connection ``conn`` last delivered at ``since`` (margin taken off)."""

    since: float
    reason: str
    conn: int = -1


@dataclass(frozen=True, slots=True)
class PathUp:
    """Connection ``conn`` serves the path from ``at`` (after a connect, a recovery or a rotation)."""

    at: float
    channel_id: str
    conn: int = -1


@dataclass(frozen=True, slots=True)
class Notify:
    """A lifecycle note for observers (kind as in :class:`gcbridge.genesys.LifecycleEvent`)."""

    kind: str
    reason: str = ""
    channel_id: str = ""
    detail: str = ""
    rejected: tuple[tuple[str, str], ...] = ()


PathAction = (
    CreateChannel
    | CheckChannel
    | OpenSocket
    | PutSubscriptions
    | CloseSocket
    | ProbeSocket
    | InvalidateToken
    | PathDown
    | PathUp
    | Notify
)
