"""The admin HTTP endpoint: health, readiness, Prometheus metrics, a JSON status and a status page.

Routes (bound to 127.0.0.1 by default; put a reverse proxy with authentication in front if you expose it):

* ``GET /healthz``: 200 while the process is alive and not failed (a liveness probe).
* ``GET /readyz``: 200 when every topic shard has a live socket and ServiceNow is reachable, else 503 with
  the reasons (a readiness probe and the first thing to alert on).
* ``GET /metrics``: Prometheus text format, from the service's own registry.
* ``GET /status``: the service state as JSON (the same document the status page shows).
* ``GET /``: the status page for people (HTML and a little JavaScript polling ``/status``; no external
  resources, so it works on an air-gapped host).

The endpoint reads a :class:`StatusSource`; it holds no state of its own and never sees a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Protocol

from aiohttp import web

from gcbridge import _json
from gcbridge.bridge.metrics import CONTENT_TYPE, BridgeMetrics

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


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]


def readiness(
    channels: Sequence[Mapping[str, Any]], shards: int, servicenow_reachable: bool | None, state: str
) -> Readiness:
    """Ready when running, every shard has a live channel, and ServiceNow answered (pure; no I/O)."""
    reasons: list[str] = []
    if state != "running":
        reasons.append(f"service is {state}")
    live = {c.get("shard") for c in channels if c.get("state") in EVENTS_FLOW_STATES}
    missing = [s for s in range(shards) if s not in live]
    if missing:
        reasons.append(f"shards without a live socket: {', '.join(str(s) for s in missing)}")
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
        self, source: StatusSource, metrics: BridgeMetrics, host: str = "127.0.0.1", port: int = 9464
    ) -> None:
        self._source = source
        self._metrics = metrics
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
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

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


def _json_response(body: Any, status: int) -> web.Response:
    return web.Response(
        body=_json.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
