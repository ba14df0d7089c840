"""Table API handlers: ``/api/now/[v1|v2/]table/{table}[/{sys_id}]``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from gcbridge import _json

from . import envelopes
from .query import EncodedQuery, equality_query, parse_encoded_query, select
from .render import DisplayMode, render_record, requested_fields
from .routes import Resource
from .state import SimState
from .store import Record
from .wire import BadBody, Call, Reply, empty_reply, json_reply, parse_json_body

DEFAULT_LIMIT = 10_000


def _flag(call: Call, name: str) -> bool:
    return call.query.get(name, "false").lower() == "true"


def _int_param(call: Call, name: str, default: int) -> int:
    try:
        value = int(call.query.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


def _render(state: SimState, call: Call, table: str, record: Record) -> dict[str, Any]:
    return render_record(
        state.store,
        table,
        record,
        mode=DisplayMode.parse(call.query.get("sysparm_display_value")),
        exclude_reference_link=_flag(call, "sysparm_exclude_reference_link"),
        fields=requested_fields(state.store, table, call.query.get("sysparm_fields")),
        base_url=call.base_url,
    )


def _query_of(state: SimState, call: Call, table: str) -> EncodedQuery:
    def is_field(name: str) -> bool:
        return state.store.is_field(table, name)

    if "sysparm_query" in call.query:
        return parse_encoded_query(call.query["sysparm_query"], is_field)
    pairs = tuple((k, v) for k, v in call.query_pairs if not k.startswith("sysparm_"))
    return equality_query(pairs, is_field)


def _record_body(call: Call) -> dict[str, Any]:
    payload = parse_json_body(call.body)
    # "You cannot pass multiple records in POST, PUT, and PATCH operations ... only the first is processed."
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    if not isinstance(payload, dict):
        raise BadBody("The payload must be a JSON object of field names and values.")
    return payload


async def handle_table(state: SimState, call: Call, *, truncate_list: bool = False) -> Reply:
    table = call.route.table or ""
    if not state.store.has_table(table):
        return json_reply(400, envelopes.invalid_table(table))
    if call.route.resource is Resource.TABLE_COLLECTION:
        if call.method == "POST":
            return _create(state, call, table)
        return _list(state, call, table, truncate_list)
    sys_id = call.route.sys_id or ""
    if call.method in ("GET", "HEAD"):
        return _get_one(state, call, table, sys_id)
    if call.method == "DELETE":
        return _delete(state, call, table, sys_id)
    return _update(state, call, table, sys_id)


def _list(state: SimState, call: Call, table: str, truncate: bool) -> Reply:
    if state.denied(table, "read", call.user):
        return json_reply(403, envelopes.acl_read_denied())
    query = _query_of(state, call, table)
    if query.has_invalid_parts and state.config.invalid_query_returns_no_rows:
        rows: list[Record] = []
    else:
        rows = select(state.store.rows(table), query, state.store.field_getter(table))
    total = len(rows)
    limit = _int_param(call, "sysparm_limit", DEFAULT_LIMIT)
    offset = _int_param(call, "sysparm_offset", 0)
    page = rows[offset : offset + limit]
    if not page and call.route.version == 1:
        return json_reply(404, envelopes.no_record_found())
    rendered = [_render(state, call, table, r) for r in page]
    headers = {"X-Total-Count": str(total)}
    if not _flag(call, "sysparm_suppress_pagination_header"):
        headers["Link"] = _link_header(call, total, limit, offset)
    if truncate:
        # The transaction quota cut the stream: half the rows, then the error, still HTTP 200 (KB0778443).
        partial = ",".join(_json.dumps_str(r) for r in rendered[: len(rendered) // 2])
        return Reply(200, envelopes.truncated_list_body(partial).encode(), "application/json", headers)
    return json_reply(200, {"result": rendered}, headers)


def _link_header(call: Call, total: int, limit: int, offset: int) -> str:
    base = [(k, v) for k, v in call.query_pairs if k not in ("sysparm_offset", "sysparm_limit")]

    def url(at: int) -> str:
        params = urlencode([*base, ("sysparm_limit", str(limit)), ("sysparm_offset", str(at))])
        return f"<{call.base_url}{call.path}?{params}>"

    last = max(0, ((total - 1) // limit) * limit) if limit else 0
    links = [f'{url(0)};rel="first"']
    if offset > 0 and limit:
        links.append(f'{url(max(0, offset - limit))};rel="prev"')
    if limit and offset + limit < total:
        links.append(f'{url(offset + limit)};rel="next"')
    links.append(f'{url(last)};rel="last"')
    return ",".join(links)


def _get_one(state: SimState, call: Call, table: str, sys_id: str) -> Reply:
    record = state.store.get(table, sys_id)
    if record is None or state.denied(table, "read", call.user):
        return json_reply(404, envelopes.no_record_found())
    return json_reply(200, {"result": _render(state, call, table, record)})


def _write_reply(
    state: SimState, call: Call, status: int, table: str, record: Record, **headers: str
) -> Reply:
    if call.headers.get("X-no-response-body", "").lower() == "true":
        return empty_reply(status, headers)
    return json_reply(status, {"result": _render(state, call, table, record)}, headers)


def _create(state: SimState, call: Call, table: str) -> Reply:
    if state.denied(table, "write", call.user):
        return json_reply(403, envelopes.acl_write_denied())
    record = state.store.insert(table, _record_body(call), call.user, call.now)
    location = f"{call.base_url}{call.path.rstrip('/')}/{record['sys_id']}"
    return _write_reply(state, call, 201, table, record, Location=location)


def _update(state: SimState, call: Call, table: str, sys_id: str) -> Reply:
    if state.store.get(table, sys_id) is None:
        return json_reply(404, envelopes.no_record_found())
    if state.denied(table, "write", call.user):
        return json_reply(403, envelopes.acl_write_denied())
    state.store.update(table, sys_id, _record_body(call), call.user, call.now)
    record = state.store.get(table, sys_id)
    assert record is not None
    return _write_reply(state, call, 200, table, record)


def _delete(state: SimState, call: Call, table: str, sys_id: str) -> Reply:
    if state.store.get(table, sys_id) is None:
        return json_reply(404, envelopes.no_record_found())
    if state.denied(table, "write", call.user):
        return json_reply(403, envelopes.acl_write_denied())
    state.store.delete(table, sys_id)
    return empty_reply(204)
