"""The service configuration: one TOML file, overridden by environment variables, validated at start-up.

Load it with :func:`load_config`. Every problem is reported at once, each naming its key and what is wrong::

    invalid configuration (gcbridge.toml):
      - genesys.region: unknown region 'eu-west-9'; valid: us_east_1, eu_west_1, ...
      - genesys.client_secret: missing; set GCBRIDGE_GENESYS__CLIENT_SECRET or genesys.client_secret_file

Environment variables override the file: ``GCBRIDGE_<SECTION>__<KEY>`` (for example
``GCBRIDGE_GENESYS__CLIENT_SECRET``, ``GCBRIDGE_ADMIN__PORT=9000``; lists as JSON). Secrets never need to sit
in the TOML: give them in the environment or as ``*_file`` keys pointing at a file (Docker/Kubernetes
secrets, systemd credentials), whose content (minus a trailing newline) is the secret.

Relative paths (outbox, gap journal, secret files) are relative to the directory of the config file.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gcbridge.bridge.router import ServiceNowSection
from gcbridge.core.backoff import BackoffPolicy
from gcbridge.genesys.client import ClientOptions
from gcbridge.genesys.regions import REGION_DOMAINS

ENV_PREFIX: Final = "GCBRIDGE_"
DEFAULT_ADMIN_PORT: Final = 9464

# Region enum names of the official SDKs -> API host (spec §1.1), from the client's own table.
REGIONS: Final[Mapping[str, str]] = {name: f"api.{domain}" for name, domain in REGION_DOMAINS.items()}

# Topics the client subscribes implicitly; listing them is a mistake worth pointing out.
_IMPLICIT_TOPIC = re.compile(r"^(channel\.metadata|v2\.system\..*)$")
_TOPIC = re.compile(r"^[A-Za-z0-9_.\-?&]+$")
_MAX_TOPIC_LENGTH: Final = 200


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` lists one ``key: what is wrong`` line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [f"invalid configuration ({self.source}):"]
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)


# Set while a file is being loaded, so that relative paths resolve against the file's directory.
_BASE_DIR: contextvars.ContextVar[Path] = contextvars.ContextVar("gcbridge_config_base_dir")
_FILE_DATA: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("gcbridge_config_file_data")


def _resolve(path: Path) -> Path:
    path = path.expanduser()
    if path.is_absolute():
        return path
    return _BASE_DIR.get(Path.cwd()) / path


def _read_secret_file(path: Path) -> SecretStr:
    resolved = _resolve(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file '{resolved}' does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read secret file '{resolved}': {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise ValueError(f"secret file '{resolved}' is empty")
    return SecretStr(value)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(_Section):
    """One OAuth client (client credentials grant). The secret comes from the environment or a file."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None

    @model_validator(mode="after")
    def _secret_source(self) -> Credentials:
        if self.client_secret is not None and self.client_secret_file is not None:
            raise ValueError("give client_secret or client_secret_file, not both")
        if self.client_secret_file is not None:
            object.__setattr__(self, "client_secret", _read_secret_file(self.client_secret_file))
        if self.client_secret is None or not self.client_secret.get_secret_value():
            raise ValueError("client_secret: missing; set it in the environment or give client_secret_file")
        return self

    def secret(self) -> SecretStr:
        assert self.client_secret is not None  # guaranteed by validation
        return self.client_secret


