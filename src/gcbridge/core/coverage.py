"""Gap accounting for one shard: the shard is covered while at least one of its paths is live.

A gap opens when the last live path of a shard fails and closes when any path is live again. Its start is the
latest moment any failed path was still known to deliver (``since``), its end the moment a path came back.
"""

from __future__ import annotations

from collections.abc import Hashable


class ShardCoverage:
    __slots__ = ("_down_since", "_up")

    def __init__(self) -> None:
        self._up: set[Hashable] = set()
        self._down_since: dict[Hashable, float] = {}

    @property
    def covered(self) -> bool:
        return bool(self._up)

    @property
    def in_gap(self) -> bool:
        return not self._up and bool(self._down_since)

    def up(self, path: Hashable, at: float) -> tuple[float, float] | None:
        """A path became live; returns the (start, end) of the gap this closes, if any."""
        gap = None
        if not self._up and self._down_since:
            gap = (max(self._down_since.values()), at)
            self._down_since.clear()
        self._up.add(path)
        self._down_since.pop(path, None)
        return gap

    def down(self, path: Hashable, since: float) -> None:
        """A live path failed; it was last known to deliver at ``since``."""
        self._up.discard(path)
        self._down_since[path] = since

    def end(self, at: float) -> tuple[float, float] | None:
        """The shard is being removed: close an open gap at ``at`` (the topics were wanted until then)."""
        gap = (max(self._down_since.values()), at) if self.in_gap else None
        self._up.clear()
        self._down_since.clear()
        return gap

    def forget(self, path: Hashable) -> None:
        """A path was closed on purpose (its shard is empty or the client is closing): no gap."""
        self._up.discard(path)
        self._down_since.pop(path, None)
