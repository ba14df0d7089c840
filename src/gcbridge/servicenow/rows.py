"""What the writer writes: one flat row for one ServiceNow record, and where it goes.

The writer knows nothing of where rows come from (the bridge maps Genesys events to rows, see
:mod:`gcbridge.bridge.mapping`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["SINKS", "Row", "SinkKind"]

SinkKind = Literal["import_set", "table", "event"]
SINKS: Final = ("import_set", "table", "event")


@dataclass(frozen=True, slots=True)
class Row:
    """One record for ServiceNow.

    * ``sink``: ``import_set`` (``target`` is the staging table; the transform map coalesces on
      ``key_field``), ``table`` (``target`` is the table; upsert on ``key_field``) or ``event`` (Event
      Management; ``key`` is the ``message_key``).
    * ``key``: the record's identity, also in ``fields[key_field]``.
    * ``on_transform_error``: ``reject`` or ``retry`` an Import Set row whose transform map reports an error.
    """

    sink: str
    target: str
    key: str
    key_field: str
    fields: dict[str, str]
    on_transform_error: str = "reject"
