"""Configuration of the ServiceNow writer: instance, authentication and timeouts.

These pydantic v2 models are embedded in the service's TOML file (a ``[servicenow]`` table); secrets are
``SecretStr`` so that they never show in ``repr``, logs or validation errors. Example::

    [servicenow]
    instance_url = "https://acme.service-now.com"
    concurrency = 32

    [servicenow.auth]
    kind = "oauth"
    grant = "client_credentials"
    client_id = "3f2a..."
    client_secret = "..."          # or GCBRIDGE_SERVICENOW__AUTH__CLIENT_SECRET in the environment

The ``[servicenow.mapping]`` table of the service's file (which events become which rows) belongs to the
bridge: see :mod:`gcbridge.bridge.mapping`.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "BasicAuthConfig",
    "OAuthConfig",
    "ServiceNowConfig",
    "TimeoutConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuthConfig(_Model):
    """HTTP Basic authentication with a ServiceNow user (ideally a web-service-only integration user)."""

    kind: Literal["basic"] = "basic"
    username: str = Field(min_length=1)
    password: SecretStr


class OAuthConfig(_Model):
    """OAuth 2.0 at ``<instance>/oauth_token.do`` (form-encoded).

    ``grant = "client_credentials"`` needs the instance property
    ``glide.oauth.inbound.client.credential.grant_type.enabled=true`` and an OAuth application user;
    ``grant = "password"`` needs ``username``/``password`` as well and uses the refresh token it receives.
    """

    kind: Literal["oauth"] = "oauth"
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    grant: Literal["password", "client_credentials"] = "client_credentials"
    username: str | None = None
    password: SecretStr | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _password_grant_needs_user(self) -> OAuthConfig:
        if self.grant == "password" and (not self.username or self.password is None):
            raise ValueError("servicenow.auth: grant 'password' needs 'username' and 'password'")
        return self


AuthConfig = Annotated[BasicAuthConfig | OAuthConfig, Field(discriminator="kind")]


class TimeoutConfig(_Model):
    """Seconds. ``total`` (50 s) stays below the dispatcher's 60 s delivery timeout and ServiceNow's own 60 s
    REST transaction quota, so a slow instance is reported as our timeout (a retry), not a cancelled row."""

    connect: float = Field(default=10.0, gt=0)
    total: float = Field(default=50.0, gt=0)
    token: float = Field(default=30.0, gt=0)


class ServiceNowConfig(_Model):
    """The ServiceNow writer: where, as whom, how fast, and what goes where.

    ``concurrency`` bounds the requests in flight. Rows per second are at most ``concurrency`` divided by
    the instance's response time (32 at 50 ms: about 640 rows/s; 8 would cap at 160, below a busy org's
    500 events/s, see bench/README.md); 32 still fits within one node's inbound REST pool and its queue, so
    it does not provoke the pool's 429s. ``verify_tls`` should only be off for a lab instance.
    """

    instance_url: str
    auth: AuthConfig
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    concurrency: int = Field(default=32, ge=1, le=256)
    verify_tls: bool = True

    @field_validator("instance_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        # The URL is shown on /status and in logs: credentials in it would leak, and echoing them would too.
        if "@" in urlsplit(value).netloc:
            raise ValueError("must not carry credentials (user:password@host); put them in [servicenow.auth]")
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"servicenow.instance_url must start with https:// (got {value!r})")
        return value
