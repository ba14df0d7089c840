"""Notification channels: creation with eviction, expiry, subscriptions, delivery targets (pure).

Times are loop seconds passed in by the caller; ``ttl`` is already scaled. Nothing here does I/O: the
methods return :class:`ChannelEnded` and :class:`TopicsTaken` actions that the asyncio shell carries out
on the sockets.
"""

from __future__ import annotations

import enum
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field

from gcbridge.secrets import Secret
from gcbridge.sim.genesys.subscriptions import Grant, RequestError

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_channel_id() -> str:
    """An id shaped like a real one: ``streaming-0-`` and 26 lower-case alphanumerics (spec 2.1)."""
    return "streaming-0-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


class EndReason(enum.Enum):
    EVICTED = "evicted"
    EXPIRED = "expired"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 (a reason, not a secret)
    TOKEN_REVOKED = "token_revoked"  # noqa: S105


@dataclass(frozen=True, slots=True)
class ChannelEnded:
    """The channel is gone; a socket connected to it must be told (see the shell's table) and closed."""

    channel_id: str
    reason: EndReason
    oauth_client: str = ""


@dataclass(frozen=True, slots=True)
class TopicsTaken:
    """Exclusive mode: a newer channel of the same OAuth client took ``topics`` from this channel."""

    channel_id: str
    topics: tuple[str, ...]
    by_channel: str


Action = ChannelEnded | TopicsTaken


@dataclass(slots=True)
class Channel:
    """A channel as the simulator sees it. ``created``/``expires``/``last_used`` are loop seconds."""

    id: str
    oauth_client: str
    token: Secret
    created: float
    expires: float
    last_used: float
    connected: bool = False
    subscriptions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def topics(self) -> list[str]:
        """Subscribed topic ids, as requested (combined topics stay combined)."""
        return list(self.subscriptions)

    @property
    def individual_topics(self) -> set[str]:
        return {t for individual in self.subscriptions.values() for t in individual}


