"""The simulator's own HTTP controls under ``/_sim/`` (JSON in, JSON out; no authentication).

Same controls as the Python API, for a simulator run from the CLI::

    GET  /_sim/state                     counts of records per table, import sets, requests, armed faults
    GET  /_sim/records/{table}           the table's records
    GET  /_sim/import_sets               import sets with their rows and per-row results
    GET  /_sim/requests?limit=100        the newest requests seen
    POST /_sim/inject                    {"status": 503, "count": 2, "after_commit": false}
    POST /_sim/delay                     {"seconds": 1.5}
    POST /_sim/transform_time            {"seconds": 0.2}
    POST /_sim/hibernate                 {"on": true}
    POST /_sim/truncate_lists            {"count": 1}
    POST /_sim/rate_limit                {"per_hour": 100, "table": null, "api": null, "user": null}
    POST /_sim/fail_transform            {"staging_table": "u_genesys_interaction_import", "count": 1}
    POST /_sim/tables                    {"name": "u_custom", "prefix": null}
    POST /_sim/transform_maps            {"staging_table": ..., "name": ..., "target_table": ...,
                                          "field_map": {}, "coalesce": [], "auto_map": "none|strip_u|same"}
    POST /_sim/deny                      {"table": "incident", "operation": "write", "user": null}
    POST /_sim/client_credentials        {"enabled": true}
    POST /_sim/revoke_tokens             {}
    POST /_sim/reset                     {} (clears faults, ACL denials and rate-limit rules)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from gcbridge import _json

from .importsets import ImportSet
from .ratelimit import RateLimitRule
from .request_log import RequestRecord
from .state import SimState
from .transform import AutoMap, TransformMap


class ControlledSim(Protocol):
    """What the control API drives (:class:`~gcbridge.sim.servicenow.sim.ServiceNowSim`)."""

    base_url: str | None

    @property
    def state(self) -> SimState: ...
    @property
    def import_sets(self) -> Sequence[ImportSet]: ...
    @property
    def requests(self) -> Sequence[RequestRecord]: ...
    def records(self, table: str) -> list[dict[str, str]]: ...
    def inject(
        self,
        status: int,
        count: int = 1,
        *,
        after_commit: bool = False,
        cancelled: bool = False,
        path_prefix: str = "/api/",
    ) -> None: ...
    def set_delay(self, seconds: float) -> None: ...
    def set_transform_time(self, seconds: float) -> None: ...
    def hibernate(self, on: bool = True) -> None: ...
    def truncate_lists(self, count: int = 1) -> None: ...
    def set_rate_limit(
        self,
        per_hour: int | None,
        table: str | None = None,
        *,
        api: str | None = None,
        user: str | None = None,
    ) -> RateLimitRule | None: ...
    def fail_transform(self, staging_table: str, count: int = 1, message: str | None = None) -> None: ...
    def add_table(self, name: str, prefix: str | None = None) -> None: ...
    def add_transform_map(self, staging_table: str, transform_map: TransformMap) -> None: ...
    def deny(self, table: str, operation: str = "write", user: str | None = None) -> None: ...
    def set_client_credentials(self, enabled: bool) -> None: ...
    def revoke_tokens(self) -> None: ...
    def reset_faults(self) -> None: ...


Handler = Callable[[ControlledSim, dict[str, Any], web.Request], Any]


def _ok(payload: Any = None, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=_json.dumps(payload or {"ok": True}), content_type="application/json"
    )


def _state(sim: ControlledSim, _body: dict[str, Any], _request: web.Request) -> Any:
    faults = sim.state.faults
    return {
        "base_url": sim.base_url,
        "tables": {name: sim.state.store.count(name) for name in sim.state.store.table_names()},
        "staging_tables": sorted(sim.state.transform_maps),
        "import_sets": len(sim.state.imports.sets),
        "requests": len(sim.requests),
        "faults": {
            "injections": [
                {**dataclasses.asdict(a.injection), "remaining": a.remaining} for a in faults.injections
            ],
            "delay": faults.delay,
            "transform_time": faults.transform_time,
            "hibernating": faults.hibernating,
            "truncated_lists": faults.truncated_lists,
            "transform_failures": {k: v[0] for k, v in faults.transform_failures.items()},
            "rate_limit_rules": [dataclasses.asdict(r) for r in sim.state.limiter.rules],
            "denials": [dataclasses.asdict(d) for d in sim.state.denials],
        },
    }


def _records(sim: ControlledSim, _body: dict[str, Any], request: web.Request) -> Any:
    table = request.path.removeprefix("/_sim/records/")
    if not sim.state.store.has_table(table):
        raise ValueError(f"no table {table!r}")
    return {"result": sim.records(table)}


def _import_sets(sim: ControlledSim, _body: dict[str, Any], _request: web.Request) -> Any:
    return {
        "result": [
            {
                "sys_id": s.sys_id,
                "number": s.number,
                "staging_table": s.staging_table,
                "mode": s.mode,
                "state": s.state,
                "rows": [
                    {"sys_id": r.sys_id, "values": r.values, "state": r.state, "results": r.results}
                    for r in s.rows
                ],
            }
            for s in sim.import_sets
        ]
    }


def _requests(sim: ControlledSim, _body: dict[str, Any], request: web.Request) -> Any:
    limit = int(request.query.get("limit", "100"))
    return {"result": [dataclasses.asdict(r) for r in sim.requests[-limit:]]}


def _inject(sim: ControlledSim, body: dict[str, Any], _request: web.Request) -> Any:
    sim.inject(
        int(body["status"]),
        int(body.get("count", 1)),
        after_commit=bool(body.get("after_commit", False)),
        cancelled=bool(body.get("cancelled", False)),
        path_prefix=str(body.get("path_prefix", "/api/")),
    )


def _rate_limit(sim: ControlledSim, body: dict[str, Any], _request: web.Request) -> Any:
    per_hour = body.get("per_hour")
    rule = sim.set_rate_limit(
        None if per_hour is None else int(per_hour),
        body.get("table"),
        api=body.get("api"),
        user=body.get("user"),
    )
    return {"rule": dataclasses.asdict(rule) if rule else None}


def _transform_map(sim: ControlledSim, body: dict[str, Any], _request: web.Request) -> Any:
    sim.add_transform_map(
        str(body["staging_table"]),
        TransformMap(
            name=str(body.get("name", body["staging_table"])),
            target_table=str(body["target_table"]),
            field_map={str(k): str(v) for k, v in dict(body.get("field_map", {})).items()},
            coalesce=[str(c) for c in body.get("coalesce", [])],
            auto_map=AutoMap(body.get("auto_map", "none")),
        ),
    )


_GET: dict[str, Handler] = {
    "/_sim/state": _state,
    "/_sim/import_sets": _import_sets,
    "/_sim/requests": _requests,
}
_POST: dict[str, Handler] = {
    "/_sim/inject": _inject,
    "/_sim/delay": lambda sim, body, _r: sim.set_delay(float(body["seconds"])),
    "/_sim/transform_time": lambda sim, body, _r: sim.set_transform_time(float(body["seconds"])),
    "/_sim/hibernate": lambda sim, body, _r: sim.hibernate(bool(body.get("on", True))),
    "/_sim/truncate_lists": lambda sim, body, _r: sim.truncate_lists(int(body.get("count", 1))),
    "/_sim/rate_limit": _rate_limit,
    "/_sim/fail_transform": lambda sim, body, _r: sim.fail_transform(
        str(body["staging_table"]), int(body.get("count", 1)), body.get("message")
    ),
    "/_sim/tables": lambda sim, body, _r: sim.add_table(str(body["name"]), body.get("prefix")),
    "/_sim/transform_maps": _transform_map,
    "/_sim/deny": lambda sim, body, _r: sim.deny(
        str(body["table"]), str(body.get("operation", "write")), body.get("user")
    ),
    "/_sim/client_credentials": lambda sim, body, _r: sim.set_client_credentials(bool(body["enabled"])),
    "/_sim/revoke_tokens": lambda sim, _body, _r: sim.revoke_tokens(),
    "/_sim/reset": lambda sim, _body, _r: sim.reset_faults(),
}


def _lookup(method: str, path: str) -> Handler | None:
    if method == "GET" and path.startswith("/_sim/records/"):
        return _records
    return (_GET if method == "GET" else _POST if method == "POST" else {}).get(path)


async def control_routes(sim: ControlledSim, request: web.Request) -> web.Response:
    handler = _lookup(request.method, request.path)
    if handler is None:
        return _ok({"error": f"no control {request.method} {request.path}"}, 404)
    try:
        raw = await request.read()
        body = _json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        result: Any = handler(sim, body, request)
        if isinstance(result, Awaitable):
            result = await result
    except (KeyError, ValueError, TypeError, _json.JSONDecodeError) as exc:
        return _ok({"error": f"bad control request: {exc!r}"}, 400)
    return _ok(result)
