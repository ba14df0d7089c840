"""The three ways a row reaches ServiceNow, and the :class:`Writer` that picks one per row.

* :class:`ImportSetSink` (default): one ``POST /api/now/import/<staging>`` per event; the customer's transform
  map coalesces on the key column (the Genesys conversation id), so a re-sent row updates instead of
  duplicating. Each ``result[]`` element (one per transform map) is checked: ``inserted``, ``updated`` and
  ``ignored`` are delivered, ``error`` is rejected with ServiceNow's ``error_message`` (or retried, per
  rule), ``skipped`` is rejected with the reason. A transform error comes back with HTTP 201, so the
  status is what counts.
* :class:`TableUpsertSink`: ``GET ?sysparm_query=<field>=<key>&sysparm_fields=sys_id,<field>&sysparm_limit=1``
  then ``PATCH`` the match or ``POST`` a new record. Query-then-write races, so writes of one key are
  serialised in-process (per-key locks; the outbox already delivers one row per key at a time, the locks
  also cover several rules writing one record). ServiceNow ignores an invalid query part and then matches
  *every* row: the returned record's field is compared with the key before anything is patched.
* :class:`EventSink`: ``POST /api/global/em/jsonv2``; ``message_key`` (the key) lets Event Management
  de-duplicate re-sent events.

Every path returns an :data:`~gcbridge.core.outcome.Outcome`; nothing raises to the caller.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp

from gcbridge._logs import get_logger
from gcbridge.core.outcome import Delivered, Outcome, Reject, Retry
from gcbridge.secrets import Secret
from gcbridge.servicenow.auth import Authenticator, BasicAuth, OAuthTokens
from gcbridge.servicenow.conditions import missing_table
from gcbridge.servicenow.config import BasicAuthConfig, ServiceNowConfig
from gcbridge.servicenow.rest import Ok, ServiceNowRest
from gcbridge.servicenow.rows import Row

__all__ = [
    "EventSink",
    "ImportSetSink",
    "KeyLocks",
    "RowSink",
    "TableUpsertSink",
    "Writer",
    "build_writer",
    "decide_upsert",
    "interpret_em_result",
    "interpret_import_result",
]

log = get_logger(__name__)

_DELIVERED_STATUSES: Final = frozenset({"inserted", "updated", "ignored"})
_QUERY_UNSAFE: Final = re.compile(r"[\^\r\n]")
_EM_INSERTED: Final = re.compile(r"(\d+)\s+events?\s+(?:were|was)\s+inserted", re.IGNORECASE)


class RowSink(Protocol):
    async def write(self, row: Row) -> Outcome: ...


# ---- Import Set ------------------------------------------------------------------------------------------


def interpret_import_result(data: Any, staging_table: str, on_error: str = "reject") -> Outcome:
    """What an Import Set answer means (pure): every transform map's ``status`` must be a success."""
    results = data.get("result") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results:
        return Reject(
            f"Import Set {staging_table}: no transform map ran (empty result); the row stays in the staging "
            "table; check that an active transform map exists for it"
        )
    done: list[str] = []
    for item in results:
        if not isinstance(item, dict):
            return Reject(f"Import Set {staging_table}: unreadable result element {item!r:.100}")
        status = str(item.get("status", ""))
        where = f"transform map {item.get('transform_map', '?')!r} -> {item.get('table', '?')}"
        message = str(item.get("error_message") or item.get("status_message") or "").strip()
        if status in _DELIVERED_STATUSES:
            done.append(f"{item.get('table', '?')} {status} {item.get('sys_id', '')}".rstrip())
        elif status == "error":
            reason = f"Import Set {staging_table}: {where}: error: {message or 'no error message'}"
            if message.lower() in ("invalid table", "invalid staging table"):
                # the transform's target is missing: every row fails alike, so the rows wait for the fix
                table = staging_table if "staging" in message.lower() else str(item.get("table") or "?")
                return Retry(reason, condition=missing_table(f"HTTP 400: Invalid table {table}"))
            return Retry(reason) if on_error == "retry" else Reject(reason)
        elif status == "skipped":
            return Reject(
                f"Import Set {staging_table}: {where}: skipped: "
                f"{message or 'no reason given (usually an empty coalesce field or an oversize row)'}"
            )
        else:
            return Reject(
                f"Import Set {staging_table}: {where}: unknown status {status!r} {message}".rstrip()
            )
    return Delivered("; ".join(done))


