"""The ``/oauth_token.do`` grants and bearer-token checks of an instance, with time passed in.

* ``password``: access **and** refresh token; while the current access token of that client and user is still
  valid the same one is returned ("Access requests made within the expiration time of the access token always
  return the current access token").
* ``refresh_token``: an access token only; the refresh token stays valid until its own expiry.
* ``client_credentials``: only when enabled (``glide.oauth.inbound.client.credential.grant_type.enabled``);
  no refresh token. Requests are attributed to the client's OAuth application user.

The OAuth client authenticates with ``client_id``/``client_secret`` in the form or in an HTTP Basic
``Authorization`` header (RFC 6749 §2.3.1, what requests-oauthlib and so pysnc send); an instance accepts
both.
Every failure is the same generic answer (``access_denied``), as on an instance.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

SCOPE: Final = "useraccount"


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    user: str
    client_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    expires_at: float
    refresh_token: str | None

    def body(self, now: float) -> dict[str, Any]:
        """The JSON an instance answers; ``expires_in`` is 1799 for a fresh 1800 s token."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "scope": SCOPE,
            "token_type": "Bearer",
            "expires_in": max(0, math.ceil(self.expires_at - now) - 1),
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """The ``(client id, secret)`` of an HTTP Basic ``Authorization`` header value, or ``None`` for another
    scheme or a malformed value."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _new_token() -> str:
    return secrets.token_urlsafe(64)


class TokenIssuer:
    def __init__(
        self,
        *,
        users: Mapping[str, str],
        clients: Mapping[str, str],
        client_credentials_enabled: bool,
        access_token_ttl: float,
        refresh_token_ttl: float,
        client_users: Mapping[str, str] | None = None,
        token_factory: Callable[[], str] = _new_token,
    ) -> None:
        self.users = users
        self.clients = clients
        self.client_credentials_enabled = client_credentials_enabled
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self._client_users = client_users or {}
        self._new_token = token_factory
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._current_access: dict[tuple[str, str], _Token] = {}
        self._current_refresh: dict[tuple[str, str], _Token] = {}

    def grant(
        self, form: Mapping[str, str], now: float, *, basic: tuple[str, str] | None = None
    ) -> TokenGrant | None:
        """The token answer for a token request, or ``None`` for the generic ``access_denied``.

        ``basic``: the client credentials of the request's HTTP Basic header (see :func:`basic_credentials`).
        """
        client_id = self._authenticated_client(form, basic)
        if client_id is None:
            return None
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            return self._password(client_id, form.get("username", ""), form.get("password", ""), now)
        if grant_type == "refresh_token":
            return self._refresh_grant(client_id, form.get("refresh_token", ""), now)
        if grant_type == "client_credentials" and self.client_credentials_enabled:
            access = self._access_for(client_id, self._client_users.get(client_id, client_id), now)
            return TokenGrant(access.value, access.expires_at, None)
        return None

    def _authenticated_client(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> str | None:
        form_client = form.get("client_id", "")
        if basic is None:
            return form_client if self._is_client(form_client, form.get("client_secret", "")) else None
        # RFC 6749 §2.3.1 form-encodes both parts before Basic encoding; most clients skip that step.
        header_client = next(
            (
                cid
                for cid, secret in (basic, (unquote_plus(basic[0]), unquote_plus(basic[1])))
                if self._is_client(cid, secret)
            ),
            None,
        )
        if header_client is None or form_client not in ("", header_client):
            return None
        if "client_secret" in form and not self._is_client(header_client, form["client_secret"]):
            return None
        return header_client

    def _is_client(self, client_id: str, secret: str) -> bool:
        expected = self.clients.get(client_id) if client_id else None
        return expected is not None and secrets.compare_digest(expected.encode(), secret.encode())

    def user_for(self, access_token: str, now: float) -> str | None:
        token = self._access.get(access_token)
        if token is None or token.expires_at <= now:
            return None
        return token.user

    def revoke_all(self) -> None:
        self._access.clear()
        self._refresh.clear()
        self._current_access.clear()
        self._current_refresh.clear()

    def forget_expired(self, now: float) -> None:
        """Drop expired tokens so that a months-long demo does not grow without bound."""
        for table in (self._access, self._refresh):
            for value in [v for v, t in table.items() if t.expires_at <= now]:
                del table[value]

    def _password(self, client_id: str, username: str, password: str, now: float) -> TokenGrant | None:
        expected = self.users.get(username)
        if expected is None or not secrets.compare_digest(expected, password):
            return None
        access = self._access_for(client_id, username, now)
        refresh = self._current_refresh.get((client_id, username))
        if refresh is None or refresh.expires_at <= now:
            refresh = _Token(self._new_token(), username, client_id, now + self.refresh_token_ttl)
            self._refresh[refresh.value] = refresh
            self._current_refresh[(client_id, username)] = refresh
        return TokenGrant(access.value, access.expires_at, refresh.value)

    def _refresh_grant(self, client_id: str, refresh_token: str, now: float) -> TokenGrant | None:
        refresh = self._refresh.get(refresh_token)
        if refresh is None or refresh.client_id != client_id or refresh.expires_at <= now:
            return None
        access = self._access_for(client_id, refresh.user, now)
        return TokenGrant(access.value, access.expires_at, None)

    def _access_for(self, client_id: str, user: str, now: float) -> _Token:
        current = self._current_access.get((client_id, user))
        if current is not None and current.expires_at > now and current.value in self._access:
            return current
        token = _Token(self._new_token(), user, client_id, now + self.access_token_ttl)
        self._access[token.value] = token
        self._current_access[(client_id, user)] = token
        return token
