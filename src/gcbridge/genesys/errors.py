"""Exceptions of :mod:`gcbridge.genesys`. None of them ever carries a token or a client secret.

Every one derives from :class:`GenesysError`, so ``except GenesysError`` catches any Genesys-side or usage
problem; usage problems (:class:`GenesysUsageError`) are also :class:`ValueError`.
"""

from __future__ import annotations

from gcbridge.core.errors import GenesysError, GenesysUsageError

__all__ = [
    "ClientClosedError",
    "ClientNotStartedError",
    "GenesysApiError",
    "GenesysAuthError",
    "GenesysError",
    "GenesysTransportError",
    "GenesysUsageError",
    "InvalidClientError",
    "StartTimeoutError",
    "SubscriptionRejectedError",
    "TokenManagerClosedError",
    "TokenUnavailableError",
]


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


class StartTimeoutError(GenesysError, TimeoutError):
    """:meth:`NotificationClient.start` got no token within ``ClientOptions.start_timeout``.

    Usually a wrong ``base_url`` or region, or a network that cannot reach the login host; the token endpoint
    may also be failing. ``url`` is the token URL tried, ``last_failure`` the last error seen ('' if none
    came back at all). Also a :class:`TimeoutError`.
    """

    def __init__(self, url: str, timeout: float, last_failure: str) -> None:
        self.url = url
        self.timeout = timeout
        self.last_failure = last_failure
        super().__init__(
            f"could not start: no token from {url} within {timeout:g} s (ClientOptions.start_timeout); "
            f"last failure: {last_failure or 'no answer'}. Check base_url or region, and that this machine "
            "can reach that host."
        )


class SubscriptionRejectedError(GenesysError):
    """Every topic given to :meth:`NotificationClient.subscribe` was rejected (missing permissions).

    ``rejected`` maps each topic to the reason Genesys gave."""

    def __init__(self, rejected: dict[str, str]) -> None:
        first = next(iter(rejected.items()))
        super().__init__(f"all {len(rejected)} topic(s) rejected, e.g. {first[0]!r}: {first[1]}")
        self.rejected = rejected


class ClientClosedError(GenesysError, RuntimeError):
    """The client was used after :meth:`NotificationClient.aclose` (or the end of its ``async with``)."""


class ClientNotStartedError(GenesysError, RuntimeError):
    """The client was used before :meth:`NotificationClient.start` (use ``async with``)."""
