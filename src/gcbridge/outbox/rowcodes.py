"""What every outbox store shares about a row: its state codes in the database, and the checks an item
passes before it is written (so one bad item fails its caller with a clear error, whatever the store)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gcbridge.outbox.base import OutboxItem, RowState

__all__ = [
    "DEAD",
    "DELIVERED",
    "IN_FLIGHT",
    "PENDING",
    "STATE_NAMES",
    "clip_error",
    "item_params",
    "not_older",
]

PENDING, IN_FLIGHT, DELIVERED, DEAD = 0, 1, 2, 3
STATE_NAMES: dict[int, RowState] = {
    PENDING: "pending",
    IN_FLIGHT: "in_flight",
    DELIVERED: "delivered",
    DEAD: "dead",
}
MAX_ERROR_CHARS = 1000  # a reason is for humans; a sink that echoes a 1 MB body must not bloat the store


def item_params(index: int, item: OutboxItem) -> tuple[Any, ...]:
    """Validate one item before it reaches the writer, so one bad item fails its caller with a clear error."""
    if type(item) is OutboxItem:  # the fast path, ~5x cheaper than the checks below (ingest is hot)
        params = (item.dedup_key, item.order_key, item.topic, item.payload, item.received_at)
        if (
            type(params[0]) is str
            and type(params[1]) is str
            and type(params[2]) is str
            and type(params[3]) is bytes
            and type(params[4]) is float
            and params[0]
            and params[1]
            and params[2]
        ):
            return params
    return _checked_item_params(index, item)


def _checked_item_params(index: int, item: OutboxItem) -> tuple[Any, ...]:
    if not isinstance(item, OutboxItem):
        raise TypeError(f"put_many item {index} is {type(item).__name__}, expected OutboxItem")
    for name in ("dedup_key", "order_key", "topic"):
        value = getattr(item, name)
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"put_many item {index}: {name} must be a non-empty str, got {type(value).__name__}"
            )
    if not isinstance(item.payload, bytes | bytearray | memoryview):
        raise TypeError(f"put_many item {index}: payload must be bytes, got {type(item.payload).__name__}")
    if not isinstance(item.received_at, int | float):
        raise TypeError(f"put_many item {index}: received_at must be UNIX seconds, got {item.received_at!r}")
    return (item.dedup_key, item.order_key, item.topic, bytes(item.payload), float(item.received_at))


def same_state(topic: str) -> str:
    """The default scope of the guarded put: every row of an order key carries the same state."""
    return ""


def not_older(
    params: list[tuple[Any, ...]],
    newest: dict[tuple[str, str], float],
    state_of: Callable[[str], str] = same_state,
) -> list[tuple[Any, ...]]:
    """The items (``item_params`` tuples) of a guarded put to insert, in order: an item whose (key, state) has
    a row (``newest``: the latest ``received_at`` per order key and ``state_of(topic)``) or an earlier kept
    item received after it is left out. ``newest`` is updated with the kept items."""
    kept = []
    for p in params:
        scope, at = (p[1], state_of(p[2])), p[4]
        if newest.get(scope, at) > at:
            continue
        newest[scope] = max(at, newest.get(scope, at))
        kept.append(p)
    return kept


def newest_by_state(
    rows: Iterable[tuple[str, str, float]], state_of: Callable[[str], str]
) -> dict[tuple[str, str], float]:
    """``(order_key, topic, max received_at)`` rows -> the latest ``received_at`` per (order key, state)."""
    newest: dict[tuple[str, str], float] = {}
    for key, topic, at in rows:
        scope = (key, state_of(topic))
        newest[scope] = max(at, newest.get(scope, at))
    return newest


def clip_error(text: str) -> str:
    text = str(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