class GenesysConfig(Credentials):
    """``[genesys]``: where to connect, as whom, and which topics to follow."""

    region: str | None = None
    base_url: str | None = None
    topics: list[str] = Field(min_length=1)
    client: dict[str, Any] = Field(default_factory=dict)
    extra_credentials: list[Credentials] = Field(default_factory=list)

    @field_validator("client")
    @classmethod
    def _known_client_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        build_client_options(value)  # raises ValueError naming each bad option
        return value

    def client_options(self) -> ClientOptions:
        """The notification client's options from ``[genesys.client]`` (defaults for what is not given)."""
        return build_client_options(self.client)

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = value.strip().lower().replace("-", "_")
        if normalised not in REGIONS:
            raise ValueError(f"unknown region '{value}'; valid: {', '.join(REGIONS)}")
        return normalised

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "@" in urlsplit(value.strip()).netloc:  # shown on /status and in logs: never echo credentials
            raise ValueError("must not carry credentials (user:password@host); give them as client_secret")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"'{value}' is not an http(s) URL (for example https://api.mypurecloud.ie)")
        return value.rstrip("/")

    @field_validator("topics")
    @classmethod
    def _valid_topics(cls, topics: list[str]) -> list[str]:
        problems: list[str] = []
        seen: dict[str, int] = {}
        for i, topic in enumerate(topics):
            if not _TOPIC.match(topic):
                problems.append(f"[{i}] '{topic}' is not a topic name (letters, digits, . _ - ? & only)")
            elif len(topic) > _MAX_TOPIC_LENGTH:
                problems.append(f"[{i}] is longer than {_MAX_TOPIC_LENGTH} characters")
            elif _IMPLICIT_TOPIC.match(topic):
                problems.append(f"[{i}] '{topic}' is subscribed implicitly; remove it")
            elif topic in seen:
                problems.append(f"[{i}] '{topic}' duplicates topics[{seen[topic]}]")
            seen.setdefault(topic, i)
        if problems:
            raise ValueError("; ".join(problems))
        return topics

    @model_validator(mode="after")
    def _one_endpoint(self) -> GenesysConfig:
        if self.region is None and self.base_url is None:
            raise ValueError('give region (for example region = "eu_west_1") or base_url')
        if self.region is not None and self.base_url is not None:
            raise ValueError("give region or base_url, not both")
        ids = [self.client_id, *(c.client_id for c in self.extra_credentials)]
        if len(set(ids)) != len(ids):
            raise ValueError("extra_credentials must name OAuth clients other than client_id")
        return self

    @property
    def api_host(self) -> str | None:
        return REGIONS[self.region] if self.region else None


def _option_type_problem(name: str, value: Any, default: Any) -> str | None:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = True
    return None if ok else f"{name}: expected {type(default).__name__}, got {value!r}"


def build_client_options(values: Mapping[str, Any]) -> ClientOptions:
    """``ClientOptions`` from a ``[genesys.client]`` table; ``ValueError`` names every bad option.

    ``backoff`` is a table ``{initial, factor, cap, jitter}`` (:class:`gcbridge.core.backoff.BackoffPolicy`).
    """
    defaults = ClientOptions()
    known = {f.name for f in dataclasses.fields(ClientOptions)}
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    unknown = [name for name in values if name not in known]
    if unknown:
        problems.append(f"unknown option {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for name, value in values.items():
        if name not in known:
            continue
        if name == "backoff":
            try:
                kwargs[name] = BackoffPolicy(**value) if isinstance(value, dict) else None
            except (TypeError, ValueError) as exc:
                problems.append(f"backoff: {exc}")
            if kwargs.get(name) is None and not problems:
                problems.append("backoff: a table such as {initial = 0.25, factor = 2.0, cap = 60.0}")
        elif (problem := _option_type_problem(name, value, getattr(defaults, name))) is not None:
            problems.append(problem)
        else:
            kwargs[name] = value
    if not problems:
        try:
            return ClientOptions(**kwargs)
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    raise ValueError("genesys.client: " + "; ".join(problems))


class DispatcherConfig(_Section):
    """``[outbox.dispatcher]``: how rows are delivered to ServiceNow (see
    :class:`gcbridge.outbox.dispatcher.Dispatcher`).

    ``max_attempts = 0`` retries forever (rows never reach the dead-letter list on their own).
    """

    # as servicenow.concurrency: rows in flight = rows/s x response time (bench/README.md, latency)
    concurrency: int = Field(default=32, ge=1, le=256)
    # 0: fixed at concurrency; more: an adaptive window from concurrency up to this, halving back on a
    # failed attempt (Dispatcher's max_concurrency; bench/README.md, "Where the p99 goes")
    max_concurrency: int = Field(default=0, ge=0, le=256)
    batch: int = Field(default=64, ge=1, le=10_000)
    max_attempts: int = Field(default=100, ge=0)
    backoff_initial: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    deliver_timeout: float = Field(default=60.0, gt=0)
    idle_poll: float = Field(default=5.0, gt=0, le=300)
    coalesce: bool = False

    @model_validator(mode="after")
    def _window(self) -> DispatcherConfig:
        if 0 < self.max_concurrency < self.concurrency:
            # it is the ceiling of a window that starts at concurrency: below it, it would silently do nothing
            raise ValueError("max_concurrency: 0 (off) or at least concurrency")
        return self


class OutboxConfig(_Section):
    """``[outbox]``: the durable outbox between Genesys and ServiceNow.

    SQLite at ``path`` by default; ``url = "postgresql://user@host/database"`` puts it in PostgreSQL instead
    (``synchronous`` then does not apply: PostgreSQL's own ``synchronous_commit`` governs durability).
    """

    path: Path = Path("gcbridge-outbox.db")
    url: SecretStr | None = None  # a secret: the URL may carry the database password
    gap_log: Path | None = None
    retention_days: float = Field(default=1.0, ge=0)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    drain_timeout: float = Field(default=30.0, gt=0, le=3600)
    dispatcher: DispatcherConfig = Field(default_factory=DispatcherConfig)

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value.get_secret_value())
            _ = parts.port  # raises ValueError for a port that is not a number
            ok = parts.scheme in ("postgresql", "postgres") and bool(parts.hostname) and len(parts.path) > 1
        except ValueError:
            ok = False
        if not ok:
            # never echo the value: it may hold a password
            raise ValueError("must look like postgresql://user[:password]@host[:port]/database")
        return value

    @model_validator(mode="after")
    def _absolute_paths(self) -> OutboxConfig:
        object.__setattr__(self, "path", _resolve(self.path))
        gap_log = _resolve(self.gap_log) if self.gap_log else self.path.with_name("gcbridge-gaps.jsonl")
        object.__setattr__(self, "gap_log", gap_log)
        return self

    @property
    def gap_log_path(self) -> Path:
        assert self.gap_log is not None  # set by validation
        return self.gap_log


