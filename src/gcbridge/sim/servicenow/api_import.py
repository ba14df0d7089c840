"""Import Set API (``/api/now/import/...``) and Event Management (``/api/global/em/jsonv2``) handlers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import envelopes
from .events import EM_TABLE, em_response, ingest_events
from .importsets import ImportRow, import_response, result_entry
from .routes import Resource
from .state import SimState
from .store import new_sys_id, to_field_string
from .transform import coalesce_key, run_transform, staging_columns
from .wire import BadBody, Call, Reply, json_reply, parse_json_body


def _object(payload: Any) -> dict[str, Any]:
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    if not isinstance(payload, dict):
        raise BadBody("The payload must be a JSON object of field names and values.")
    return payload


def _records(payload: Any) -> list[dict[str, Any]]:
    records = payload.get("records") if isinstance(payload, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadBody('The payload must be {"records": [ {...}, ... ]}.')
    return records


def _staging_row(values: dict[str, Any]) -> dict[str, str]:
    return staging_columns({k: to_field_string(v) for k, v in values.items()})


async def transform_row(state: SimState, row: ImportRow, user: str, base_url: str) -> None:
    """Run every transform map of the row's staging table; rows with one coalesce value go one at a time."""
    results = []
    for tmap in state.transform_maps.get(row.staging_table, []):
        key = coalesce_key(tmap, row.values)
        if key is not None:
            await state.coalesce_locks.acquire(key)
        try:
            if state.faults.transform_time > 0:
                await asyncio.sleep(state.faults.transform_time)
            outcome = run_transform(
                state.store,
                tmap,
                row.values,
                user=user,
                now=state.now(),
                forced_error=state.faults.take_transform_failure(row.staging_table),
            )
        finally:
            if key is not None:
                state.coalesce_locks.release(key)
        results.append(result_entry(state.store, tmap, row, outcome, base_url))
    row.results = results
    row.committed_at = time.time()  # wall clock even under an injected clock: comparable across simulators


async def handle_import(state: SimState, call: Call) -> Reply:
    staging = call.route.table or ""
    if staging not in state.transform_maps:
        return json_reply(400, envelopes.invalid_table(staging))
    if call.route.resource is Resource.IMPORT_ROW:
        row = state.imports.find_row(staging, call.route.sys_id or "")
        if row is None:
            return json_reply(404, envelopes.no_record_found())
        return json_reply(200, import_response(row))
    payload = parse_json_body(call.body)
    if call.route.resource is Resource.IMPORT_MULTIPLE:
        return _insert_multiple(state, call, staging, _records(payload))
    row = state.imports.add_row(state.imports.sync_set(staging, call.now), _staging_row(_object(payload)))
    await transform_row(state, row, call.user, call.base_url)
    return json_reply(201, import_response(row))


def _insert_multiple(state: SimState, call: Call, staging: str, records: list[dict[str, Any]]) -> Reply:
    import_set = state.imports.async_set(staging, call.now)
    rows = [state.imports.add_row(import_set, _staging_row(r)) for r in records]
    multi_id = call.query.get("multi_import_set_id") or new_sys_id()

    async def process_later() -> None:
        await asyncio.sleep(state.config.insert_multiple_delay)
        for row in rows:
            await transform_row(state, row, call.user, call.base_url)

    state.spawn(process_later())
    return json_reply(200, {"import_set_id": import_set.sys_id, "multi_import_set_id": multi_id})


async def handle_events(state: SimState, call: Call) -> Reply:
    records = _records(parse_json_body(call.body))
    state.add_table(EM_TABLE)
    return json_reply(200, em_response(ingest_events(state.store, records, call.user, call.now)))
