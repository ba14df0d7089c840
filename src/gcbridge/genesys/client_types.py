"""The public value types of :class:`~gcbridge.genesys.NotificationClient`: its options (every timing with its
default), lifecycle events, statistics snapshots, subscription results and errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.core.path import PathTimings
from gcbridge.genesys.errors import (  # re-exported here, where they were defined before
    ClientClosedError,
    GenesysUsageError,
    SubscriptionRejectedError,
)

__all__ = [
    "ClientClosedError",
    "ClientOptions",
    "ClientStats",
    "LifecycleEvent",
    "PathStats",
    "SubscribeResult",
    "SubscriptionRejectedError",
]


@dataclass(frozen=True)
class ClientOptions:
    """Every timing and limit of :class:`NotificationClient` (seconds unless stated).

    Health: a socket is declared dead after ``heartbeat_timeout`` (65) s without any frame (Genesys sends a
    heartbeat about every 30 s), or when a ``{"message":"ping"}`` sent after ``ping_interval`` (20) s of
    silence gets no pong within ``pong_timeout`` (10) s; so a stall is detected within 30 s by default.
    ``pong_timeout`` also bounds how long :meth:`NotificationClient.aclose` reads a socket until it answers
    its closing ping (a healthy socket answers within a round trip).

    Rotation: a channel is replaced (make-before-break) ``rotation_lead`` (3600) s before it would expire or
    its token would, but never earlier than ``rotation_lead_fraction`` (0.1) of its lifetime before (short
    lifetimes rotate proportionally later); ``token_rotation_delay`` (5) s after every token refresh, shard
    ``i`` waiting another ``i * token_rotation_stagger`` (2) s; the old socket stays open ``drain_period``
    (2) s after the new one is live so events already in flight on it are still read.

    Reconnection: ``backoff`` (0.25 s doubling to 60 s, full jitter) between attempts; its count resets only
    after a connection stayed live ``healthy_period`` (10) s (a server that accepts and drops at once never
    resets it, so it cannot cause a tight loop). A gap after a failure starts at the failed socket's last
    frame read, less ``gap_margin`` (0.5) s for events in flight when it died, less how late the event loop
    was running then (``ClientStats.loop_lag``: a starved loop leaves frames unread in the socket for as
    long), so that the back-fill interval covers everything the socket took with it.

    Limits: ``max_topics_per_channel`` (1000); ``channel_budget`` (15, of Genesys's 20 per OAuth client)
    channels held at once, ``rotation_headroom`` (3) of them kept free for rotation, so at most 12 shards
    (12,000 topics); ``combine_topics`` (True) sends ``v2.users.X?presence&routingStatus`` forms.

    Delivery: ``dedup_window`` (120) s / ``dedup_max_entries`` (100,000) keys; ``queue_size`` (10,000) items
    buffered for a slow consumer (then the reader waits: back-pressure, never a drop);
    ``max_message_size`` (16 MiB) per WebSocket message; ``subscribe_timeout`` (30) s that
    :meth:`NotificationClient.subscribe` waits for the subscriptions to be live; ``connect_timeout`` (15) s
    per handshake and ``close_timeout`` (2) s per close.

    Start: ``start_timeout`` (30) s is how long :meth:`NotificationClient.start` (``async with``) keeps
    trying to get the first token before it raises :class:`~gcbridge.genesys.errors.StartTimeoutError`
    naming the URL it tried and the last failure (a wrong ``base_url`` or region, an unreachable host). A
    wrong secret fails at once with ``InvalidClientError``. Outages after a successful start are retried
    without limit, as every reconnection is.
    """

    heartbeat_timeout: float = 65.0
    ping_interval: float = 20.0
    pong_timeout: float = 10.0
    rotation_lead: float = 3600.0
    rotation_lead_fraction: float = 0.1
    token_rotation_delay: float = 5.0
    token_rotation_stagger: float = 2.0
    drain_period: float = 2.0
    backoff: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(initial=0.25, factor=2.0, cap=60.0))
    healthy_period: float = 10.0
    gap_margin: float = 0.5
    max_topics_per_channel: int = 1000
    channel_budget: int = 15
    rotation_headroom: int = 3
    combine_topics: bool = True
    channel_dies_with_token: bool = True
    dedup_window: float = 120.0
    dedup_max_entries: int = 100_000
    queue_size: int = 10_000
    max_message_size: int = 16 * 1024 * 1024
    subscribe_timeout: float = 30.0
    connect_timeout: float = 15.0
    close_timeout: float = 2.0
    start_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_timeout",
            "ping_interval",
            "pong_timeout",
            "rotation_lead",
            "drain_period",
            "healthy_period",
            "dedup_window",
            "subscribe_timeout",
            "connect_timeout",
            "close_timeout",
            "start_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise GenesysUsageError(
                    f"ClientOptions.{name} must be a positive number of seconds, got {value!r}"
                )
        for name in ("token_rotation_delay", "token_rotation_stagger", "gap_margin"):
            if getattr(self, name) < 0:
                raise GenesysUsageError(f"ClientOptions.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.rotation_lead_fraction < 1:
            raise GenesysUsageError(
                f"ClientOptions.rotation_lead_fraction must be in (0, 1), got {self.rotation_lead_fraction!r}"
            )
        if not 2 <= self.channel_budget <= 20:
            raise GenesysUsageError(
                f"ClientOptions.channel_budget must be 2..20 (Genesys allows 20), got {self.channel_budget}"
            )
        if not 1 <= self.rotation_headroom < self.channel_budget:
            raise GenesysUsageError("ClientOptions.rotation_headroom must be >= 1 and below channel_budget")
        if not 1 <= self.max_topics_per_channel <= 1000:
            raise GenesysUsageError("ClientOptions.max_topics_per_channel must be 1..1000")
        if self.queue_size < 1 or self.dedup_max_entries < 1 or self.max_message_size < 1024:
            raise GenesysUsageError(
                "ClientOptions.queue_size and dedup_max_entries must be >= 1, max_message_size >= 1024"
            )

    def timings(self) -> PathTimings:
        """The options the pure path state machine needs (:class:`~gcbridge.core.path.PathTimings`)."""
        return PathTimings(
            rotation_lead=self.rotation_lead,
            rotation_lead_fraction=self.rotation_lead_fraction,
            token_rotation_delay=self.token_rotation_delay,
            drain_period=self.drain_period,
            healthy_period=self.healthy_period,
            gap_margin=self.gap_margin,
            channel_dies_with_token=self.channel_dies_with_token,
        )


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """Something that happened to the client's channels (for logs, metrics, status pages).

    ``kind``: connected, rotating, rotated, reconnecting, gap, fatal, token_refreshed, channel_created,
    subscription_rejected, dropped (malformed / oversize input). ``at`` is wall-clock UNIX seconds.
    """

    kind: str
    at: float
    channel_id: str = ""
    shard: int | None = None
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PathStats:
    """One path in :meth:`NotificationClient.stats`: a shard served by one OAuth client's channel and socket.
    Times are wall-clock UNIX seconds (None when not known yet)."""

    path: str  # "shard/credential"
    shard: int
    credential: int
    state: str
    channel_id: str
    topics: int
    connected_since: float | None
    last_frame_at: float | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of the client (wall-clock times).

    ``events_received``, ``duplicates_dropped``, ``unknown_topic_events`` and ``malformed_frames`` are
    counted as the socket readers take the frames; ``buffered`` is what has arrived and waits for the
    consumer (events and gaps). ``loop_lag``: the event loop's worst lateness over the last minute, in
    seconds (a few milliseconds when it keeps up); frames wait unread that long, and a failed socket's gap
    starts that much earlier (see ``ClientOptions.gap_margin``).
    """

    paths: tuple[PathStats, ...]
    topics: int
    events_received: int
    duplicates_dropped: int
    gaps: int
    gap_seconds: float
    reconnects_by_reason: dict[str, int]
    rotations_by_reason: dict[str, int]
    token_refreshes: int
    channels_created: int
    rejected_topics: dict[str, str]
    malformed_frames: int
    unknown_topic_events: int
    channels_held: int
    buffered: int = 0
    loop_lag: float = 0.0


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """``permitted``: topics live now; ``rejected``: topic -> reason (not retried; subscribe again to retry);
    ``pending``: accepted but not yet confirmed live within ``subscribe_timeout`` (they will be)."""

    permitted: tuple[str, ...]
    rejected: dict[str, str]
    pending: tuple[str, ...]
