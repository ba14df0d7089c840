"""A small ServiceNow REST client: Table API, Import Set API, Event Management, and what each answer means.

Every answer is classified by the pure :func:`classify` into :class:`Ok` or an outbox outcome:

==========================================  ==================================================================
answer                                      outcome
==========================================  ==================================================================
2xx with a JSON body (204 without)          :class:`Ok`
**202**                                     ``Retry``: ServiceNow queued the request behind a busy session and
                                            dropped it; *not delivered*
2xx that is HTML (hibernating instance),    ``Retry``
not JSON, or a JSON failure envelope
(``Transaction cancelled`` in a list)
400, 403, 404, 405, 406, 413, 415, 422      ``Reject`` with the envelope's message and detail, except
                                            ``400 Invalid table`` and a 403 ACL denial: ``Retry`` with a
                                            sink-wide ``condition`` (the rows wait, nothing is dead-lettered)
401                                         :class:`Unauthorized` (the client refreshes the token once, then
                                            ``Retry``)
429                                         ``Retry(after=Retry-After or X-RateLimit-Reset - now)``; without
                                            either nor any ``X-RateLimit-*`` (a full pool) with the soft
                                            sink-wide ``overloaded`` condition
5xx (JSON or a load balancer's HTML),       ``Retry``
408/409/423/425, anything else
timeouts and connection errors              ``Retry``
==========================================  ==================================================================

The client never keeps cookies: ServiceNow serialises the requests of one session and answers the overflow
with 202 (dropped), so a cookie jar turns concurrency into silent loss. :func:`create_session` builds a
session with :class:`aiohttp.DummyCookieJar`, and :class:`ServiceNowRest` refuses any other session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from gcbridge import _json
from gcbridge.core.backoff import parse_retry_after
from gcbridge.core.outcome import Reject, Retry
from gcbridge.servicenow import conditions
from gcbridge.servicenow.auth import Authenticator, AuthError

__all__ = [
    "Answer",
    "Ok",
    "ServiceNowRest",
    "Unauthorized",
    "classify",
    "create_session",
    "envelope_message",
]

_REJECT: Final = frozenset({400, 403, 404, 405, 406, 410, 411, 413, 414, 415, 422})
_MAX_REASON: Final = 500
RETRY_AFTER_CAP: Final = 3600.0  # ServiceNow rate-limit windows are one hour


@dataclass(frozen=True, slots=True)
class Ok:
    status: int
    data: Any  # the parsed JSON body, None for 204


@dataclass(frozen=True, slots=True)
class Unauthorized:
    reason: str


Answer = Ok | Retry | Reject | Unauthorized


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def envelope_message(data: Any) -> str | None:
    """``message: detail`` from ServiceNow's ``{"error":{"message","detail"},"status":"failure"}``."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or "").strip()
        detail = error.get("detail")
        detail = str(detail).strip() if detail not in (None, "") else ""
        if message and detail and detail != message:
            return f"{message}: {detail}"
        return message or detail or None
    if isinstance(error, str):
        return error
    return None


def _retry_delay(headers: Mapping[str, str], now: float) -> float | None:
    after = parse_retry_after(headers.get("Retry-After"), now=now)
    if after is None:
        reset = headers.get("X-RateLimit-Reset")
        if reset is not None:
            try:
                after = max(0.0, float(reset) - now)
            except ValueError:
                after = None
    return None if after is None else min(after, RETRY_AFTER_CAP)


