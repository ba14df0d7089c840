"""De-duplication of events that arrive on more than one channel (rotation overlap, redundant paths).

The key is a hash of the topic name and the canonical event body (keys sorted), so the same notification has
the same key whichever channel, path or process received it; downstream stores reuse it for idempotency.
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import blake2b
from typing import Any

import orjson

_SORTED = orjson.OPT_SORT_KEYS


def dedup_key(topic: str, body: Any) -> str:
    """A 32-hex-digit key for (topic, canonical body)."""
    h = blake2b(topic.encode(), digest_size=16)
    h.update(b"\x00")
    h.update(orjson.dumps(body, option=_SORTED))
    return h.hexdigest()


class DedupWindow:
    """Remembers keys for ``window`` seconds, and at most ``max_entries`` keys (oldest go first).

    ``first(key, now)`` (a str or int key) is True the first time a key is seen within the window and
    records it; repeats return False. ``now`` is any monotonic clock, passed in.
    """

    __slots__ = ("_seen", "evicted_early", "max_entries", "window")

    def __init__(self, window: float = 120.0, max_entries: int = 100_000) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError("window must be > 0 and max_entries >= 1")
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str | int, float] = OrderedDict()
        self.evicted_early = 0  # keys dropped by the size bound before their time was up

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def first(self, key: str | int, now: float) -> bool:
        seen = self._seen
        if key in seen:
            return False
        seen[key] = now
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
            self.evicted_early += 1
        elif not len(seen) & 63:
            self.expire(
                now
            )  # every 64 inserts: keys live at least ``window`` seconds, a little longer at most
        return True

    def expire(self, now: float) -> None:
        seen = self._seen
        horizon = now - self.window
        while seen:
            key, at = next(iter(seen.items()))
            if at > horizon:
                return
            del seen[key]
