"""The simulator's tables and records, in memory, with no I/O and no clock (callers pass ``now``).

Every stored value is a string, as the REST APIs answer. A table has a schema: its columns with the value a
new record gets when a POST leaves them out, its reference columns (for ``{link, value}`` rendering and
dot-walking), its journal columns (write-only, read back as ``""``) and its number prefix.

Open schemas (the default) grow a column the first time a write names it, as if the customer's admin had
added it; a *strict* schema silently drops unknown columns on write, as an instance does. Either way a query
on a column the table does not have is ignored (see :mod:`.query`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gcbridge import _json

SYSTEM_COLUMNS: Final = (
    "sys_id",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
    "sys_class_name",
    "sys_domain",
)
FIRST_NUMBER: Final = 10001  # a fresh instance numbers from INC0010001
NUMBER_DIGITS: Final = 7


def format_time(epoch_seconds: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, the format of every date-time field in the REST APIs."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_seconds))


def new_sys_id() -> str:
    return uuid.uuid4().hex


def is_sys_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def to_field_string(value: Any) -> str:
    """How an instance stores a JSON value written to a field: everything becomes a string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict) and "value" in value:
        return to_field_string(value["value"])
    return _json.dumps_str(value)


@dataclass(slots=True)
class TableSchema:
    name: str
    prefix: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # column -> value a new record gets
    references: dict[str, str] = field(default_factory=dict)  # column -> referenced table
    journal: frozenset[str] = frozenset()
    strict: bool = False

    @property
    def display_field(self) -> str:
        if self.prefix is not None:
            return "number"
        for candidate in ("name", "user_name", "short_description"):
            if candidate in self.columns:
                return candidate
        return "sys_id"

    def has_column(self, column: str) -> bool:
        return (
            column in self.columns or column in SYSTEM_COLUMNS or (column == "number" and bool(self.prefix))
        )


@dataclass(frozen=True, slots=True)
class JournalEntry:
    table: str
    element_id: str
    element: str
    value: str
    user: str
    created_on: str


Record = dict[str, str]


