"""Which REST resource a path names, and which methods it takes (pure; no aiohttp)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Resource(enum.Enum):
    TABLE_COLLECTION = "table_collection"
    TABLE_RECORD = "table_record"
    IMPORT_COLLECTION = "import_collection"
    IMPORT_ROW = "import_row"
    IMPORT_MULTIPLE = "import_multiple"
    EVENTS = "events"


ALLOWED_METHODS: Final[dict[Resource, frozenset[str]]] = {
    Resource.TABLE_COLLECTION: frozenset({"GET", "HEAD", "POST"}),
    Resource.TABLE_RECORD: frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
    Resource.IMPORT_COLLECTION: frozenset({"POST"}),
    Resource.IMPORT_ROW: frozenset({"GET", "HEAD"}),
    Resource.IMPORT_MULTIPLE: frozenset({"POST"}),
    Resource.EVENTS: frozenset({"POST"}),
}

# The API a resource belongs to, for rate-limit rules.
API_OF: Final[dict[Resource, str]] = {
    Resource.TABLE_COLLECTION: "table",
    Resource.TABLE_RECORD: "table",
    Resource.IMPORT_COLLECTION: "import",
    Resource.IMPORT_ROW: "import",
    Resource.IMPORT_MULTIPLE: "import",
    Resource.EVENTS: "em",
}


@dataclass(frozen=True, slots=True)
class Route:
    resource: Resource
    version: int  # 1 or 2; unversioned paths are the latest version (2)
    table: str | None = None
    sys_id: str | None = None

    @property
    def api(self) -> str:
        return API_OF[self.resource]


def resolve(path: str) -> Route | None:
    """The route for an ``/api/...`` path, or ``None`` (answered 400 "does not represent any resource")."""
    parts = [p for p in path.split("/") if p]
    if parts[:4] == ["api", "global", "em", "jsonv2"] and len(parts) == 4:
        return Route(Resource.EVENTS, 2)
    if parts[:2] != ["api", "now"]:
        return None
    rest = parts[2:]
    version = 2
    if rest and rest[0] in ("v1", "v2"):
        version = int(rest[0][1])
        rest = rest[1:]
    if len(rest) < 2:
        return None
    kind, name, tail = rest[0], rest[1], rest[2:]
    if kind == "table" and not tail:
        return Route(Resource.TABLE_COLLECTION, version, name)
    if kind == "table" and len(tail) == 1:
        return Route(Resource.TABLE_RECORD, version, name, tail[0])
    if kind == "import" and not tail:
        return Route(Resource.IMPORT_COLLECTION, version, name)
    if kind == "import" and tail == ["insertMultiple"]:
        return Route(Resource.IMPORT_MULTIPLE, version, name)
    if kind == "import" and len(tail) == 1:
        return Route(Resource.IMPORT_ROW, version, name, tail[0])
    return None
