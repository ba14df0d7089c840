"""The fault and inspection API over HTTP, under ``/_sim/`` (JSON in, JSON out; no authentication).

It mirrors the Python API of :class:`~gcbridge.sim.genesys.sim.GenesysSim` for a simulator running in another
process (``gcbridge sim genesys``). Every endpoint is listed by ``GET /_sim/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from aiohttp import web

from gcbridge.sim.genesys.channels import Channel
from gcbridge.sim.genesys.ledger import PublishedRecord
from gcbridge.sim.genesys.rest import Faults, json_response, read_json
from gcbridge.sim.genesys.subscriptions import RequestError
from gcbridge.sim.genesys.topics import TopicError


class ControlledSim(Protocol):
    """What the control API drives (:class:`~gcbridge.sim.genesys.sim.GenesysSim`): one method per route."""

    base_url: str

    @property
    def faults(self) -> Faults: ...
    @property
    def ledger(self) -> list[PublishedRecord]: ...
    @property
    def channels(self) -> list[Channel]: ...
    @property
    def token_requests(self) -> int: ...
    @property
    def connected_channel_ids(self) -> list[str]: ...
    def now(self) -> float: ...
    async def socket_closing(self, channel_id: str | None = None, grace: float = 60.0) -> list[str]: ...
    async def drop_socket(self, channel_id: str | None = None) -> list[str]: ...
    async def close_socket(self, code: int = 1001, channel_id: str | None = None) -> list[str]: ...
    def stall_socket(self, channel_id: str | None = None) -> list[str]: ...
    def resume_socket(self, channel_id: str | None = None) -> list[str]: ...
    def expire_channel(self, channel_id: str) -> bool: ...
    def revoke_token(self, token: str | None = None) -> int: ...
    def fail_next_rest(self, n: int = 1, status: int = 503, retry_after: float | None = None) -> None: ...
    def fail_next_token(self, n: int = 1, status: int = 503, retry_after: float | None = None) -> None: ...
    def duplicate_next(self, n: int = 1) -> None: ...
    def refuse_handshakes(self, n: int = 1, status: int = 503) -> None: ...
    def set_rest_delay(self, seconds: float) -> None: ...
    def clear_faults(self) -> None: ...
    def publish(self, topic: str, body: dict[str, Any] | None = None) -> int: ...
    def start_traffic(self, rate_per_s: float, topics: Iterable[str] | None = None) -> None: ...
    async def stop_traffic(self) -> None: ...
    def add_oauth_client(self, client_id: str, secret: str, token_ttl: float | None = None) -> None: ...
    def forbid_topic(self, pattern: str, missing_permissions: Sequence[str] = ()) -> None: ...


Params = dict[str, Any]
Op = Callable[[ControlledSim, Params], Awaitable[Any]]


def _get(
    params: Params,
    name: str,
    kind: type | tuple[type, ...],
    default: Any = ...,
    *,
    nullable: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """``params[name]``, checked: of type ``kind`` and, for a number, within ``low``..``high``. Anything
    else is a 400 that says what was wrong, so that a mistyped fault never silently does something else."""
    value = params.get(name, default)
    if value is ...:
        raise RequestError(400, "bad.request", f"missing parameter {name!r}")
    if value is None and (nullable or default is None):
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise RequestError(400, "bad.request", f"parameter {name!r} has the wrong type")
    number = value if isinstance(value, int | float) else None
    if number is not None and ((low is not None and number < low) or (high is not None and number > high)):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise RequestError(400, "bad.request", f"parameter {name!r} must be {bounds}, got {value!r}")
    return value


# Statuses a failure fault may inject (errors only), and close codes a socket may send (RFC 6455 §7.4).
ERROR_STATUS: Final = (400, 599)
CLOSE_CODE: Final = (1000, 4999)


async def _socket_closing(sim: ControlledSim, p: Params) -> Any:
    return await sim.socket_closing(
        _get(p, "channel_id", str, None), float(_get(p, "grace", (int, float), 60.0, low=0))
    )


async def _drop(sim: ControlledSim, p: Params) -> Any:
    return await sim.drop_socket(_get(p, "channel_id", str, None))


async def _close(sim: ControlledSim, p: Params) -> Any:
    return await sim.close_socket(
        int(_get(p, "code", int, 1001, low=CLOSE_CODE[0], high=CLOSE_CODE[1])),
        _get(p, "channel_id", str, None),
    )


async def _stall(sim: ControlledSim, p: Params) -> Any:
    return sim.stall_socket(_get(p, "channel_id", str, None))


async def _resume(sim: ControlledSim, p: Params) -> Any:
    return sim.resume_socket(_get(p, "channel_id", str, None))


async def _expire(sim: ControlledSim, p: Params) -> Any:
    return sim.expire_channel(_get(p, "channel_id", str))


async def _revoke(sim: ControlledSim, p: Params) -> Any:
    return sim.revoke_token(_get(p, "token", str, None))


async def _fail_rest(sim: ControlledSim, p: Params) -> Any:
    sim.fail_next_rest(
        _get(p, "n", int, 1, low=1),
        _get(p, "status", int, 503, low=ERROR_STATUS[0], high=ERROR_STATUS[1]),
        _get(p, "retry_after", (int, float), None, low=0),
    )
    return len(sim.faults.api)


async def _fail_token(sim: ControlledSim, p: Params) -> Any:
    sim.fail_next_token(
        _get(p, "n", int, 1, low=1),
        _get(p, "status", int, 503, low=ERROR_STATUS[0], high=ERROR_STATUS[1]),
        _get(p, "retry_after", (int, float), None, low=0),
    )
    return len(sim.faults.token)


async def _duplicate(sim: ControlledSim, p: Params) -> Any:
    sim.duplicate_next(_get(p, "n", int, 1, low=1))
    return True


async def _refuse(sim: ControlledSim, p: Params) -> Any:
    sim.refuse_handshakes(
        _get(p, "n", int, 1, low=1), _get(p, "status", int, 503, low=ERROR_STATUS[0], high=ERROR_STATUS[1])
    )
    return True


async def _delay(sim: ControlledSim, p: Params) -> Any:
    sim.set_rest_delay(float(_get(p, "seconds", (int, float), low=0)))
    return True


async def _clear(sim: ControlledSim, p: Params) -> Any:
    sim.clear_faults()
    return True


async def _publish(sim: ControlledSim, p: Params) -> Any:
    try:
        return sim.publish(_get(p, "topic", str), _get(p, "body", dict, None))
    except TopicError as exc:
        raise RequestError(400, "bad.request", str(exc)) from None


async def _traffic(sim: ControlledSim, p: Params) -> Any:
    rate = float(_get(p, "rate_per_s", (int, float), low=0))
    topics = _get(p, "topics", list, None)
    if any(not isinstance(t, str) for t in topics or ()):
        raise RequestError(400, "bad.request", "parameter 'topics' must be a list of topic names")
    if rate == 0:  # the documented way to stop it
        await sim.stop_traffic()
        return "stopped"
    try:
        sim.start_traffic(rate, topics)
    except (TopicError, ValueError) as exc:
        raise RequestError(400, "bad.request", str(exc)) from None
    return True


async def _add_client(sim: ControlledSim, p: Params) -> Any:
    sim.add_oauth_client(
        _get(p, "client_id", str), _get(p, "secret", str), _get(p, "token_ttl", (int, float), None, low=1)
    )
    return True


async def _forbid(sim: ControlledSim, p: Params) -> Any:
    sim.forbid_topic(_get(p, "pattern", str), _get(p, "missing_permissions", list, []))
    return True


_OPS: dict[str, Op] = {
    "socket_closing": _socket_closing,
    "drop_socket": _drop,
    "close_socket": _close,
    "stall_socket": _stall,
    "resume_socket": _resume,
    "expire_channel": _expire,
    "revoke_token": _revoke,
    "fail_next_rest": _fail_rest,
    "fail_next_token": _fail_token,
    "refuse_handshakes": _refuse,
    "duplicate_next": _duplicate,
    "rest_delay": _delay,
    "clear_faults": _clear,
    "publish": _publish,
    "traffic": _traffic,
    "oauth_clients": _add_client,
    "forbid_topic": _forbid,
}


def add_control_routes(app: web.Application, sim: ControlledSim) -> None:
    async def operate(request: web.Request) -> web.StreamResponse:
        op = _OPS.get(request.match_info["op"])
        if op is None:
            raise RequestError(404, "not.found", f"Unknown simulator operation {request.match_info['op']!r}")
        params = await read_json(request) or {}
        if not isinstance(params, dict):
            raise RequestError(400, "bad.request", "The body must be a JSON object")
        return json_response({"result": await op(sim, params)})

    async def index(request: web.Request) -> web.StreamResponse:
        return json_response({"operations": sorted(_OPS), "inspect": ["channels", "ledger", "state"]})

    async def channels(request: web.Request) -> web.StreamResponse:
        now = sim.now()
        return json_response(
            {
                "entities": [
                    {
                        "id": c.id,
                        "oauthClient": c.oauth_client,
                        "connected": c.connected,
                        "topics": c.topics,
                        "expiresIn": c.expires - now,
                        "lastUsedAgo": now - c.last_used,
                    }
                    for c in sim.channels
                ]
            }
        )

    async def ledger(request: web.Request) -> web.StreamResponse:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise RequestError(400, "bad.request", "since must be an integer") from None
        return json_response({"records": [r.to_json() for r in sim.ledger if r.seq > since]})

    async def state(request: web.Request) -> web.StreamResponse:
        records = sim.ledger
        deliveries = [d for r in records for d in r.deliveries]
        return json_response(
            {
                "baseUrl": sim.base_url,
                "tokensIssued": sim.token_requests,
                "channels": len(sim.channels),
                "connected": sim.connected_channel_ids,
                "published": len(records),
                "sent": sum(d.sent for d in deliveries),
                "notSent": sum(not d.sent for d in deliveries),
            }
        )

    app.router.add_get("/_sim/", index, allow_head=False)
    app.router.add_get("/_sim/channels", channels, allow_head=False)
    app.router.add_get("/_sim/ledger", ledger, allow_head=False)
    app.router.add_get("/_sim/state", state, allow_head=False)
    app.router.add_post("/_sim/{op}", operate)
