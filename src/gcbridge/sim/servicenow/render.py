"""How a record looks in a Table API response, for each ``sysparm_display_value`` mode."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from .store import Record, RecordStore


class DisplayMode(enum.Enum):
    VALUE = "false"
    DISPLAY = "true"
    ALL = "all"

    @classmethod
    def parse(cls, raw: str | None) -> DisplayMode:
        """Unknown values fall back to the default (``false``), as an instance does."""
        try:
            return cls((raw or "false").lower())
        except ValueError:
            return cls.VALUE


def requested_fields(store: RecordStore, table: str, raw: str | None) -> list[str] | None:
    """``sysparm_fields`` with the columns the table lacks dropped; ``None`` means every column."""
    if not raw:
        return None
    return [f for f in (part.strip() for part in raw.split(",")) if f and store.is_field(table, f)]


def render_record(
    store: RecordStore,
    table: str,
    record: Record,
    *,
    mode: DisplayMode,
    exclude_reference_link: bool,
    fields: Sequence[str] | None,
    base_url: str,
) -> dict[str, Any]:
    schema = store.schema(table)
    columns = list(record) if fields is None else fields
    out: dict[str, Any] = {}
    for column in columns:
        value = store.get_field(table, record, column)
        target = schema.references.get(column)
        if target is None:
            out[column] = value if mode is not DisplayMode.ALL else {"display_value": value, "value": value}
            continue
        out[column] = _render_reference(store, target, value, mode, exclude_reference_link, base_url)
    return out


def _render_reference(
    store: RecordStore, target: str, value: str, mode: DisplayMode, exclude_link: bool, base_url: str
) -> Any:
    display = (store.display_value(target, value) or value) if value and store.has_table(target) else value
    link = f"{base_url}/api/now/table/{target}/{value}"
    if mode is DisplayMode.VALUE:
        return value if exclude_link or not value else {"link": link, "value": value}
    if mode is DisplayMode.DISPLAY:
        return display if exclude_link or not value else {"display_value": display, "link": link}
    rendered: dict[str, str] = {"display_value": display, "value": value}
    if not exclude_link and value:
        rendered["link"] = link
    return rendered
