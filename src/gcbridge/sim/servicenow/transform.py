"""Import Set transform maps and their coalesce rule, as pure functions over a :class:`RecordStore`.

A transform map copies staging columns to target columns (``field_map``, plus an optional automatic rule) and
*coalesces* on target columns: a row whose coalesce values match an existing record (case-insensitively, all
fields ANDed, the first match wins) updates it; otherwise it inserts. Statuses are those of an instance:
``inserted``, ``updated``, ``ignored`` (``No field values changed``), ``skipped`` (a coalesce value is empty
or the row is oversize) and ``error``. The asyncio shell serialises rows with the same :func:`coalesce_key`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .store import RecordStore

MAX_ROW_BYTES: Final = 8126  # staging-row size limit of an instance (r_MaximumRowSize)


class AutoMap(enum.Enum):
    """What happens to staging columns that ``field_map`` does not name."""

    NONE = "none"  # ignored
    STRIP_U = "strip_u"  # ``u_state`` -> ``state``
    SAME = "same"  # ``u_user_id`` -> ``u_user_id``


@dataclass(slots=True)
class TransformMap:
    """One transform map of a staging table.

    ``field_map`` maps staging columns to target columns; ``coalesce`` lists *target* columns; ``auto_map``
    maps the staging columns (``u_*``) that ``field_map`` leaves out.
    """

    name: str
    target_table: str
    field_map: dict[str, str] = field(default_factory=dict)
    coalesce: list[str] = field(default_factory=list)
    auto_map: AutoMap = AutoMap.NONE

    def map_row(self, row: Mapping[str, str]) -> dict[str, str]:
        mapped: dict[str, str] = {}
        for column, value in row.items():
            target = self.field_map.get(column) or self._automatic(column)
            if target:
                mapped[target] = value
        return mapped

    def _automatic(self, column: str) -> str | None:
        if not column.startswith("u_") or self.auto_map is AutoMap.NONE:
            return None
        return column[2:] if self.auto_map is AutoMap.STRIP_U else column


class RowStatus(enum.Enum):
    INSERTED = "inserted"
    UPDATED = "updated"
    IGNORED = "ignored"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RowOutcome:
    status: RowStatus
    target_sys_id: str | None  # None for skipped and error rows
    message: str | None = None


def staging_columns(row: Mapping[str, str]) -> dict[str, str]:
    """The columns a staging table has: ``u_*``; other names in a request body are dropped."""
    return {k: v for k, v in row.items() if k.startswith("u_")}


def row_size(row: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in row.items())


def coalesce_key(tmap: TransformMap, row: Mapping[str, str]) -> tuple[str, ...] | None:
    """The value that serialises this row's transform; ``None`` when the map does not coalesce."""
    if not tmap.coalesce:
        return None
    mapped = tmap.map_row(row)
    return (tmap.target_table, *(mapped.get(c, "").casefold() for c in tmap.coalesce))


def find_coalesce_match(store: RecordStore, tmap: TransformMap, mapped: Mapping[str, str]) -> str | None:
    first, *others = tmap.coalesce
    for record in store.find_casefolded(tmap.target_table, first, mapped[first]):
        if all(record.get(c, "").casefold() == mapped[c].casefold() for c in others):
            return record["sys_id"]
    return None


def run_transform(
    store: RecordStore,
    tmap: TransformMap,
    row: Mapping[str, str],
    *,
    user: str,
    now: float,
    forced_error: str | None = None,
) -> RowOutcome:
    """Transform one staging row into the target table and say what happened."""
    if forced_error is not None:
        return RowOutcome(RowStatus.ERROR, None, forced_error)
    if not store.has_table(tmap.target_table):
        return RowOutcome(RowStatus.ERROR, None, "Invalid table")
    if row_size(row) > MAX_ROW_BYTES:
        return RowOutcome(RowStatus.SKIPPED, None, f"Row size exceeds the maximum of {MAX_ROW_BYTES} bytes")
    mapped = tmap.map_row(row)
    if not tmap.coalesce:
        return RowOutcome(RowStatus.INSERTED, store.insert(tmap.target_table, mapped, user, now)["sys_id"])
    empty = [c for c in tmap.coalesce if not mapped.get(c)]
    if empty:
        return RowOutcome(RowStatus.SKIPPED, None, f"No value for coalesce field {', '.join(empty)}")
    match = find_coalesce_match(store, tmap, mapped)
    if match is None:
        return RowOutcome(RowStatus.INSERTED, store.insert(tmap.target_table, mapped, user, now)["sys_id"])
    if store.update(tmap.target_table, match, mapped, user, now):
        return RowOutcome(RowStatus.UPDATED, match)
    return RowOutcome(RowStatus.IGNORED, match, "No field values changed")