_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,100}$")


class HaConfig(_Section):
    """``[ha]``: several instances share the work on one PostgreSQL outbox (see
    :mod:`gcbridge.bridge.ha`). Needs ``[outbox] url``; without this section the service runs alone.

    ``instance_id`` defaults to ``<host name>-<process id>`` (a new id per start: a restarted instance joins
    as a new member and the old id ages out of the instance list after ``lease_ttl``; its row is deleted
    after 7 days). Every instance must have the same ``shards`` and topics. ``lease_ttl`` also leases the
    back-fill job an instance runs: a dead instance's job is taken over after it. ``handoff_overlap``:
    seconds a taker stays live beside the old owner before it takes the lease, so that events the old owner
    received just before are still written by it.
    """

    instance_id: str | None = None
    shards: int = Field(default=16, ge=1, le=4096)
    lease_ttl: float = Field(default=15.0, ge=0.5, le=600)
    handoff_timeout: float = Field(default=30.0, gt=0, le=3600)
    handoff_overlap: float = Field(default=2.0, ge=0, le=60)
    channel_budget: int = Field(default=6, ge=2, le=20)
    # A hot standby: subscribes to every topic on its own OAuth client ([genesys] client_id), takes no shard
    # lease, writes unfenced (the outbox drops repeats), and its coverage keeps takeovers from reporting gaps
    # it delivered (bridge/standby.py). Give it a client no other instance uses.
    standby: bool = False

    @field_validator("instance_id")
    @classmethod
    def _plain_id(cls, value: str | None) -> str | None:
        if value is not None and not _INSTANCE_ID.match(value):
            raise ValueError("1 to 100 of letters, digits and . _ - : @")
        return value


class BackfillConfig(_Section):
    """``[backfill]``: repair every gap from the Genesys Cloud REST APIs (see docs/operations.md, Back-fill).

    Each gap becomes a job in the outbox database, run ``delay`` seconds after the gap ended (analytics data
    lags the live stream), one at a time, with at most ``max_requests_per_minute`` REST requests (the OAuth
    client's budget, 300/min, is shared with the channel calls). A failing job is retried after
    ``retry_initial`` seconds, doubling up to ``retry_max``, ``max_attempts`` times in all.
    """

    enabled: bool = True
    delay: float = Field(default=120.0, ge=0, le=86400)
    margin: float = Field(default=120.0, ge=0, le=86400)
    max_requests_per_minute: int = Field(default=200, ge=1, le=10_000)
    page_size: int = Field(default=100, ge=1, le=100)
    max_attempts: int = Field(default=6, ge=1, le=1000)
    retry_initial: float = Field(default=60.0, gt=0)
    retry_max: float = Field(default=1800.0, gt=0)


