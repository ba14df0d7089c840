"""OAuth clients and the access tokens they were issued (pure: the caller passes ``now``, loop seconds)."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from gcbridge.secrets import Secret


class AuthFailure(enum.Enum):
    """Why a client-credentials request was refused; the value is the spec 1.4 ``error_description``."""

    UNKNOWN_CLIENT = "client not found"
    BAD_SECRET = "authentication failed"  # noqa: S105 (an error text)


@dataclass(slots=True)
class OAuthClient:
    client_id: str
    secret: Secret
    token_ttl: float | None = None
    """Overrides the simulator-wide token lifetime (simulated seconds) for this client."""


@dataclass(slots=True)
class TokenRecord:
    """An issued access token. ``value`` is a :class:`Secret`; ``key`` is a short, loggable fingerprint."""

    value: Secret
    client_id: str
    issued: float
    expires: float
    revoked: bool = False

    @property
    def key(self) -> str:
        return "tok-" + self.value.reveal()[-6:]

    def alive(self, now: float) -> bool:
        return not self.revoked and now < self.expires


class TokenRegistry:
    """Issues, validates, revokes and expires tokens. ``ttl`` is in loop seconds (already scaled)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.clients: dict[str, OAuthClient] = {}
        self._tokens: dict[str, TokenRecord] = {}

    def add_client(self, client_id: str, secret: str, token_ttl: float | None = None) -> OAuthClient:
        client = OAuthClient(client_id, Secret(secret), token_ttl)
        self.clients[client_id] = client
        return client

    def authenticate(self, client_id: str, secret: str) -> AuthFailure | None:
        client = self.clients.get(client_id)
        if client is None:
            return AuthFailure.UNKNOWN_CLIENT
        if not secrets.compare_digest(client.secret.reveal().encode(), secret.encode()):
            return AuthFailure.BAD_SECRET
        return None

    def issue(self, client_id: str, now: float) -> TokenRecord:
        client = self.clients[client_id]
        ttl = client.token_ttl if client.token_ttl is not None else self.ttl
        value = Secret(secrets.token_urlsafe(48))
        record = TokenRecord(value=value, client_id=client_id, issued=now, expires=now + ttl)
        self._tokens[value.reveal()] = record
        return record

    def lookup(self, token: str) -> TokenRecord | None:
        return self._tokens.get(token)

    def validate(self, token: str, now: float) -> TokenRecord | None:
        """The live token record, or ``None`` for an unknown, expired or revoked token."""
        record = self._tokens.get(token)
        return record if record is not None and record.alive(now) else None

    def revoke(self, token: str | None, now: float) -> list[TokenRecord]:
        """Revoke one token (``None``: every live token); returns the records revoked now."""
        targets = self._tokens.values() if token is None else [r for r in [self._tokens.get(token)] if r]
        revoked = [r for r in targets if r.alive(now)]
        for record in revoked:
            record.revoked = True
            # The caller handles the revocation now; newly_dead() must not report it again.
            del self._tokens[record.value.reveal()]
        return revoked

    def newly_dead(self, now: float) -> list[TokenRecord]:
        """Tokens that expired or were revoked since the last call. Each is reported once and then forgotten
        (an unknown token is refused exactly like a dead one), so a months-long run does not pile them up."""
        dead = [r for r in self._tokens.values() if not r.alive(now)]
        for record in dead:
            del self._tokens[record.value.reveal()]
        return dead

    def next_expiry(self, now: float) -> float | None:
        pending = [r.expires for r in self._tokens.values() if r.alive(now)]
        return min(pending) if pending else None

    def live(self, now: float) -> list[TokenRecord]:
        return [r for r in self._tokens.values() if r.alive(now)]