class ImportSetSink:
    """Rows into a staging table through the Import Set API (transform runs synchronously)."""

    def __init__(self, rest: ServiceNowRest) -> None:
        self._rest = rest

    async def write(self, row: Row) -> Outcome:
        staging = row.target
        answer = await self._rest.import_row(staging, row.fields)
        if not isinstance(answer, Ok):
            return answer
        return interpret_import_result(answer.data, staging, row.on_transform_error)


# ---- Table API upsert ------------------------------------------------------------------------------------


class KeyLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it (memory stays bounded)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def _field_value(value: Any) -> str | None:
    if isinstance(value, dict):  # sysparm_display_value=all or a reference {link, value}
        value = value.get("value")
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Create:
    """No record has the key yet: POST one."""


@dataclass(frozen=True, slots=True)
class Patch:
    sys_id: str


def decide_upsert(data: Any, table: str, field: str, key: str) -> Create | Patch | Retry | Reject:
    """What to do after the lookup query (pure). Guards the "invalid query part matches every row" trap:
    the record found must carry the key in ``field``, else nothing is patched."""
    results = data.get("result") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return Retry(f"table {table}: query answer without a result list")
    if not results:
        return Create()
    match = results[0] if isinstance(results[0], dict) else {}
    value, sys_id = _field_value(match.get(field)), _field_value(match.get("sys_id"))
    if value is None or value.casefold() != key.casefold():  # string matches are case-insensitive there
        return Reject(
            f"table {table}: looking up {field}={key} returned a record whose {field} is {value!r}: "
            f"ServiceNow ignores invalid query parts, so {field!r} is probably not a field of "
            f"{table} (or not readable); refusing to patch an unrelated record"
        )
    if not sys_id:
        return Reject(f"table {table}: lookup of {field}={key} returned a record without sys_id")
    return Patch(sys_id)


class TableUpsertSink:
    """Upsert on a correlation field through the Table API (see the module docstring)."""

    def __init__(self, rest: ServiceNowRest) -> None:
        self._rest = rest
        self.locks = KeyLocks()

    async def write(self, row: Row) -> Outcome:
        table, field, key = row.target, row.key_field, row.key
        if _QUERY_UNSAFE.search(key):
            return Reject(
                f"table {table}: key {key[:100]!r} contains '^' or a line break; it cannot be queried"
            )
        async with self.locks.hold(f"{table}\x00{key}"):
            found = await self._rest.table_query(table, f"{field}={key}", fields=f"sys_id,{field}", limit=1)
            if not isinstance(found, Ok):
                return found
            step = decide_upsert(found.data, table, field, key)
            if isinstance(step, Create):
                return await self._create(table, row)
            if not isinstance(step, Patch):
                return step
            sys_id = step.sys_id
            patched = await self._rest.table_patch(table, sys_id, row.fields, fields="sys_id")
            if isinstance(patched, Reject) and patched.reason.startswith("HTTP 404"):
                return Retry(f"table {table}: record {sys_id} vanished before the update ({patched.reason})")
            if not isinstance(patched, Ok):
                return patched
            return Delivered(f"{table} updated {sys_id}")

    async def _create(self, table: str, row: Row) -> Outcome:
        created = await self._rest.table_create(table, row.fields, fields="sys_id")
        if not isinstance(created, Ok):
            return created
        result = created.data.get("result") if isinstance(created.data, dict) else None
        sys_id = _field_value(result.get("sys_id")) if isinstance(result, dict) else None
        return Delivered(f"{table} inserted {sys_id or '?'}")


# ---- Event Management ------------------------------------------------------------------------------------


