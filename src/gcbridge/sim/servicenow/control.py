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
    POST /_sim/rate_limit                {"per_hour": 100, "table": null, "api": null, "user": null,
                                          "window_seconds": 3600}
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
from .ratelimit import WINDOW_SECONDS, RateLimitRule
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
        window: float = ...,
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
                    {
                        "sys_id": r.sys_id,
                        "values": r.values,
                        "state": r.state,
                        "results": r.results,
                        "committed_at": r.committed_at,
                    }
                    for r in s.rows
                ],
            }
            for s in sim.import_sets
        ]
    }


def _requests(sim: ControlledSim, _body: dict[str, Any], request: web.Request) -> Any:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or int(raw) < 1:
        raise ControlError(f"limit must be a whole number from 1 up, got {raw!r}")
    limit = int(raw)
    return {"result": [dataclasses.asdict(r) for r in sim.requests[-limit:]]}


class ControlError(ValueError):
    """A control request with a missing or invalid argument; answered 400 with this message."""


_MISSING: Any = object()


def _arg(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """``body[name]`` of type ``kind`` (``None`` only when that is the default); never coerced, so that
    ``"false"`` is not taken for true and ``"5"`` not for a number."""
    if name not in body:
        if default is _MISSING:
            raise ControlError(f"missing argument {name!r}")
        return default
    value = body[name]
    if value is None and default is None:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ControlError(f"argument {name!r} must be {_KIND_NAMES.get(kind, 'an object')}, got {value!r}")
    return value


_KIND_NAMES: dict[type | tuple[type, ...], str] = {
    bool: "true or false",
    int: "a whole number",
    (int, float): "a number",
    str: "a string",
    list: "a list",
}


def _number(
    body: dict[str, Any], name: str, default: Any = _MISSING, *, low: float, high: float | None = None
) -> Any:
    value = _arg(body, name, (int, float), default)
    if value is not None and (value < low or (high is not None and value > high)):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise ControlError(f"argument {name!r} must be {bounds}, got {value!r}")
    return value


def _count(body: dict[str, Any], name: str = "count", default: Any = 1) -> int:
    value = _arg(body, name, int, default)
    if value < 1:
        raise ControlError(f"argument {name!r} must be at least 1, got {value!r}")
    return int(value)


# The statuses `inject` can answer with (the sim renders each as a real instance does).
_INJECTABLE = (429, 500, 502, 503)


def _inject(sim: ControlledSim, body: dict[str, Any], _request: web.Request) -> Any:
    status = _arg(body, "status", int)
    if status not in _INJECTABLE:
        raise ControlError(f"argument 'status' must be one of {list(_INJECTABLE)}, got {status!r}")
    sim.inject(
        status,
        _count(body),
        after_commit=_arg(body, "after_commit", bool, False),
        cancelled=_arg(body, "cancelled", bool, False),
        path_prefix=_arg(body, "path_prefix", str, "/api/"),
    )


def _rate_limit(sim: ControlledSim, body: dict[str, Any], _request: web.Request) -> Any:
    per_hour = _number(body, "per_hour", None, low=1)
    if per_hour is not None and not isinstance(per_hour, int):
        raise ControlError(f"argument 'per_hour' must be a whole number, got {per_hour!r}")
    rule = sim.set_rate_limit(
        per_hour,
        _arg(body, "table", str, None),
        api=_arg(body, "api", str, None),
        user=_arg(body, "user", str, None),
        window=_number(body, "window_seconds", WINDOW_SECONDS, low=1),
    )
    return {"rule": dataclasses.asdict(rule) if rule else None}


def _transform_map(sim: ControlledSim, body: dict[str, Any], _request: web.Request) -> Any:
    staging = _arg(body, "staging_table", str)
    field_map = _arg(body, "field_map", dict, {})
    coalesce = _arg(body, "coalesce", list, [])
    auto_map = _arg(body, "auto_map", str, "none")
    if auto_map not in {a.value for a in AutoMap}:
        raise ControlError(
            f"argument 'auto_map' must be one of {[a.value for a in AutoMap]}, got {auto_map!r}"
        )
    sim.add_transform_map(
        staging,
        TransformMap(
            name=_arg(body, "name", str, staging),
            target_table=_arg(body, "target_table", str),
            field_map={str(k): str(v) for k, v in field_map.items()},
            coalesce=[str(c) for c in coalesce],
            auto_map=AutoMap(auto_map),
        ),
    )


_GET: dict[str, Handler] = {
    "/_sim/state": _state,
    "/_sim/import_sets": _import_sets,
    "/_sim/requests": _requests,
}
_POST: dict[str, Handler] = {
    "/_sim/inject": _inject,
    "/_sim/delay": lambda sim, body, _r: sim.set_delay(_number(body, "seconds", low=0)),
    "/_sim/transform_time": lambda sim, body, _r: sim.set_transform_time(_number(body, "seconds", low=0)),
    "/_sim/hibernate": lambda sim, body, _r: sim.hibernate(_arg(body, "on", bool, True)),
    "/_sim/truncate_lists": lambda sim, body, _r: sim.truncate_lists(_count(body)),
    "/_sim/rate_limit": _rate_limit,
    "/_sim/fail_transform": lambda sim, body, _r: sim.fail_transform(
        _arg(body, "staging_table", str), _count(body), _arg(body, "message", str, None)
    ),
    "/_sim/tables": lambda sim, body, _r: sim.add_table(
        _arg(body, "name", str), _arg(body, "prefix", str, None)
    ),
    "/_sim/transform_maps": _transform_map,
    "/_sim/deny": lambda sim, body, _r: sim.deny(
        _arg(body, "table", str), _arg(body, "operation", str, "write"), _arg(body, "user", str, None)
    ),
    "/_sim/client_credentials": lambda sim, body, _r: sim.set_client_credentials(_arg(body, "enabled", bool)),
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
            raise ControlError("the body must be a JSON object")
        result: Any = handler(sim, body, request)
        if isinstance(result, Awaitable):
            result = await result
    except ControlError as exc:
        return _ok({"error": str(exc)}, 400)
    except _json.JSONDecodeError:
        return _ok({"error": "the body is not JSON"}, 400)
    except (KeyError, ValueError, TypeError) as exc:  # refused by the simulator itself (an unknown table)
        return _ok({"error": f"bad control request: {exc}"}, 400)
    return _ok(result)
