"""Durable outbox: events are stored before they count as received, then delivered at least once, in order
per key, with retries and a dead-letter list that live in the store.

Public API::

    from gcbridge.outbox import SqliteOutbox, Dispatcher, OutboxItem, Delivered, Retry, Reject

See ``docs/outbox.md`` for guarantees and the dead-letter workflow.
"""

from gcbridge.outbox.base import (
    ALL,
    Delivered,
    OutboxItem,
    OutboxRow,
    OutboxStats,
    OutboxStore,
    Outcome,
    Reject,
    Retry,
    RowInfo,
    Sink,
    SinkCondition,
)
from gcbridge.outbox.dispatcher import Dispatcher, DispatcherCounters
from gcbridge.outbox.outage import SinkHealth
from gcbridge.outbox.sqlite import OutboxLockedError, SqliteOutbox

__all__ = [
    "ALL",
    "Delivered",
    "Dispatcher",
    "DispatcherCounters",
    "OutboxItem",
    "OutboxLockedError",
    "OutboxRow",
    "OutboxStats",
    "OutboxStore",
    "Outcome",
    "Reject",
    "Retry",
    "RowInfo",
    "Sink",
    "SinkCondition",
    "SinkHealth",
    "SqliteOutbox",
]