def interpret_em_result(data: Any) -> Outcome:
    """``{"result":{"Default Bulk Endpoint":"1 events were inserted"}}``: zero inserted is a rejection."""
    result = data.get("result") if isinstance(data, dict) else None
    texts = [str(v) for v in result.values()] if isinstance(result, dict) else [str(result)]
    counts = [int(m.group(1)) for t in texts if (m := _EM_INSERTED.search(t))]
    if counts and sum(counts) == 0:
        return Reject(f"Event Management inserted no event: {'; '.join(texts)[:300]}")
    return Delivered("; ".join(texts)[:300])


class EventSink:
    """Operational events into Event Management (``em_event``), de-duplicated by ``message_key``."""

    def __init__(self, rest: ServiceNowRest) -> None:
        self._rest = rest

    async def write(self, row: Row) -> Outcome:
        answer = await self._rest.em_events([dict(row.fields)])
        if not isinstance(answer, Ok):
            return answer
        return interpret_em_result(answer.data)


# ---- the writer ------------------------------------------------------------------------------------------


class Writer:
    """Writes a :class:`~gcbridge.servicenow.rows.Row` through the sink its ``sink`` names.

    A row for a sink that does not exist is rejected with the reason; an unexpected exception in a sink
    becomes a ``Retry`` (logged), never an exception to the caller.
    """

    def __init__(self, sinks: Mapping[str, RowSink], *, closers: tuple[Any, ...] = ()) -> None:
        self.sinks = dict(sinks)
        self._closers = closers

    async def write(self, row: Row) -> Outcome:
        sink = self.sinks.get(row.sink)
        if sink is None:
            return Reject(f"no ServiceNow sink {row.sink!r} (expected one of {sorted(self.sinks)})")
        try:
            return await sink.write(row)
        except Exception as exc:  # a bug must not stop delivery of everything else
            log.exception("servicenow.sink_error", sink=row.sink, target=row.target)
            # The reason is stored with the row and shown on /status: the class name only, because an
            # exception's text may quote a header or the payload (the log above has it, redacted).
            return Retry(f"internal error in sink {row.sink!r}: {type(exc).__name__} (see the log)")

    async def close(self) -> None:
        for closer in self._closers:
            await closer.close()


def build_writer(
    config: ServiceNowConfig,
    session: aiohttp.ClientSession,
    *,
    wall_clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    on_request: Callable[[str, float], None] | None = None,
) -> Writer:
    """The writer for ``config``: authentication, REST client and the three sinks.

    ``session`` must use ``aiohttp.DummyCookieJar()`` (see :func:`gcbridge.servicenow.rest.create_session`);
    the caller owns and closes it. Call :meth:`Writer.close` at shutdown. ``wall_clock`` (UNIX seconds,
    turns ``X-RateLimit-Reset`` into a delay) and ``monotonic`` (token lifetimes) are for tests;
    ``on_request`` times each HTTP request (see :class:`gcbridge.servicenow.rest.ServiceNowRest`).
    """
    auth_config = config.auth
    auth: Authenticator
    closers: tuple[Any, ...] = ()
    if isinstance(auth_config, BasicAuthConfig):
        auth = BasicAuth(auth_config.username, Secret(auth_config.password.get_secret_value()))
    else:
        tokens = OAuthTokens(
            session,
            config.instance_url,
            client_id=auth_config.client_id,
            client_secret=Secret(auth_config.client_secret.get_secret_value()),
            grant=auth_config.grant,
            username=auth_config.username,
            password=Secret(auth_config.password.get_secret_value()) if auth_config.password else None,
            scope=auth_config.scope,
            timeout=config.timeouts.token,
            clock=monotonic,
        )
        auth, closers = tokens, (tokens,)
    rest = ServiceNowRest(
        session,
        config.instance_url,
        auth,
        concurrency=config.concurrency,
        timeout=config.timeouts.total,
        wall_clock=wall_clock,
        on_request=on_request,
    )
    sinks: dict[str, RowSink] = {
        "import_set": ImportSetSink(rest),
        "table": TableUpsertSink(rest),
        "event": EventSink(rest),
    }
    return Writer(sinks, closers=closers)
