"""The admin HTTP endpoint: health, readiness, Prometheus metrics, a JSON status and a status page.

Routes (bound to 127.0.0.1 by default; put a reverse proxy with authentication in front if you expose it):

* ``GET /healthz``: 200 while the process is alive and not failed (a liveness probe).
* ``GET /readyz``: 200 when every topic shard has a live socket and ServiceNow is reachable, else 503 with
  the reasons (a readiness probe and the first thing to alert on).
* ``GET /metrics``: Prometheus text format, from the service's own registry.
* ``GET /status``: the service state as JSON (the same document the status page shows).
* ``GET /``: the status page for people (HTML and a little JavaScript polling ``/status``; no external
  resources, so it works on an air-gapped host).

The outbox's dead letters, for ``gcbridge outbox`` while the service runs (it holds the outbox), answered
only to this host (a loopback peer naming a loopback host; 403 otherwise, even when the endpoint listens
wider for scraping):

* ``GET /outbox/dead?limit=100&offset=0``: ``{"rows": [...], "stats": {...}}``, dead letters oldest first.
* ``GET /outbox/rows/{id}``: one row in any state, with its payload (404 when there is none).
* ``POST /outbox/replay`` and ``POST /outbox/purge`` with a JSON body ``{"ids": [1, 2]}`` or
  ``{"all": true}``: ``{"replayed": n}`` / ``{"purged": n}``. Only ``application/json`` is accepted, which a
  web page cannot send to another origin without a preflight this endpoint never grants.

Back-fill by hand, for ``gcbridge backfill`` while the service runs (this host only, JSON only, as above):

* ``POST /backfill`` with ``{"from": <unix s>, "to": <unix s>, "topics": [...]}`` (``topics`` optional: the
  service's own): runs one back-fill job now and answers ``{"job": {...}}`` with its outcome when its first
  attempt ends.

The endpoint reads a :class:`StatusSource` (and a :class:`DeadLetters`); it holds no state of its own and
never sees a secret.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Final, Protocol

from aiohttp import web

from gcbridge import _json
from gcbridge.bridge.metrics import CONTENT_TYPE, BridgeMetrics
from gcbridge.outbox.base import OutboxStats, RowInfo, Selection
from gcbridge.outbox.documents import parse_selection, row_document

_STATIC_FILES: Final[Mapping[str, str]] = {
    "status.js": "application/javascript",
    "status.css": "text/css",
}
# Channel states in which events reach the bridge ("rotating": the current socket is live while its
# replacement is being built).
EVENTS_FLOW_STATES: Final = frozenset({"live", "rotating", "connected", "subscribed"})
# The page is self-contained; forbid anything else so an injected value could not load code.
_PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class StatusSource(Protocol):
    """What the admin endpoint asks of the service."""

    async def status(self) -> Mapping[str, Any]:
        """A JSON-safe snapshot with at least ``state`` and ``readiness`` (see :func:`readiness`)."""
        ...

    def is_alive(self) -> bool:
        """False once the service failed for good (a fatal client error): the process should be restarted."""
        ...


class DeadLetters(Protocol):
    """The running service's dead letters, as the admin endpoint serves them."""

    async def dead_letters(self, limit: int, offset: int) -> tuple[list[RowInfo], OutboxStats]: ...

    async def row(self, row_id: int) -> RowInfo | None: ...

    async def replay(self, rows: Selection) -> int:
        """Back to pending (delivered at once), attempts reset; how many were dead letters."""
        ...

    async def purge(self, rows: Selection) -> int: ...


class BackfillByHand(Protocol):
    """The running service's back-fill, as ``POST /backfill`` uses it."""

    async def backfill_by_hand(
        self, start: float, end: float, topics: Sequence[str] | None
    ) -> dict[str, Any]:
        """Run one job for ``start``..``end`` (``topics``: the service's own when ``None``); its document."""
        ...


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]


def readiness(
    channels: Sequence[Mapping[str, Any]],
    shards: int,
    servicenow_reachable: bool | None,
    state: str,
    delivery_problems: Sequence[str] = (),
) -> Readiness:
    """Ready when running, every shard has a live channel, ServiceNow answered, and deliveries are not
    failing wholesale (pure; no I/O). ``delivery_problems``: a sink-wide condition that pauses deliveries
    ("ServiceNow rejected the credentials (HTTP 401)"), or every recent delivery dead-lettered. An instance
    that refuses the credentials answered, so it is not "not reachable" (see :func:`bridge.sink.answered`)."""
    reasons: list[str] = []
    if state != "running":
        reasons.append(f"service is {state}")
    live = {c.get("shard") for c in channels if c.get("state") in EVENTS_FLOW_STATES}
    missing = [s for s in range(shards) if s not in live]
    if missing:
        # a list, so that "shard 0" never reads as "no shard"
        reasons.append(f"shards without a live socket: {missing}")
    reasons.extend(delivery_problems)
    if servicenow_reachable is False:
        reasons.append("ServiceNow is not reachable")
    elif servicenow_reachable is None:
        reasons.append("ServiceNow not contacted yet")
    return Readiness(ready=not reasons, reasons=tuple(reasons))


def _static(name: str) -> bytes:
    return resources.files("gcbridge.bridge").joinpath("static", name).read_bytes()


