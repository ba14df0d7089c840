"""Settings of the Genesys Cloud simulator, with the defaults that the spec documents or infers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gcbridge.sim.genesys.org import OrgSettings

#: ``request.bytes.max`` in the Genesys limits document (spec 1.5).
MAX_REQUEST_BYTES = 512_000


@dataclass(slots=True)
class SimConfig:
    """How the simulated Genesys Cloud org behaves.

    Every duration is in *simulated* seconds and is divided by ``time_scale`` before it is used, so that
    ``time_scale=3600`` runs a 24-hour channel lifetime in 24 real seconds. What the simulator reports to
    clients (``expires_in`` of a token, ``expires`` of a channel) is in real (scaled) time, so a client sees
    the short lifetimes and behaves as it would against the real service. Rate-limit windows (one minute)
    and the REST delay fault are real seconds and are not scaled.
    """

    token_ttl: float = 86399.0
    """Lifetime of an access token (``expires_in`` is ``token_ttl / time_scale``). Genesys: 300..172800 s."""
    channel_ttl: float = 86400.0
    """A channel expires this long after its creation or its last subscribe (spec 2.3)."""
    heartbeat_interval: float = 30.0
    """Interval of the ``WebSocket Heartbeat`` message on every connected socket (spec 2.4)."""
    time_scale: float = 1.0
    """Divides every duration above and the ``socket_closing`` grace (traffic rates stay real)."""
    channel_dies_with_token: bool = True
    """A channel is bound to the token that created it and dies with it (spec 2.3, strong inference)."""
    exclusive_topics: bool = False
    """Spec 2.3a: ``True`` makes the newest channel of an OAuth client win a topic; the older channel gets a
    ``no_longer_subscribed`` system message (reason ``another_channel_subscribed``)."""
    missing_channel_ws: Literal["404", "message"] = "404"
    """A WebSocket to an unknown or expired channel: ``"404"`` fails the upgrade with HTTP 404; ``"message"``
    accepts it, sends ``{"result":"404","message":...}`` and closes."""
    max_channels_per_client: int = 20
    max_topics_per_channel: int = 1000
    max_combined_topic_length: int = 200
    token_rate_limit_per_min: int | None = None
    """Token issuances per OAuth client per minute; ``None`` means unlimited (no public figure exists)."""
    api_rate_limit_per_min: int | None = 300
    """``client.credentials.token.rate.per.minute``: API requests per access token per minute."""
    invalid_client_status: int = 401
    max_frame_size: int = 16_384
    """Messages with a larger UTF-8 payload are sent as a text frame plus continuation frames."""
    send_buffer_limit: int = 64 * 1024 * 1024
    """A socket whose unsent output exceeds this is a slow consumer: further events to it are dropped and
    recorded as not sent (reason ``send_buffer_full``)."""
    client_id: str = "sim-client"
    client_secret: str = field(default="sim-secret", repr=False)
    organization_id: str = "5f2a8a2e-0000-4000-8000-5ea1c0ffee00"
    ledger_max: int = 500_000
    """Oldest ledger records are dropped beyond this many (a long demo must not grow without bound)."""
    seed: int | None = None
    """Seed of the event body generator (``None``: random)."""
    org: OrgSettings | None = None
    """A simulated org (users, queues, conversations) whose notifications and REST answers agree; ``None``
    (the default) keeps only the random traffic generator. See :mod:`gcbridge.sim.genesys.org`."""

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        for name in ("token_ttl", "channel_ttl", "heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_frame_size < 1:
            raise ValueError("max_frame_size must be >= 1")
        if self.missing_channel_ws not in ("404", "message"):
            raise ValueError("missing_channel_ws must be '404' or 'message'")

    def scaled(self, seconds: float) -> float:
        """Real seconds for a simulated duration."""
        return seconds / self.time_scale
