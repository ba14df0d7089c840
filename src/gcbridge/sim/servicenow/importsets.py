"""Import sets and their staging rows: what ``sim.import_sets`` shows and what the Import Set API returns.

Synchronous imports on one staging table share an import set that stays ``Loading`` for the UTC day (an
instance closes it at midnight); each ``insertMultiple`` call gets an asynchronous set of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from .store import FIRST_NUMBER, NUMBER_DIGITS, RecordStore, new_sys_id
from .transform import RowOutcome, RowStatus, TransformMap

ISET_PREFIX: Final = "ISET"


@dataclass(slots=True)
class ImportRow:
    sys_id: str
    staging_table: str
    import_set: str  # the set's number, e.g. ISET0010001
    values: dict[str, str]
    results: list[dict[str, Any]] = field(default_factory=list)  # one per transform map, once processed
    committed_at: float | None = None
    """When the transform committed the row to its target (wall clock, ``time.time()``; ``None`` before):
    what a benchmark compares with the Genesys simulator's ``published_at`` for end-to-end latency."""

    @property
    def processed(self) -> bool:
        return bool(self.results)

    @property
    def state(self) -> str:
        """``sys_import_state`` of the row: the first map's status, or ``pending`` before the transform."""
        return str(self.results[0]["status"]) if self.results else "pending"


@dataclass(slots=True)
class ImportSet:
    sys_id: str
    number: str
    staging_table: str
    mode: str  # "synchronous" | "asynchronous"
    day: str  # UTC date the set was opened on
    rows: list[ImportRow] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.mode == "synchronous":
            return "Loading"
        return "Processed" if all(r.processed for r in self.rows) else "Loading"


class ImportSetRegistry:
    """Import sets, oldest first. Past ``max_rows`` staging rows the oldest sets are cleaned up, as an
    instance's scheduled cleanup does (their rows then answer 404)."""

    def __init__(self, max_rows: int = 100_000) -> None:
        self.max_rows = max_rows
        self._row_count = 0
        self.sets: list[ImportSet] = []
        self._open_sync: dict[str, ImportSet] = {}
        self._rows: dict[tuple[str, str], ImportRow] = {}
        self._next_number = FIRST_NUMBER

    def sync_set(self, staging_table: str, now: float) -> ImportSet:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        current = self._open_sync.get(staging_table)
        if current is None or current.day != day:
            current = self._new_set(staging_table, "synchronous", day)
            self._open_sync[staging_table] = current
        return current

    def async_set(self, staging_table: str, now: float) -> ImportSet:
        return self._new_set(staging_table, "asynchronous", time.strftime("%Y-%m-%d", time.gmtime(now)))

    def add_row(self, import_set: ImportSet, values: dict[str, str]) -> ImportRow:
        row = ImportRow(new_sys_id(), import_set.staging_table, import_set.number, values)
        import_set.rows.append(row)
        self._rows[(import_set.staging_table, row.sys_id)] = row
        self._row_count += 1
        while self._row_count > self.max_rows and len(self.sets) > 1:
            self._drop(self.sets[0])
        return row

    def _drop(self, import_set: ImportSet) -> None:
        self.sets.remove(import_set)
        for row in import_set.rows:
            self._rows.pop((row.staging_table, row.sys_id), None)
        self._row_count -= len(import_set.rows)
        if self._open_sync.get(import_set.staging_table) is import_set:
            del self._open_sync[import_set.staging_table]

    def find_row(self, staging_table: str, sys_id: str) -> ImportRow | None:
        return self._rows.get((staging_table, sys_id))

    def _new_set(self, staging_table: str, mode: str, day: str) -> ImportSet:
        number = f"{ISET_PREFIX}{self._next_number:0{NUMBER_DIGITS}d}"
        self._next_number += 1
        created = ImportSet(new_sys_id(), number, staging_table, mode, day)
        self.sets.append(created)
        return created


def result_entry(
    store: RecordStore, tmap: TransformMap, row: ImportRow, outcome: RowOutcome, base_url: str
) -> dict[str, Any]:
    """One element of an Import Set API ``result[]`` (shape from the Import Set API documentation)."""
    target_known = store.has_table(tmap.target_table)
    display_name = store.schema(tmap.target_table).display_field if target_known else ""
    entry: dict[str, Any] = {"transform_map": tmap.name, "table": tmap.target_table}
    if outcome.target_sys_id is not None:
        entry["display_name"] = display_name
        entry["display_value"] = store.display_value(tmap.target_table, outcome.target_sys_id)
        entry["record_link"] = f"{base_url}/api/now/table/{tmap.target_table}/{outcome.target_sys_id}"
    entry["status"] = outcome.status.value
    # A skipped or failed row points at the staging row, not at a target record.
    entry["sys_id"] = outcome.target_sys_id or row.sys_id
    if outcome.message is not None:
        key = "error_message" if outcome.status is RowStatus.ERROR else "status_message"
        entry[key] = outcome.message
    return entry


def import_response(row: ImportRow) -> dict[str, Any]:
    return {"import_set": row.import_set, "staging_table": row.staging_table, "result": list(row.results)}