class AdminConfig(_Section):
    """``[admin]``: the health, metrics and status endpoint. Loopback only unless you say otherwise."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_ADMIN_PORT, ge=0, le=65535)


class LoggingConfig(_Section):
    """``[logging]``: JSON lines on stderr by default."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class _FileSource(PydanticBaseSettingsSource):
    """The parsed TOML file, ranked below the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_DATA.get({}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get({}))


class BridgeConfig(BaseSettings):
    """The whole configuration. Build it with :func:`load_config` (file + environment)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    genesys: GenesysConfig
    servicenow: ServiceNowSection
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    backfill: BackfillConfig = Field(default_factory=BackfillConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    ha: HaConfig | None = None

    @model_validator(mode="after")
    def _ha_needs_postgresql(self) -> BridgeConfig:
        if self.ha is not None and self.outbox.url is None:
            raise ValueError(
                'ha: needs [outbox] url = "postgresql://..." (instances share one PostgreSQL outbox; '
                "SQLite serves one process)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _servicenow_secret_files(cls, data: Any) -> Any:
        # The writer's auth models take the secret itself; accept `<name>_file` beside them as well.
        auth = data.get("servicenow", {}).get("auth") if isinstance(data, dict) else None
        if not isinstance(auth, dict):
            return data
        auth = dict(auth)
        for key in [k for k in auth if k in ("password_file", "client_secret_file")]:
            target = key.removesuffix("_file")
            if auth.get(target) is not None:
                raise ValueError(f"servicenow.auth.{key}: give {target} or {key}, not both")
            try:
                auth[target] = _read_secret_file(Path(str(auth.pop(key))))
            except ValueError as exc:
                raise ValueError(f"servicenow.auth.{key}: {exc}") from None
        return {**data, "servicenow": {**data["servicenow"], "auth": auth}}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))


_FRIENDLY: Final[Mapping[str, str]] = {
    "extra_forbidden": "unknown key (check the spelling; see `gcbridge config example`)",
    "missing": "missing",
}


_NAMED_KEY: Final = re.compile(r"^((?:genesys|servicenow|outbox|admin|logging|ha)[\w.\[\]]*): ")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    previous: int | str = ""
    for part in loc:
        if previous == "auth" and part in ("basic", "oauth"):
            continue  # the tag of the discriminated union says nothing the user wrote
        previous = part
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        where = _location(tuple(err["loc"]))
        message = _FRIENDLY.get(err["type"], err["msg"])
        message = message.removeprefix("Value error, ")
        # A validator that already names its key ("servicenow.auth: ...") knows better than its location.
        named = _NAMED_KEY.match(message)
        if named and (where == "(top level)" or named.group(1).startswith(where)):
            where, message = named.group(1), message[named.end() :]
        # "client_secret: missing" reported by a model validator: point at the key itself.
        if message.startswith("client_secret: ") and not where.endswith("client_secret"):
            where, message = f"{where}.client_secret", message.removeprefix("client_secret: ")
            if where == "genesys.client_secret":
                message = message.replace(
                    "set it in the environment", f"set {ENV_PREFIX}GENESYS__CLIENT_SECRET"
                )
        if message == "missing" and re.search(r"(secret|password)$", where):
            env = ENV_PREFIX + where.upper().replace(".", "__")
            message = f"missing; set {env} or give {where.rsplit('.', 1)[-1]}_file"
        problems.append(f"{where}: {message}")
    return problems


def parse_config(
    data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "config"
) -> BridgeConfig:
    """Validate already-parsed TOML data (environment overrides apply). Raises :class:`ConfigError`."""
    base_token = _BASE_DIR.set(base_dir or Path.cwd())
    data_token = _FILE_DATA.set(dict(data))
    try:
        return BridgeConfig()  # type: ignore[call-arg]  # fields come from the sources
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None
    finally:
        _FILE_DATA.reset(data_token)
        _BASE_DIR.reset(base_token)


def load_config(path: str | Path) -> BridgeConfig:
    """Read the TOML file at ``path``, merge the environment, validate. Raises :class:`ConfigError`."""
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(file), [f"file not found: {file.resolve()}"]) from None
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read {file}: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(file), ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), [f"TOML syntax error: {exc}"]) from None
    return parse_config(data, base_dir=file.resolve().parent, source=str(file))