class RecordStore:
    """Tables of records keyed by sys_id, kept in insertion order."""

    def __init__(self) -> None:
        self._schemas: dict[str, TableSchema] = {}
        self._rows: dict[str, dict[str, Record]] = {}
        self._next_number: dict[str, int] = {}
        self._sequence: dict[str, int] = {}  # sys_id -> insertion order, for "first match" answers
        self._inserted = 0
        # (table, column) -> case-folded value -> sys_ids; built on first lookup, then kept current.
        self._indexes: dict[tuple[str, str], dict[str, dict[str, None]]] = {}
        self.journal: list[JournalEntry] = []

    # --- schema -------------------------------------------------------------------------------------------
    def add_table(self, schema: TableSchema) -> None:
        self._schemas[schema.name] = schema
        self._rows.setdefault(schema.name, {})
        if schema.prefix is not None:
            self._next_number.setdefault(schema.prefix, FIRST_NUMBER)

    def has_table(self, table: str) -> bool:
        return table in self._schemas

    def schema(self, table: str) -> TableSchema:
        return self._schemas[table]

    def table_names(self) -> list[str]:
        return list(self._schemas)

    def is_field(self, table: str, path: str) -> bool:
        """Whether ``path`` (``caller_id`` or dot-walked ``caller_id.name``) names a column of ``table``."""
        schema = self._schemas.get(table)
        if schema is None:
            return False
        head, _, rest = path.partition(".")
        if not schema.has_column(head):
            return False
        if not rest:
            return True
        target = schema.references.get(head)
        return target is not None and self.is_field(target, rest)

    def field_getter(self, table: str) -> Callable[[Record, str], str]:
        def get(record: Record, path: str) -> str:
            return self.get_field(table, record, path)

        return get

    def get_field(self, table: str, record: Record, path: str) -> str:
        head, _, rest = path.partition(".")
        value = record.get(head, "")
        if not rest:
            return value
        target = self._schemas[table].references.get(head)
        referenced = self.get(target, value) if target else None
        return self.get_field(target, referenced, rest) if target and referenced else ""

    def display_value(self, table: str, sys_id: str) -> str:
        record = self.get(table, sys_id)
        if record is None:
            return ""
        return record.get(self._schemas[table].display_field, "")

    # --- records ------------------------------------------------------------------------------------------
    def rows(self, table: str) -> Iterator[Record]:
        return iter(self._rows[table].values())

    def get(self, table: str, sys_id: str) -> Record | None:
        return self._rows.get(table, {}).get(sys_id)

    def find_casefolded(self, table: str, column: str, value: str) -> list[Record]:
        """Records whose ``column`` equals ``value`` ignoring case, oldest first (indexed after first use)."""
        index = self._index(table, column)
        ids = index.get(value.casefold(), {})
        rows = self._rows[table]
        return sorted((rows[i] for i in ids), key=lambda r: self._sequence[r["sys_id"]])

    def _index(self, table: str, column: str) -> dict[str, dict[str, None]]:
        index = self._indexes.get((table, column))
        if index is None:
            index = {}
            for record in self._rows[table].values():
                index.setdefault(record.get(column, "").casefold(), {})[record["sys_id"]] = None
            self._indexes[(table, column)] = index
        return index

    def _unindex(self, table: str, record: Record) -> None:
        for (indexed_table, column), index in self._indexes.items():
            if indexed_table == table:
                index.get(record.get(column, "").casefold(), {}).pop(record["sys_id"], None)

    def _reindex(self, table: str, record: Record) -> None:
        for (indexed_table, column), index in self._indexes.items():
            if indexed_table == table:
                index.setdefault(record.get(column, "").casefold(), {})[record["sys_id"]] = None

    def count(self, table: str) -> int:
        return len(self._rows[table])

    def insert(self, table: str, values: Mapping[str, Any], user: str, now: float) -> Record:
        schema = self._schemas[table]
        sys_id = to_field_string(values.get("sys_id", ""))
        if not is_sys_id(sys_id) or sys_id in self._rows[table]:
            sys_id = new_sys_id()
        stamp = format_time(now)
        record: Record = {"sys_id": sys_id}
        if schema.prefix is not None:
            record["number"] = self._take_number(schema.prefix)
        record.update(schema.columns)
        record.update(
            {
                "sys_created_on": stamp,
                "sys_created_by": user,
                "sys_updated_on": stamp,
                "sys_updated_by": user,
                "sys_mod_count": "0",
                "sys_class_name": table,
                "sys_domain": "global",
            }
        )
        for column, value in self._writable(schema, values).items():
            self._write(schema, record, column, value, user, stamp)
        self._rows[table][sys_id] = record
        self._inserted += 1
        self._sequence[sys_id] = self._inserted
        self._reindex(table, record)
        return record

    def update(
        self, table: str, sys_id: str, values: Mapping[str, Any], user: str, now: float
    ) -> bool | None:
        """Apply ``values``; ``None`` if there is no such record, else whether anything changed."""
        record = self.get(table, sys_id)
        if record is None:
            return None
        schema = self._schemas[table]
        stamp = format_time(now)
        changed = False
        self._unindex(table, record)
        for column, value in self._writable(schema, values).items():
            changed |= self._write(schema, record, column, value, user, stamp)
        self._reindex(table, record)
        if changed:
            record["sys_updated_on"] = stamp
            record["sys_updated_by"] = user
            record["sys_mod_count"] = str(int(record.get("sys_mod_count", "0")) + 1)
        return changed

    def delete(self, table: str, sys_id: str) -> bool:
        record = self._rows.get(table, {}).pop(sys_id, None)
        if record is None:
            return False
        self._unindex(table, record)
        self._sequence.pop(sys_id, None)
        return True

    def clear(self, table: str) -> None:
        for sys_id in self._rows[table]:
            self._sequence.pop(sys_id, None)
        self._rows[table].clear()
        self._indexes = {key: index for key, index in self._indexes.items() if key[0] != table}

    # --- internals ----------------------------------------------------------------------------------------
    def _take_number(self, prefix: str) -> str:
        number = self._next_number[prefix]
        self._next_number[prefix] = number + 1
        return f"{prefix}{number:0{NUMBER_DIGITS}d}"

    @staticmethod
    def _writable(schema: TableSchema, values: Mapping[str, Any]) -> dict[str, str]:
        # System fields are set by the platform, not the caller (``number`` is writable, as on an instance).
        accepted: dict[str, str] = {}
        for column, value in values.items():
            if column.startswith("sys_") or not column:
                continue
            if schema.strict and not schema.has_column(column):
                continue
            accepted[column] = to_field_string(value)
        return accepted

    def _write(
        self, schema: TableSchema, record: Record, column: str, value: str, user: str, stamp: str
    ) -> bool:
        if column in schema.journal:
            if value:
                self.journal.append(JournalEntry(schema.name, record["sys_id"], column, value, user, stamp))
                record.setdefault(column, "")
                return True
            return False
        schema.columns.setdefault(column, "")
        if record.get(column) == value:
            return False
        record[column] = value
        return True
