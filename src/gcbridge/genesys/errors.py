"""Exceptions of :mod:`gcbridge.genesys`. None of them ever carries a token or a client secret."""

from __future__ import annotations

__all__ = [
    "GenesysApiError",
    "GenesysAuthError",
    "GenesysError",
    "GenesysTransportError",
    "InvalidClientError",
    "TokenManagerClosedError",
    "TokenUnavailableError",
]


class GenesysError(Exception):
    """Base class of every error raised by :mod:`gcbridge.genesys`."""


class GenesysAuthError(GenesysError):
    """Getting an OAuth token failed."""


class InvalidClientError(GenesysAuthError):
    """The token endpoint answered ``invalid_client``: the configuration is wrong, retrying cannot help.

    Fatal: the :class:`~gcbridge.genesys.auth.TokenManager` stops and every waiter gets this error.
    """

    def __init__(self, client_id: str, login_host: str, description: str, status: int) -> None:
        self.client_id = client_id
        self.login_host = login_host
        self.description = description
        self.status = status
        super().__init__(
            f"Genesys Cloud rejected OAuth client {client_id!r} at {login_host} "
            f"(HTTP {status}, invalid_client: {description or 'no description'}). "
            "Likely causes: a wrong client secret; a wrong region (the login host must be the org's "
            "region, e.g. login.mypurecloud.ie for eu_west_1); the OAuth client was deleted or is not a "
            "client-credentials client."
        )

    def __repr__(self) -> str:
        return (
            f"InvalidClientError(client_id={self.client_id!r}, login_host={self.login_host!r}, "
            f"description={self.description!r}, status={self.status})"
        )


class TokenUnavailableError(GenesysAuthError):
    """No token could be obtained within the caller's timeout (the endpoint keeps failing; we keep trying)."""


class TokenManagerClosedError(GenesysAuthError):
    """The token manager was closed."""


class GenesysApiError(GenesysError):
    """A Genesys Cloud API call failed with an HTTP error that retrying did not (or could not) fix.

    ``code`` and ``message`` come from the ErrorBody (``bad.credentials``, ``not.found``,
    ``missing.permissions``, ``too.many.requests``...); ``correlation_id`` is the ``ININ-Correlation-Id``
    (or ``Genesys-Correlation-Id``) header, which Genesys support asks for.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str | None,
        correlation_id: str | None,
        *,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.correlation_id = correlation_id
        self.method = method
        self.path = path
        where = f"{method} {path} " if method else ""
        super().__init__(
            f"{where}failed with HTTP {status} {code or ''}: {message or 'no message'}"
            f" (correlation id {correlation_id or 'none'})"
        )

    def __repr__(self) -> str:
        return (
            f"GenesysApiError(status={self.status}, code={self.code!r}, message={self.message!r}, "
            f"correlation_id={self.correlation_id!r}, method={self.method!r}, path={self.path!r})"
        )


class GenesysTransportError(GenesysError):
    """A Genesys Cloud API call could not be completed: connection errors or timeouts on every attempt."""