class ChannelRegistry:
    """All channels of the simulated org."""

    def __init__(
        self, *, ttl: float, max_per_client: int = 20, max_topics: int = 1000, exclusive: bool = False
    ):
        self.ttl = ttl
        self.max_per_client = max_per_client
        self.max_topics = max_topics
        self.exclusive = exclusive
        self._channels: dict[str, Channel] = {}
        # topic -> ids of the channels holding it, in subscription order (a dict is an ordered set).
        self._by_topic: dict[str, dict[str, None]] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def create(
        self, client_id: str, token: Secret, now: float, channel_id: str | None = None
    ) -> tuple[Channel, list[Action]]:
        """Create a channel; a client at its limit first loses one channel (spec 2.3: unconnected first,
        then the oldest last used)."""
        actions: list[Action] = []
        own = self.of_client(client_id)
        while own and len(own) >= self.max_per_client:
            victim = min(own, key=lambda c: (c.connected, c.last_used, c.created))
            actions.append(self._end(victim.id, EndReason.EVICTED))
            own.remove(victim)
        channel = Channel(
            id=channel_id or new_channel_id(),
            oauth_client=client_id,
            token=token,
            created=now,
            expires=now + self.ttl,
            last_used=now,
        )
        self._channels[channel.id] = channel
        return channel, actions

    def expire(self, now: float, dead_tokens: Iterable[str] = ()) -> list[Action]:
        """End every channel past its expiry, and every channel created with one of ``dead_tokens``."""
        dead = set(dead_tokens)
        actions: list[Action] = []
        for channel in list(self._channels.values()):
            if channel.token.reveal() in dead:
                actions.append(self._end(channel.id, EndReason.TOKEN_EXPIRED))
            elif channel.expires <= now:
                actions.append(self._end(channel.id, EndReason.EXPIRED))
        return actions

    def end_for_token(self, token: str, reason: EndReason) -> list[Action]:
        return [self._end(c.id, reason) for c in list(self._channels.values()) if c.token.reveal() == token]

    def end(self, channel_id: str, reason: EndReason) -> list[Action]:
        return [self._end(channel_id, reason)] if channel_id in self._channels else []

    def next_expiry(self) -> float | None:
        return min((c.expires for c in self._channels.values()), default=None)

    # -- queries ---------------------------------------------------------------------------------------------
    def get(self, channel_id: str, now: float) -> Channel | None:
        """The channel if it exists and has not expired (expiry may not have been processed yet)."""
        channel = self._channels.get(channel_id)
        return channel if channel is not None and channel.expires > now else None

    def all(self) -> list[Channel]:
        return list(self._channels.values())

    def of_client(self, client_id: str) -> list[Channel]:
        return [c for c in self._channels.values() if c.oauth_client == client_id]

    def recipients(self, topic: str) -> list[Channel]:
        """Channels subscribed to the individual ``topic``, in the order they subscribed."""
        return [self._channels[cid] for cid in self._by_topic.get(topic, ())]

    def subscribed_topics(self) -> list[str]:
        return sorted(self._by_topic)

    # -- socket bookkeeping ----------------------------------------------------------------------------------
    def set_connected(self, channel_id: str, connected: bool, now: float) -> None:
        channel = self._channels.get(channel_id)
        if channel is not None:
            channel.connected = connected
            channel.last_used = now

    def touch(self, channel_id: str, now: float) -> None:
        channel = self._channels.get(channel_id)
        if channel is not None:
            channel.last_used = now

    # -- subscriptions ---------------------------------------------------------------------------------------
    def subscribe(self, channel_id: str, granted: Grant, now: float, *, replace: bool) -> list[Action]:
        """Add (with ``replace``: set) the granted topics; a successful subscribe extends the channel's life.

        Raises :class:`RequestError` 400 when the result would exceed ``max_topics``; nothing changes then.
        """
        channel = self._require(channel_id)
        merged = dict(granted.accepted) if replace else {**channel.subscriptions, **granted.accepted}
        if len(merged) > self.max_topics:
            raise RequestError(
                400,
                "bad.request",
                f"Channel would have {len(merged)} topics; the limit is {self.max_topics} topics per channel",
            )
        self._set_subscriptions(channel, merged)
        channel.expires = now + self.ttl
        channel.last_used = now
        return self._take_exclusive(channel, granted) if self.exclusive else []

    def unsubscribe(self, channel_id: str, topics: Iterable[str], now: float) -> None:
        channel = self._require(channel_id)
        drop = set(topics)
        self._set_subscriptions(channel, {k: v for k, v in channel.subscriptions.items() if k not in drop})
        channel.last_used = now

    def clear(self, channel_id: str, now: float) -> None:
        channel = self._require(channel_id)
        self._set_subscriptions(channel, {})
        channel.last_used = now

    # -- internals -------------------------------------------------------------------------------------------
    def _require(self, channel_id: str) -> Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise RequestError(404, "not.found", f"Channel {channel_id} not found")
        return channel

    def _set_subscriptions(self, channel: Channel, subscriptions: dict[str, tuple[str, ...]]) -> None:
        for topic in channel.individual_topics:
            holders = self._by_topic.get(topic)
            if holders is not None:
                holders.pop(channel.id, None)
                if not holders:
                    del self._by_topic[topic]
        channel.subscriptions = subscriptions
        for topic in channel.individual_topics:
            self._by_topic.setdefault(topic, {})[channel.id] = None

    def _take_exclusive(self, channel: Channel, granted: Grant) -> list[Action]:
        wanted = {t for individual in granted.accepted.values() for t in individual}
        actions: list[Action] = []
        for other in self.of_client(channel.oauth_client):
            if other.id == channel.id:
                continue
            taken = tuple(sorted(wanted & other.individual_topics))
            if not taken:
                continue
            remaining = {
                sub: kept
                for sub, individual in other.subscriptions.items()
                if (kept := tuple(t for t in individual if t not in wanted))
            }
            self._set_subscriptions(other, remaining)
            actions.append(TopicsTaken(other.id, taken, channel.id))
        return actions

    def _end(self, channel_id: str, reason: EndReason) -> ChannelEnded:
        channel = self._channels.pop(channel_id)
        # Unindex the topics but keep the channel's own record intact for inspection by tests.
        subscriptions = channel.subscriptions
        self._set_subscriptions(channel, {})
        channel.subscriptions = subscriptions
        return ChannelEnded(channel_id, reason, channel.oauth_client)