def classify(status: int, content_type: str, body: bytes, headers: Mapping[str, str], now: float) -> Answer:
    """What one HTTP answer from ServiceNow means for delivery (pure). ``now``: wall-clock UNIX seconds."""
    ctype = content_type.lower()
    is_json = "json" in ctype
    data: Any = None
    parsed = False
    if is_json and body:
        try:
            data = _json.loads(body)
            parsed = True
        except _json.JSONDecodeError:
            parsed = False
    message = envelope_message(data)
    label = f"HTTP {status}" + (f": {message}" if message else "")
    if status == 202:
        return Retry(
            _clip(
                f"HTTP 202 from ServiceNow: the request was queued behind a busy session and not processed"
                f" (not delivered){': ' + message if message else ''}"
            )
        )
    if 200 <= status < 300:
        if status == 204:
            return Ok(status, None)
        if not is_json:
            kind = "an HTML page (a hibernating instance or a proxy page)" if "html" in ctype else repr(ctype)
            return Retry(
                f"HTTP {status} with {kind} instead of JSON: not delivered",
                condition=conditions.hibernating(),
            )
        if not parsed:
            return Retry(f"HTTP {status} with a body that is not JSON: not delivered")
        if isinstance(data, dict) and data.get("status") == "failure":
            return Retry(_clip(f"HTTP {status} carrying a failure envelope: {message or 'no message'}"))
        return Ok(status, data)
    if status == 401:
        return Unauthorized(_clip(label))
    if status == 429:
        after = _retry_delay(headers, now)
        # a rate-limit rule's 429 says when to come back (that row waits); one without says the pool is full
        pool_full = after is None and not any(h.lower().startswith("x-ratelimit") for h in headers)
        return Retry(
            _clip(label if message else "HTTP 429: rate limited"),
            after=after,
            condition=conditions.overloaded() if pool_full else None,
        )
    if status in _REJECT:
        if not is_json and status in (404, 405):
            # an HTML 404 comes from something in front of the instance, not from ServiceNow's API
            return Retry(f"HTTP {status} with {ctype or 'no content type'} (not from the ServiceNow API)")
        reason = _clip(label if message else f"HTTP {status} from ServiceNow (no error message)")
        # a missing table or an ACL denial fails every row alike: the sink's condition, the rows wait
        sink_wide = conditions.missing_table(reason) if status == 400 else None
        if status == 403 and conditions.is_acl_denial(message):
            sink_wide = conditions.access_denied(message or "")
        return Reject(reason) if sink_wide is None else Retry(reason, condition=sink_wide)
    if status >= 500 and not is_json:
        return Retry(
            f"HTTP {status} with {ctype or 'no content type'} (instance or load balancer unavailable)",
            condition=conditions.unavailable(status),
        )
    after = _retry_delay(headers, now) if status == 503 else None
    return Retry(
        _clip(label), after=after, condition=conditions.unavailable(status) if status >= 500 else None
    )


def create_session(
    *, connect_timeout: float = 10.0, total_timeout: float = 50.0, limit: int = 16, verify_tls: bool = True
) -> aiohttp.ClientSession:
    """An aiohttp session fit for ServiceNow: no cookies (see the module docstring), bounded pool."""
    connector = aiohttp.TCPConnector(limit=limit, ssl=verify_tls)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout),
        headers={"User-Agent": "gcbridge"},
    )


