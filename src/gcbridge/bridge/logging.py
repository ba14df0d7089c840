"""Structured JSON logs for the service, with a redaction processor as the last line of defence.

The library packages (``gcbridge.genesys``, ``core``, ``outbox``, ``servicenow``) log through the standard
:mod:`logging` module (see :mod:`gcbridge._logs`) and print nothing on their own; the service's own modules
use structlog. :func:`configure` renders both through one structlog ``ProcessorFormatter`` on the root
logger, so one JSON line per record reaches stderr, and a library record's keyword context (its
:class:`~gcbridge._logs.LogMessage`) becomes fields of that line just like structlog's. Context such as
``channel``, ``shard``, ``topic`` and ``attempt`` is bound with :func:`bind` or passed as keyword arguments.

Secrets should never reach a log call in the first place (they travel as :class:`gcbridge.secrets.Secret` or
pydantic ``SecretStr``, whose ``repr`` is a mask). :func:`redact` masks what slips through anyway: the value
of any key named like secret/token/password/authorization/api key/credential, and ``Bearer``/``Basic``
credentials embedded in free text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, TextIO

import structlog
from pydantic import SecretStr

from gcbridge import _json
from gcbridge._logs import LogMessage
from gcbridge.secrets import Secret

MASK: Final = "**********"

# Keys whose values are credentials. Matched anywhere in the key, case-insensitively, so that
# "client_secret", "access_token", "X-Authorization" and "db_password" are all caught.
_SENSITIVE_KEY = re.compile(r"secret|token|passw|authori[sz]ation|api[_-]?key|credential|cookie", re.I)
# Credentials embedded in text, for example an exception message that quotes a request header.
_INLINE_CREDENTIAL = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.I)
_INLINE_ASSIGNMENT = re.compile(
    r"((?:client_secret|access_token|refresh_token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+", re.I
)
_MAX_DEPTH: Final = 8


def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SENSITIVE_KEY.search(key))


def _scrub_text(text: str) -> str:
    text = _INLINE_CREDENTIAL.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _INLINE_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{MASK}", text)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, Secret | SecretStr):
        return MASK
    if isinstance(value, str):
        return _scrub_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _redact_entry(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    return value


def _redact_entry(key: object, value: Any, depth: int) -> Any:
    # Numbers and flags under a sensitive-looking key ("token_refreshes": 3, "token_expired": true)
    # carry no credential; everything else is masked.
    if _is_sensitive_key(key) and not isinstance(value, bool | int | float) and value is not None:
        return MASK
    return _redact_value(value, depth)


def redact(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask credential-looking keys and inline credentials, recursively."""
    for key in list(event_dict):
        event_dict[key] = _redact_entry(key, event_dict[key], 0)
    return event_dict


def _orjson_dumps(obj: Any, **_kw: Any) -> str:
    return _json.dumps_str(obj)


def _json_default_safe(event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # orjson refuses unknown types; stringify them rather than lose the record.
    for key, value in list(event_dict.items()):
        if not isinstance(value, str | int | float | bool | list | dict | tuple) and value is not None:
            event_dict[key] = str(value)
    return event_dict


def _stringify_unknown(_l: object, _m: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return _json_default_safe(event_dict)


def library_fields(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor for standard-library records: a library record's context becomes fields.

    The record's message is a :class:`~gcbridge._logs.LogMessage`; without this the context would only be
    text appended to ``event``."""
    record = event_dict.get("_record")
    message = getattr(record, "msg", None)
    if isinstance(message, LogMessage):
        for key, value in message.fields.items():
            event_dict.setdefault(key, value)
        event_dict["event"] = message.event
    return event_dict


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard logging module for the whole process.

    ``level`` is a standard level name (debug, info, warning, error); ``fmt`` is ``json`` (one object per
    line, for machines) or ``console`` (coloured, for people). Records go to ``stream`` (default stderr).
    Safe to call more than once; the last call wins.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=_stdlib_logger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[library_fields, structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _stringify_unknown,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # aiohttp's access log is noise for an admin endpoint scraped every few seconds.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _stdlib_logger(*args: Any) -> logging.Logger:
    """The standard logger a structlog logger writes through. Not ``structlog.stdlib.LoggerFactory``: it calls
    ``logging.setLoggerClass`` for the whole process, and every logger made after that (the library's too)
    would then report its caller differently on some structlog versions."""
    return logging.getLogger(str(args[0]) if args else "gcbridge")


def get_logger(name: str = "gcbridge") -> Any:
    """A structlog logger; pass context as keyword arguments (``channel=..., shard=..., topic=...``)."""
    return structlog.stdlib.get_logger(name)


def bind(**context: Any) -> None:
    """Bind context (for example ``shard=2``) to every log record of the current task."""
    structlog.contextvars.bind_contextvars(**context)
