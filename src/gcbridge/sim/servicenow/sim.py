"""The ServiceNow simulator: an aiohttp server around the pure pieces of this package.

The request pipeline mirrors the layers of a real instance, outermost first: a hibernating instance answers
every request with its HTML page; the load balancer may answer 502/503 (injected); a request carrying a
known ``JSESSIONID`` waits for its session (more than ``session_queue_limit`` queued: HTTP 202, dropped); the
node's semaphore pool admits or rejects (429 without headers); then authentication, routing, rate-limit
rules, the (injected) processing delay and its transaction quota, and finally the API handler.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from . import envelopes, oauth
from .admission import PoolGate, SessionTable
from .api_import import handle_events, handle_import
from .api_table import handle_table
from .config import SnSimConfig
from .control import control_routes
from .faults import Injection
from .importsets import ImportSet
from .ratelimit import WINDOW_SECONDS, RateLimitRule
from .request_log import RequestRecord
from .routes import ALLOWED_METHODS, Resource, resolve
from .state import AclDenial, KeyedLocks, SimState
from .store import JournalEntry
from .transform import TransformMap
from .wire import BadBody, Call, Reply, empty_reply, html_reply, json_reply

log = logging.getLogger(__name__)

SESSION_COOKIE = "JSESSIONID"
TOKEN_PATH = "/oauth_token.do"  # noqa: S105 (a path, not a secret)
CONTROL_PREFIX = "/_sim/"
_FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(slots=True)
class _Exchange:
    """What the pipeline learns about one request on its way through (for the log and the cookie)."""

    session: str | None  # a JSESSIONID this simulator issued, sent back by the client
    user: str | None = None  # set once authenticated


class ServiceNowSim:
    """A ServiceNow instance on loopback: Table, Import Set, Event Management APIs, OAuth and faults.

    ``await sim.start()`` returns the base URL; inspect state with :meth:`records`, :attr:`import_sets`,
    :attr:`requests`; arm faults with :meth:`inject`, :meth:`set_delay`, :meth:`hibernate`,
    :meth:`set_rate_limit`, :meth:`fail_transform` (also over HTTP under ``/_sim/``).
    """

    def __init__(self, config: SnSimConfig | None = None) -> None:
        self.config = config or SnSimConfig()
        self.state = SimState(self.config)
        self._pool = PoolGate(self.config.concurrency, self.config.queue)
        self._sessions = SessionTable(self.config.session_queue_limit, self.config.session_busy_limit)
        self._session_locks = KeyedLocks()
        self._requests: deque[RequestRecord] = deque(maxlen=self.config.request_log_size)
        self._semaphore: asyncio.Semaphore | None = None
        self._running = asyncio.Event()
        self._running.set()
        self._pending = 0
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, ssl_context: Any = None) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL, e.g. ``http://127.0.0.1:8123``."""
        self._semaphore = asyncio.Semaphore(self.config.concurrency)
        app = web.Application(client_max_size=self.config.max_body_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        self.base_url = f"{scheme}://{host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        self.resume()  # stalled requests finish instead of holding the shutdown
        for task in list(self.state.background):
            task.cancel()
        for task in list(self.state.background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ServiceNowSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- inspection ---------------------------------------------------------------------------------------
    def records(self, table: str) -> list[dict[str, str]]:
        """Copies of the records of ``table``, oldest first (raw string values, journal fields empty)."""
        return [dict(r) for r in self.state.store.rows(table)]

    @property
    def import_sets(self) -> list[ImportSet]:
        return list(self.state.imports.sets)

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self._requests)

    @property
    def journal(self) -> list[JournalEntry]:
        """What was written to journal fields (``work_notes``, ``comments``), which read back empty."""
        return list(self.state.store.journal)

    # --- controls -----------------------------------------------------------------------------------------
    def inject(
        self,
        status: int,
        count: int = 1,
        *,
        after_commit: bool = False,
        cancelled: bool = False,
        path_prefix: str = "/api/",
    ) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with ``status`` (429, 500, 502 or 503).

        429 is the full semaphore pool's answer (no ``Retry-After``, no rate-limit headers), for a 429 storm
        that does not depend on the hour window of rate-limit rules. 502/503 come from the load balancer as
        HTML. A 500 carries the exception envelope, or with
        ``cancelled`` the transaction-cancelled body. ``after_commit``: the request takes effect first.
        """
        self.state.faults.inject(Injection(status, path_prefix, after_commit, cancelled), count)

    def set_delay(self, seconds: float) -> None:
        """Hold each API request ``seconds`` before processing; past the transaction quota it is cancelled."""
        self.state.faults.delay = max(0.0, seconds)

    def set_transform_time(self, seconds: float) -> None:
        """How long each Import Set transform holds its coalesce value (shows the serialisation)."""
        self.state.faults.transform_time = max(0.0, seconds)

    def pause(self) -> None:
        """Stall the node: admitted requests wait (holding their session and pool slot) until :meth:`resume`.

        Lets a test build session queues and full pools deterministically, without timing.
        """
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def pending(self) -> int:
        """Requests received and not yet answered (queued on a session, in the pool, or running)."""
        return self._pending

    @property
    def in_flight(self) -> int:
        """Requests admitted to the pool (running or waiting for a slot)."""
        return self._pool.in_flight

    def session_queue_depth(self, session_id: str) -> int:
        """Requests outstanding on one JSESSIONID (the running one plus those queued behind it)."""
        return self._sessions.outstanding(session_id)

    def hibernate(self, on: bool = True) -> None:
        self.state.faults.hibernating = on

    def truncate_lists(self, count: int = 1) -> None:
        """The next ``count`` list GETs hit the quota mid-stream: HTTP 200, a cut ``result`` and an error."""
        self.state.faults.truncated_lists += count

    def set_rate_limit(
        self,
        per_hour: int | None,
        table: str | None = None,
        *,
        api: str | None = None,
        user: str | None = None,
        window: float = WINDOW_SECONDS,
    ) -> RateLimitRule | None:
        """Replace the rate-limit rules with one rule (``None``: no rules, no headers). Counts restart.
        ``window``: the counting window in seconds (an instance counts per clock hour; a soak shortens it)."""
        if per_hour is None:
            self.state.limiter.set_rules([])
            return None
        rule = RateLimitRule(per_hour, api=api, table=table, user=user, window=window)
        self.state.limiter.set_rules([rule])
        return rule

    def add_rate_limit_rule(self, rule: RateLimitRule) -> None:
        self.state.limiter.set_rules([*self.state.limiter.rules, rule])

    def fail_transform(self, staging_table: str, count: int = 1, message: str | None = None) -> None:
        """The next ``count`` rows of ``staging_table`` end in status ``error`` (HTTP 201 all the same)."""
        if message is None:
            self.state.faults.fail_transform(staging_table, count)
        else:
            self.state.faults.fail_transform(staging_table, count, message)

    def add_table(self, name: str, prefix: str | None = None) -> None:
        self.state.add_table(name, prefix)

    def add_transform_map(self, staging_table: str, transform_map: TransformMap) -> None:
        self.state.transform_maps.setdefault(staging_table, []).append(transform_map)

    def deny(self, table: str, operation: str = "write", user: str | None = None) -> None:
        """Make ACLs deny ``operation`` ("read" or "write") on ``table`` to ``user`` (default: everyone)."""
        if operation not in ("read", "write"):
            raise ValueError("operation must be 'read' or 'write'")
        self.state.denials.add(AclDenial(table, operation, user))

    def allow_all(self) -> None:
        self.state.denials.clear()

    def set_client_credentials(self, enabled: bool) -> None:
        self.state.issuer.client_credentials_enabled = enabled

    def revoke_tokens(self) -> None:
        self.state.issuer.revoke_all()

    def reset_faults(self) -> None:
        """Clear injections, delays, hibernation, transform failures, ACL denials and rate-limit rules."""
        self.state.faults.clear()
        self.state.denials.clear()
        self.state.limiter.set_rules([])

    # --- request pipeline ---------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await control_routes(self, request)
        cookie = request.cookies.get(SESSION_COOKIE)
        session = cookie if cookie is not None and self._sessions.known(cookie) else None
        exchange = _Exchange(session)
        self._pending += 1
        try:
            reply = await self._serve(request, exchange)
        except Exception as exc:  # a simulator bug answers like an instance, never kills the server
            log.exception("servicenow simulator: unhandled error on %s %s", request.method, request.path)
            reply = json_reply(
                500, envelopes.server_exception(f"java.lang.RuntimeException: {type(exc).__name__}")
            )
        finally:
            self._pending -= 1
        response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        if reply.content_type is not None:
            response.content_type = reply.content_type
            response.charset = "UTF-8"
        if session is None and reply.content_type != "text/html":
            self._issue_session(response, exchange.user)
        self._requests.append(
            RequestRecord(
                request.method,
                request.path,
                request.query_string,
                reply.status,
                exchange.user,
                session is not None,
                self.state.now(),
            )
        )
        return response

    def _issue_session(self, response: web.Response, user: str | None) -> None:
        session = uuid.uuid4().hex.upper()
        self._sessions.open(session, user)
        response.set_cookie(SESSION_COOKIE, session, path="/", httponly=True)
        response.set_cookie(f"BIGipServerpool_{self.config.instance_name}", "2566914314.37438.0000", path="/")

    async def _serve(self, request: web.Request, exchange: _Exchange) -> Reply:
        faults = self.state.faults
        if faults.hibernating:
            return html_reply(200, envelopes.HIBERNATING_HTML)
        injection = faults.take_injection(request.path)
        if injection is not None and injection.status == 502:
            return html_reply(502, envelopes.BAD_GATEWAY_HTML)
        if injection is not None and injection.status == 503:
            return html_reply(503, envelopes.SERVICE_UNAVAILABLE_HTML)
        if injection is not None and injection.status == 429:
            return json_reply(429, envelopes.pool_full())
        if injection is not None and not injection.after_commit:
            return _injected_500(injection)
        session = exchange.session
        if session is None:
            return await self._admit(request, exchange, injection)
        if not self._sessions.try_enter(session, self.state.now()):
            return empty_reply(202)  # the session is jammed: dropped without effect
        await self._session_locks.acquire(session)
        self._sessions.started(session, self.state.now())
        try:
            return await self._admit(request, exchange, injection)
        finally:
            self._session_locks.release(session)
            self._sessions.leave(session)

    async def _admit(self, request: web.Request, exchange: _Exchange, injection: Injection | None) -> Reply:
        if not self._pool.try_enter():
            return json_reply(429, envelopes.pool_full())
        assert self._semaphore is not None
        try:
            async with self._semaphore:
                await self._running.wait()
                reply = await self._process(request, exchange)
        finally:
            self._pool.leave()
        if injection is not None and reply.status < 400:
            return _injected_500(injection)
        return reply

    async def _process(self, request: web.Request, exchange: _Exchange) -> Reply:
        body = await self._read_body(request)
        if body is None:
            return json_reply(
                400, envelopes.bad_request_body("Request body exceeds glide.rest.max_content_length")
            )
        if request.path == TOKEN_PATH:
            return self._token(request, body)
        if not request.path.startswith("/api/"):
            return Reply(404, b"Not Found", "text/plain")
        user = self._authenticate(request, exchange.session)
        if user is None:
            return json_reply(401, envelopes.not_authenticated())
        exchange.user = user
        if exchange.session is not None:
            self._sessions.bind_user(exchange.session, user)
        method = request.headers.get("X-http-method-override", request.method).upper()
        route = resolve(request.path)
        if route is None:
            return json_reply(400, envelopes.unknown_uri())
        if method not in ALLOWED_METHODS[route.resource]:
            return json_reply(405, envelopes.method_not_supported(method))
        now = self.state.now()
        decision = self.state.limiter.check(user, route.api, route.table, now)
        if not decision.allowed:
            headers = {**decision.headers, "Retry-After": str(decision.retry_after)}
            return json_reply(429, envelopes.rate_limited(decision.detail_limit, decision.api_name), headers)
        call = Call(
            method=method,
            route=route,
            # The first value of a repeated parameter wins (later ones overwrite earlier in reversed order).
            query={k: v for k, v in reversed(list(request.query.items()))},
            query_pairs=tuple(request.query.items()),
            headers=request.headers,
            body=body,
            user=user,
            base_url=f"{request.scheme}://{request.host}",
            path=request.path,
            now=now,
        )
        reply = await self._run_within_quota(call)
        reply.headers.update(decision.headers)
        return reply

    async def _run_within_quota(self, call: Call) -> Reply:
        delay, quota = self.state.faults.delay, self.config.transaction_quota
        is_list = call.route.resource is Resource.TABLE_COLLECTION and call.method in ("GET", "HEAD")
        if delay >= quota:
            await asyncio.sleep(quota)
            if not is_list:
                return json_reply(500, envelopes.transaction_cancelled())
            return await self._dispatch(call, truncate_list=True)
        if delay > 0:
            await asyncio.sleep(delay)
        return await self._dispatch(call, truncate_list=is_list and self.state.faults.take_truncated_list())

    async def _dispatch(self, call: Call, *, truncate_list: bool) -> Reply:
        try:
            if call.route.resource in (Resource.TABLE_COLLECTION, Resource.TABLE_RECORD):
                return await handle_table(self.state, call, truncate_list=truncate_list)
            if call.route.resource is Resource.EVENTS:
                return await handle_events(self.state, call)
            return await handle_import(self.state, call)
        except BadBody as exc:
            return json_reply(400, envelopes.bad_request_body(str(exc)))

    async def _read_body(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.config.max_body_bytes:
            return None
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

    def _authenticate(self, request: web.Request, session: str | None) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            return self._basic_user(credentials.strip())
        if scheme.lower() == "bearer":
            return self.state.issuer.user_for(credentials.strip(), self.state.now())
        if header:
            return None
        return self._sessions.user(session) if session is not None else None

    def _basic_user(self, credentials: str) -> str | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        expected = self.config.users.get(name)
        if not sep or expected is None or not secrets.compare_digest(expected, password):
            return None
        return name

    def _token(self, request: web.Request, body: bytes) -> Reply:
        issuer, now = self.state.issuer, self.state.now()
        # The endpoint takes form bodies only; JSON "results in an unspecified error" (here the generic one).
        if request.method != "POST" or request.content_type != _FORM_TYPE:
            return json_reply(401, envelopes.OAUTH_FAILURE)
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            return json_reply(401, envelopes.OAUTH_FAILURE)
        issuer.forget_expired(now)
        basic = oauth.basic_credentials(request.headers.get("Authorization", ""))
        grant = issuer.grant(form, now, basic=basic)
        if grant is None:
            return json_reply(401, envelopes.OAUTH_FAILURE)
        return json_reply(200, grant.body(now), {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _injected_500(injection: Injection) -> Reply:
    if injection.cancelled:
        return json_reply(500, envelopes.transaction_cancelled())
    return json_reply(
        500, envelopes.server_exception("java.lang.NullPointerException: simulated server fault")
    )


__all__ = ["RequestRecord", "ServiceNowSim"]
