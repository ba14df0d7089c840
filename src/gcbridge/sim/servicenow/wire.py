"""A request as the handlers see it and the answer they give back (no aiohttp types)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gcbridge import _json

from .routes import Route

JSON_TYPE = "application/json"
HTML_TYPE = "text/html"


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    route: Route
    query: Mapping[str, str]  # the first value of each query parameter
    query_pairs: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    user: str
    base_url: str  # scheme://host:port the client used
    path: str
    now: float


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, _json.dumps(payload), JSON_TYPE, dict(headers or {}))


def html_reply(status: int, page: str) -> Reply:
    return Reply(status, page.encode(), HTML_TYPE)


def empty_reply(status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, b"", None, dict(headers or {}))


class BadBody(Exception):
    """The request body cannot be read as the API expects; the message is the envelope's detail."""


def parse_json_body(body: bytes) -> Any:
    """The JSON of a request body; an empty body is an empty object, as an instance treats it."""
    if not body.strip():
        return {}
    try:
        return _json.loads(body)
    except _json.JSONDecodeError as exc:
        raise BadBody(f"The payload is not valid JSON: {exc}") from None