class ServiceNowRest:
    """Calls to one instance. Every method returns :class:`Ok`, ``Retry`` or ``Reject``; it never raises for
    an HTTP, network, timeout or authentication problem.

    ``concurrency`` bounds requests in flight; ``wall_clock`` (UNIX seconds) turns ``X-RateLimit-Reset``
    into a delay. ``on_request(method, seconds)``, if given, is called after every HTTP request with the
    time from sending it to having read the whole answer (or given up): ServiceNow's own latency, without
    the wait for a request slot. ``timer`` measures it (monotonic seconds; for tests).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        instance_url: str,
        auth: Authenticator,
        *,
        concurrency: int = 8,
        timeout: float = 50.0,
        wall_clock: Callable[[], float] = time.time,
        on_request: Callable[[str, float], None] | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            raise ValueError(
                "ServiceNowRest needs a session without cookies (cookie_jar=aiohttp.DummyCookieJar()): "
                "ServiceNow serialises one session's requests and drops the overflow with HTTP 202"
            )
        self._session = session
        self.base_url = instance_url.rstrip("/")
        self._auth = auth
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._wall_clock = wall_clock
        self._on_request = on_request
        self._timer = timer
        self.requests = 0

    # ---- Table API -----------------------------------------------------------------------------------------

    async def table_query(
        self, table: str, query: str, *, fields: str | None = None, limit: int | None = None
    ) -> Ok | Retry | Reject:
        """``GET /api/now/table/{table}?sysparm_query=...``; ``Ok.data["result"]`` is a list.

        Mind that ServiceNow ignores invalid query parts (a misspelled field matches *every* row): check the
        returned records.
        """
        params = {
            "sysparm_query": query,
            "sysparm_suppress_pagination_header": "true",
            "sysparm_no_count": "true",
        }
        if fields is not None:
            params["sysparm_fields"] = fields
        if limit is not None:
            params["sysparm_limit"] = str(limit)
        answer = await self.call("GET", f"/api/now/table/{quote(table)}", params=params)
        if isinstance(answer, Reject) and answer.reason.startswith("HTTP 404: No Record found"):
            return Ok(404, {"result": []})  # Table API v1 answers an empty list GET with 404
        return answer

    async def table_get(self, table: str, sys_id: str, *, fields: str | None = None) -> Ok | Retry | Reject:
        params = {"sysparm_fields": fields} if fields else None
        return await self.call("GET", f"/api/now/table/{quote(table)}/{quote(sys_id)}", params=params)

    async def table_create(
        self, table: str, record: Mapping[str, str], *, fields: str | None = None
    ) -> Ok | Retry | Reject:
        params = {"sysparm_fields": fields} if fields else None
        return await self.call("POST", f"/api/now/table/{quote(table)}", params=params, json=dict(record))

    async def table_patch(
        self, table: str, sys_id: str, record: Mapping[str, str], *, fields: str | None = None
    ) -> Ok | Retry | Reject:
        params = {"sysparm_fields": fields} if fields else None
        path = f"/api/now/table/{quote(table)}/{quote(sys_id)}"
        return await self.call("PATCH", path, params=params, json=dict(record))

    # ---- Import Set API and Event Management ---------------------------------------------------------------

    async def import_row(self, staging_table: str, row: Mapping[str, str]) -> Ok | Retry | Reject:
        """``POST /api/now/import/{staging}``: one row, transformed at once; check ``result[].status``."""
        return await self.call("POST", f"/api/now/import/{quote(staging_table)}", json=dict(row))

    async def em_events(self, records: list[dict[str, str]]) -> Ok | Retry | Reject:
        """``POST /api/global/em/jsonv2`` with ``{"records": [...]}``."""
        return await self.call("POST", "/api/global/em/jsonv2", json={"records": records})

    # ---- the one request path ------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Ok | Retry | Reject:
        """Send one request (again once with a new token after a 401) and classify the answer."""
        for attempt in (1, 2):
            try:
                header, generation = await self._auth.header()
            except AuthError as exc:
                condition = conditions.bad_credentials("401, token request") if exc.fatal else None
                return Retry(str(exc), after=exc.retry_after, condition=condition)
            answer = await self._send(method, path, params, json, header)
            if not isinstance(answer, Unauthorized):
                return answer
            if attempt == 2 or not await self._auth.rejected(generation):
                return Retry(
                    f"{answer.reason} (authentication refused; check the ServiceNow user and roles)",
                    condition=conditions.bad_credentials(401),
                )
        raise AssertionError("unreachable")

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, json: Any, header: str
    ) -> Answer:
        headers = {"Accept": "application/json", "Authorization": header}
        data: bytes | None = None
        if json is not None:
            headers["Content-Type"] = "application/json"
            data = _json.dumps(json)
        async with self._slots:
            self.requests += 1
            started = self._timer()
            try:
                async with self._session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                ) as response:
                    body = await response.read()
                    return classify(
                        response.status,
                        response.headers.get("Content-Type", ""),
                        body,
                        response.headers,
                        self._wall_clock(),
                    )
            except TimeoutError:
                no_answer = f"no answer within {self._timeout.total} s"
                return Retry(f"{method} {path}: {no_answer}", condition=conditions.unreachable(no_answer))
            except aiohttp.ClientError as exc:
                condition = conditions.unreachable(type(exc).__name__)
                return Retry(f"{method} {path}: {type(exc).__name__}: {_clip(str(exc))}", condition=condition)
            finally:
                if self._on_request is not None:
                    self._on_request(method, self._timer() - started)
