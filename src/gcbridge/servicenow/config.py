"""Configuration of the ServiceNow writer: instance, authentication, timeouts and the event mapping.

These pydantic v2 models are embedded in the service's TOML file (a ``[servicenow]`` table); secrets are
``SecretStr`` so that they never show in ``repr``, logs or validation errors. Example::

    [servicenow]
    instance_url = "https://acme.service-now.com"
    concurrency = 8

    [servicenow.auth]
    kind = "oauth"
    grant = "client_credentials"
    client_id = "3f2a..."
    client_secret = "..."          # or GCBRIDGE_SERVICENOW__AUTH__CLIENT_SECRET in the environment

    [[servicenow.mapping.rules]]
    name = "conversations"
    topics = ["v2.routing.queues.*.conversations"]
    sink = "import_set"
    target = "u_genesys_interaction_import"
    key = "{body.id}"
    key_field = "u_conversation_id"
    fields = { u_state = "{body.participants[?purpose=='customer'].calls[0].state}" }

The mapping is compiled when the model is validated, so a bad rule fails at start-up with a message naming
the rule and the field (see :mod:`gcbridge.servicenow.mapping` for the expression language).
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "BasicAuthConfig",
    "FieldSpec",
    "MappingConfig",
    "MappingRule",
    "OAuthConfig",
    "ServiceNowConfig",
    "TimeoutConfig",
]

SinkKind = Literal["import_set", "table", "event"]


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


class FieldSpec(_Model):
    """One target field: an expression (or a list of alternatives, first present wins) and how to finish it.

    * ``value``: a template (``"Genesys call {body.id}"``) or a path (``"$.body.participants[0].name"``);
      with a list, the first alternative that has a value wins.
    * ``map``: translate the value (``{connected = "work_in_progress"}``); a value not in the map counts as
      missing.
    * ``default``: used when the value is missing (or unmapped); without it the field is left out of the
      row, so an update never blanks a field that an earlier event set.
    * ``required``: a missing value rejects the event (dead-letter list, with the field named) instead.
    * ``max_length``: truncate longer values with the mapping's truncation marker.
    """

    value: str | list[str]
    map: dict[str, str] | None = None
    default: str | None = None
    required: bool = False
    max_length: int | None = Field(default=None, gt=0)


class MappingRule(_Model):
    """Events whose topic matches one of ``topics`` become one row for ``sink`` into ``target``.

    ``sink``: ``import_set`` (``target`` = staging table; ServiceNow's transform map coalesces on
    ``key_field``), ``table`` (``target`` = table; upsert on ``key_field``, default ``correlation_id``),
    ``event`` (Event Management ``em/jsonv2``; ``key`` becomes the ``message_key``).
    ``key`` is the expression for the record's identity (a conversation, user or queue id); it is also the
    outbox order key, so events of one key are delivered one at a time, in order.
    """

    name: str = Field(min_length=1)
    topics: list[str] = Field(min_length=1)
    sink: str
    target: str = ""
    key: str = ""
    key_field: str = ""
    fields: dict[str, str | list[str] | FieldSpec] = Field(default_factory=dict)
    on_transform_error: Literal["reject", "retry"] = "reject"


class MappingConfig(_Model):
    """The ordered rule list (first matching rule wins) and the row limits.

    ``rules`` defaults to :func:`gcbridge.servicenow.mapping.default_rules` (conversations, detail events,
    presence/routing status, queue observations into the ``u_genesys_*_import`` staging tables);
    ``include_defaults = true`` appends the defaults after your own rules.
    ``max_row_bytes``: ServiceNow skips Import Set rows above 8126 bytes; longer rows have their longest
    non-key fields truncated with ``truncation_marker`` until they fit (the key is never truncated; a row
    whose key fields alone do not fit is rejected with the reason).
    """

    rules: list[MappingRule] | None = None
    include_defaults: bool = False
    max_row_bytes: int = Field(default=8126, ge=256)
    truncation_marker: str = " [truncated]"

    @model_validator(mode="after")
    def _compiles(self) -> MappingConfig:
        from gcbridge.servicenow.mapping import compile_mapping

        compile_mapping(self)  # raises MappingError (a ValueError) naming the rule and the field
        return self


class ServiceNowConfig(_Model):
    """The ServiceNow writer: where, as whom, how fast, and what goes where.

    ``concurrency`` bounds the requests in flight (ServiceNow's inbound REST semaphore pool is small; 8 is
    a polite default). ``verify_tls`` should only be off for a lab instance.
    """

    instance_url: str
    auth: AuthConfig
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    concurrency: int = Field(default=8, ge=1, le=256)
    verify_tls: bool = True
    mapping: MappingConfig = Field(default_factory=MappingConfig)

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
