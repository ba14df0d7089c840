"""Configuration of the ServiceNow simulator and its defaults (documented in docs/simulator-servicenow.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .store import TableSchema
from .transform import AutoMap, TransformMap

TASK_REFERENCES: Final = {
    "caller_id": "sys_user",
    "opened_by": "sys_user",
    "assigned_to": "sys_user",
    "assignment_group": "sys_user_group",
}
TASK_JOURNAL: Final = frozenset({"work_notes", "comments"})

# Default tables: name -> number prefix (None: the table has no ``number`` column).
DEFAULT_TABLES: Final[dict[str, str | None]] = {
    "incident": "INC",
    "interaction": "IMS",
    "u_genesys_presence": None,
    "u_genesys_queue_stats": None,
    "em_event": None,
    "sys_user": None,
    "sys_user_group": None,
}

# Columns each default table has before anything is written, with the value a new record gets.
DEFAULT_COLUMNS: Final[dict[str, dict[str, str]]] = {
    "incident": {
        "short_description": "",
        "description": "",
        "state": "1",
        "impact": "3",
        "urgency": "3",
        "priority": "5",
        "active": "true",
        "category": "inquiry",
        "contact_type": "",
        "caller_id": "",
        "opened_by": "",
        "assigned_to": "",
        "assignment_group": "",
        "correlation_id": "",
        "correlation_display": "",
        "work_notes": "",
        "comments": "",
        "opened_at": "",
        "closed_at": "",
    },
    "interaction": {
        "short_description": "",
        "state": "new",
        "type": "phone",
        "channel": "",
        "direction": "",
        "active": "true",
        "opened_for": "",
        "assigned_to": "",
        "assignment_group": "",
        "queue": "",
        "correlation_id": "",
        "correlation_display": "",
        "work_notes": "",
        "opened_at": "",
        "closed_at": "",
    },
    "u_genesys_presence": {"u_user_id": "", "u_user_name": "", "u_presence": "", "u_routing_status": ""},
    "u_genesys_queue_stats": {"u_queue_id": "", "u_queue_name": ""},
    "em_event": {
        "source": "",
        "event_class": "",
        "node": "",
        "resource": "",
        "metric_name": "",
        "type": "",
        "message_key": "",
        "severity": "",
        "description": "",
        "additional_info": "",
        "time_of_event": "",
        "resolution_state": "New",
        "state": "Ready",
    },
    "sys_user": {"user_name": "", "name": "", "email": "", "active": "true"},
    "sys_user_group": {"name": "", "active": "true"},
}

DEFAULT_REFERENCES: Final[dict[str, dict[str, str]]] = {
    "incident": dict(TASK_REFERENCES),
    "interaction": {**TASK_REFERENCES, "opened_for": "sys_user"},
}


def default_transform_maps() -> dict[str, TransformMap | list[TransformMap]]:
    """The bridge's staging tables: interactions, presence and queue statistics."""
    return {
        "u_genesys_interaction_import": TransformMap(
            name="Genesys Interaction",
            target_table="interaction",
            field_map={"u_conversation_id": "correlation_id"},
            coalesce=["correlation_id"],
            auto_map=AutoMap.STRIP_U,
        ),
        "u_genesys_presence_import": TransformMap(
            name="Genesys Presence",
            target_table="u_genesys_presence",
            coalesce=["u_user_id"],
            auto_map=AutoMap.SAME,
        ),
        "u_genesys_queue_stats_import": TransformMap(
            name="Genesys Queue Statistics",
            target_table="u_genesys_queue_stats",
            coalesce=["u_queue_id"],
            auto_map=AutoMap.SAME,
        ),
    }


def table_schema(
    name: str,
    prefix: str | None,
    columns: dict[str, str] | None = None,
    references: dict[str, str] | None = None,
    *,
    strict: bool = False,
) -> TableSchema:
    """A schema for ``name``: the given columns, else the default table's, else none (an open table)."""
    base_columns = dict(DEFAULT_COLUMNS.get(name, {}) if columns is None else columns)
    base_refs = dict(DEFAULT_REFERENCES.get(name, {}) if references is None else references)
    # Every record's domain is a reference to the global domain, as on an instance.
    base_refs.setdefault("sys_domain", "sys_user_group")
    journal = frozenset(c for c in TASK_JOURNAL if c in base_columns)
    return TableSchema(name, prefix, base_columns, base_refs, journal, strict)


@dataclass(slots=True)
class SnSimConfig:
    """Everything the simulator can be started with; every default is what a fresh instance would do.

    Timings: ``access_token_ttl`` 1800 s, ``refresh_token_ttl`` 8,640,000 s (100 days),
    ``transaction_quota`` 60 s (REST Table/Import Set API request timeout), ``insert_multiple_delay`` 0.05 s
    (the pause before an asynchronous ``insertMultiple`` set is transformed).
    """

    users: dict[str, str] = field(default_factory=lambda: {"admin": "admin"}, repr=False)
    oauth_clients: dict[str, str] = field(default_factory=dict, repr=False)
    oauth_client_users: dict[str, str] = field(default_factory=dict)  # client_id -> OAuth application user
    client_credentials_enabled: bool = False
    access_token_ttl: float = 1800.0
    refresh_token_ttl: float = 8_640_000.0
    tables: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_TABLES))
    table_columns: dict[str, dict[str, str]] = field(default_factory=dict)  # overrides DEFAULT_COLUMNS
    strict_columns: bool = False  # True: unknown columns in writes are dropped, as on an instance
    transform_maps: dict[str, TransformMap | list[TransformMap]] = field(
        default_factory=default_transform_maps
    )
    rate_limit_per_hour: int | None = None  # one all-users rule for every API, if set
    rate_limit_commit_interval: float = 0.0  # 30.0 models a node committing its counts every 30 s (overshoot)
    concurrency: int = 16  # requests that run at once (the API_INT semaphore)
    queue: int = 64  # requests that may wait for the semaphore; more -> 429 without headers
    session_queue_limit: int = 10  # requests queued behind a session's running one; more -> 202 dropped
    session_busy_limit: float = 30.0  # a session's request running longer than this -> new ones 202 dropped
    invalid_query_returns_no_rows: bool = False  # glide.invalid_query.returns_no_rows
    max_body_bytes: int = 10 * 1024 * 1024  # glide.rest.max_content_length
    transaction_quota: float = 60.0
    insert_multiple_delay: float = 0.05
    request_log_size: int = 100_000  # the newest requests kept for ``sim.requests``
    max_import_rows: int = 100_000  # staging rows kept; older import sets are cleaned up
    instance_name: str = "gcbridgesim"  # used in the load-balancer cookie name
    clock: Callable[[], float] = time.time  # wall-clock seconds; inject a fake one to test expiry