class AdminServer:
    """The aiohttp application and its runner. ``await start()`` then ``url``; ``await stop()`` at the end."""

    def __init__(
        self,
        source: StatusSource,
        metrics: BridgeMetrics,
        host: str = "127.0.0.1",
        port: int = 9464,
        dead_letters: DeadLetters | None = None,
        backfill: BackfillByHand | None = None,
    ) -> None:
        self._source = source
        self._backfill = backfill
        self._metrics = metrics
        self._dead = dead_letters
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/status", self._status)
        app.router.add_get("/static/{name}", self._static_file)
        if self._dead is not None:
            app.router.add_get("/outbox/dead", self._dead_letters)
            app.router.add_get("/outbox/rows/{id}", self._row)
            app.router.add_post("/outbox/replay", self._replay)
            app.router.add_post("/outbox/purge", self._purge)
        if self._backfill is not None:
            app.router.add_post("/backfill", self._backfill_by_hand)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses  # (host, port, ...) of each listening socket: the port 0 bound
        self.port = int(addresses[0][1]) if addresses else self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=_static("index.html"),
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-store"},
        )

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        content_type = _STATIC_FILES.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=content_type, charset="utf-8")

    async def _healthz(self, _request: web.Request) -> web.Response:
        alive = self._source.is_alive()
        return _json_response({"alive": alive}, 200 if alive else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        status = await self._source.status()
        ready = status.get("readiness", {})
        return _json_response(ready, 200 if ready.get("ready") else 503)

    async def _status(self, _request: web.Request) -> web.Response:
        return _json_response(await self._source.status(), 200)

    async def _metrics_handler(self, _request: web.Request) -> web.Response:
        await self._source.status()  # refreshes the gauges from the latest snapshots
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # -- the outbox's dead letters: this host only --------------------------------------------------------
    def _dead_letters_for(self, request: web.Request) -> DeadLetters:
        _only_this_host(request, "outbox operations")
        assert self._dead is not None  # the routes exist only with it
        return self._dead

    async def _backfill_by_hand(self, request: web.Request) -> web.Response:
        _only_this_host(request, "back-fill requests")
        assert self._backfill is not None  # the route exists only with it
        if request.content_type != "application/json":
            raise _error(415, 'send a JSON body (Content-Type: application/json): {"from": ..., "to": ...}')
        try:
            body = await request.json(loads=_json.loads)
        except _json.JSONDecodeError:
            raise _error(400, "the body is not JSON") from None
        start, end, topics = _backfill_request(body)
        return _json_response({"job": await self._backfill.backfill_by_hand(start, end, topics)}, 200)

    async def _dead_letters(self, request: web.Request) -> web.Response:
        dead = self._dead_letters_for(request)
        limit, offset = (
            _int_query(request, "limit", 100, 1, 10_000),
            _int_query(request, "offset", 0, 0, None),
        )
        rows, stats = await dead.dead_letters(limit, offset)
        return _json_response(
            {"rows": [row_document(r, payload=False) for r in rows], "stats": asdict(stats)}, 200
        )

    async def _row(self, request: web.Request) -> web.Response:
        dead = self._dead_letters_for(request)
        try:
            row_id = int(request.match_info["id"])
        except ValueError:
            raise _error(400, "a row id is a whole number") from None
        info = await dead.row(row_id)
        if info is None:
            raise _error(404, f"no row {row_id} (never stored, expired or purged)")
        return _json_response(row_document(info), 200)

    async def _replay(self, request: web.Request) -> web.Response:
        dead = self._dead_letters_for(request)
        return _json_response({"replayed": await dead.replay(await _selection_of(request))}, 200)

    async def _purge(self, request: web.Request) -> web.Response:
        dead = self._dead_letters_for(request)
        return _json_response({"purged": await dead.purge(await _selection_of(request))}, 200)


def _only_this_host(request: web.Request, what: str) -> None:
    # a loopback peer that also named a loopback host: a web page that rebinds its own domain name to
    # 127.0.0.1 reaches us from this host, but with its domain in Host
    if not (_is_loopback(request.remote) and _names_this_host(request.url.host)):
        raise _error(403, f"{what} are answered only to this host (a loopback address)")


def _backfill_request(body: Any) -> tuple[float, float, list[str] | None]:
    if not isinstance(body, dict):
        raise _error(400, 'the body must be a JSON object: {"from": <unix seconds>, "to": <unix seconds>}')
    start, end, topics = body.get("from"), body.get("to"), body.get("topics")
    for name, value in (("from", start), ("to", end)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _error(400, f"{name} must be a time in UNIX seconds")
    assert isinstance(start, int | float)
    assert isinstance(end, int | float)
    if end <= start:
        raise _error(400, "to must be after from")
    if topics is not None and (
        not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t for t in topics)
    ):
        raise _error(400, "topics must be a non-empty list of topic names, or left out")
    return float(start), float(end), topics


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:  # not an IP address (a Unix socket): not served
        return False


def _names_this_host(host: str | None) -> bool:
    return host == "localhost" or _is_loopback(host)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise _error(400, f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise _error(400, f"{name} must be from {low}" + (f" to {high}" if high is not None else " up"))
    return value


async def _selection_of(request: web.Request) -> Selection:
    if request.content_type != "application/json":
        raise _error(
            415, 'send a JSON body (Content-Type: application/json): {"ids": [1, 2]} or {"all": true}'
        )
    try:
        return parse_selection(await request.json(loads=_json.loads))
    except _json.JSONDecodeError:
        raise _error(400, "the body is not JSON") from None
    except ValueError as exc:
        raise _error(400, str(exc)) from None


_ERRORS: Final[Mapping[int, type[web.HTTPException]]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    415: web.HTTPUnsupportedMediaType,
}


def _error(status: int, message: str) -> web.HTTPException:
    """An error answer to raise, its body ``{"error": message}``."""
    return _ERRORS[status](
        text=_json.dumps_str({"error": message}),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _json_response(body: Any, status: int) -> web.Response:
    return web.Response(
        body=_json.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
