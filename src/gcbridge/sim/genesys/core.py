"""The simulated org's state in one place: OAuth clients, tokens, channels, permissions, rate limits (pure).

The asyncio shell (:mod:`gcbridge.sim.genesys.sim`) owns the clock: it passes loop time as ``now`` and carries
out the returned actions on the sockets.
"""

from __future__ import annotations

from gcbridge.sim.genesys.channels import Action, ChannelRegistry, EndReason
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.ratelimit import FixedWindowLimiter
from gcbridge.sim.genesys.tokens import TokenRegistry
from gcbridge.sim.genesys.topics import PermissionModel

#: Rate-limit windows are real minutes (not scaled): they protect the service, not a lifecycle.
RATE_WINDOW_SECONDS = 60.0


class SimCore:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.tokens = TokenRegistry(config.scaled(config.token_ttl))
        self.channels = ChannelRegistry(
            ttl=config.scaled(config.channel_ttl),
            max_per_client=config.max_channels_per_client,
            max_topics=config.max_topics_per_channel,
            exclusive=config.exclusive_topics,
        )
        self.permissions = PermissionModel()
        self.api_limiter = FixedWindowLimiter(config.api_rate_limit_per_min, RATE_WINDOW_SECONDS)
        self.token_limiter = FixedWindowLimiter(config.token_rate_limit_per_min, RATE_WINDOW_SECONDS)
        self.add_client(config.client_id, config.client_secret)

    def add_client(self, client_id: str, secret: str, token_ttl: float | None = None) -> None:
        """Register an OAuth client; ``token_ttl`` (simulated seconds) overrides the default lifetime."""
        ttl = None if token_ttl is None else self.config.scaled(token_ttl)
        self.tokens.add_client(client_id, secret, ttl)

    def tick(self, now: float) -> list[Action]:
        """Expire what is due at ``now``: channels past their lifetime and, if bound, those of dead tokens."""
        dead = [t.value.reveal() for t in self.tokens.newly_dead(now)]
        for token in dead:
            self.api_limiter.forget(token)  # a months-long run must not keep a window per token ever issued
        return self.channels.expire(now, dead if self.config.channel_dies_with_token else ())

    def revoke(self, token: str | None, now: float) -> list[Action]:
        """Revoke one token (``None``: all live tokens) and end the channels bound to it."""
        actions: list[Action] = []
        for record in self.tokens.revoke(token, now):
            self.api_limiter.forget(record.value.reveal())
            if self.config.channel_dies_with_token:
                actions += self.channels.end_for_token(record.value.reveal(), EndReason.TOKEN_REVOKED)
        return actions

    def next_deadline(self, now: float) -> float | None:
        """Loop time of the next expiry to process, if any."""
        candidates = [t for t in (self.tokens.next_expiry(now), self.channels.next_expiry()) if t is not None]
        return min(candidates) if candidates else None
