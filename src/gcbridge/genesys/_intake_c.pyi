# Types of the compiled twin of _intake_py (see _intake_c.pyx).
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from gcbridge.genesys._intake_py import Buffer, Health

EVENT: int
DUPLICATE: int
UNKNOWN_TOPIC: int
OTHER: int
CLOSED: int
MALFORMED: int
SHARED: int
FULL: int
TAKEN: int

def starts_as_event(raw: object) -> bool: ...

class DedupWindow:
    window: float
    max_entries: int
    evicted_early: int
    def __init__(self, window: float = 120.0, max_entries: int = 100_000) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def first(self, key: str | int, now: float) -> bool: ...
    def expire(self, now: float) -> None: ...

class Intake:
    items: deque[Any]
    where: dict[str, int]
    resends: DedupWindow
    events: int
    duplicates: int
    unknown_topic: int
    other: Any
    problems: list[tuple[str, int, int, Any]]
    @property
    def deferred(self) -> int: ...
    def __init__(self, items: deque[Any], where: dict[str, int], resends: DedupWindow) -> None: ...
    def take(self, raw: str | bytes, now: float, channel_id: str) -> int: ...
    def finish(self, raw: str) -> Any: ...
    def take_batch(self, max_size: int) -> list[Any]: ...
    def finish_all(self, batch: list[Any]) -> list[Any]: ...
    def reader(
        self,
        health: Health,
        buffer: Buffer,
        shared_until: list[float],
        channel_id: str,
        clock: Callable[[], float],
        shard: int | None = None,
    ) -> Reader: ...

class Stream:
    def __init__(
        self, intake: Intake, buffer: Any, end: object, slow: Callable[[Any], Awaitable[Any]]
    ) -> None: ...
    def __aiter__(self) -> Stream: ...
    def __anext__(self) -> Awaitable[Any]: ...

class Reader:
    payload: Any
    now: float
    def step(self, msg: aiohttp.WSMessage) -> int: ...
