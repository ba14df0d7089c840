# Types of the compiled twin of _intake_py (see _intake_c.pyx).
from collections import deque
from collections.abc import Callable
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
    def __init__(self, items: deque[Any], where: dict[str, int], resends: DedupWindow) -> None: ...
    def take(self, raw: str | bytes, now: float, channel_id: str) -> int: ...
    def reader(
        self,
        health: Health,
        buffer: Buffer,
        shared_until: list[float],
        channel_id: str,
        clock: Callable[[], float],
    ) -> Reader: ...

class Reader:
    payload: Any
    now: float
    def step(self, msg: aiohttp.WSMessage) -> int: ...
