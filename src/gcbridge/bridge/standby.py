"""Hot standby (``[ha] standby = true``): a redundant path for shards that other instances own.

A standby runs on its own OAuth client and subscribes to every topic, like a lone instance, but takes no
shard lease: its writes are not fenced (a second copy of an event is dropped by the outbox's dedup key) and it
does not count in the shared channel budget (its client's 20 channels are its own). It records what it
verifiably received (:class:`StandbyPublisher`, into ``standby_coverage``), so that an instance taking over a
dead owner's shard reports as a gap only what the standby did not cover. Its own path's gaps are not gaps of
the shards, which their owners cover: they end its coverage (so that a takeover does not count on it there)
and are logged at info, not journalled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from gcbridge.core.topics import expand_topic
from gcbridge.genesys.events import Gap
from gcbridge.outbox.pg_standby import StandbyCoverageStore

__all__ = ["PUBLISH_INTERVAL", "StandbyPublisher", "standby_cover"]

PUBLISH_INTERVAL: Final = 1.0
"""Seconds between two publishes of the standby's coverage (well inside ``STANDBY_FRESH``)."""
FORGET_AFTER: Final = 24 * 3600.0
"""Seconds a finished stretch of coverage is kept (a takeover only looks back to its owner's last renewal)."""

_LIVE: Final = frozenset({"live", "connected", "subscribed", "open"})


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def standby_cover(paths: Iterable[Any]) -> tuple[float, float] | None:
    """``(since, seen)`` while every shard has a live path: all live since ``since`` (the latest shard to go
    live), every shard read a frame at or after ``seen`` (the earliest of the shards' last frames). ``None``
    when some shard has no live path or no frame yet (pure)."""
    shards: dict[int, list[Any]] = {}
    for p in paths:
        shards.setdefault(int(_get(p, "shard") or 0), []).append(p)
    if not shards:
        return None
    since, seen = float("-inf"), float("inf")
    for candidates in shards.values():
        live = [
            p
            for p in candidates
            if str(getattr(_get(p, "state"), "value", _get(p, "state"))).lower() in _LIVE
            and _get(p, "connected_since") is not None
            and _get(p, "last_frame_at") is not None
        ]
        if not live:
            return None
        since = max(since, min(float(_get(p, "connected_since")) for p in live))
        seen = min(seen, max(float(_get(p, "last_frame_at")) for p in live))
    return (since, seen) if seen > since else None


class StandbyPublisher:
    """Publishes the standby's coverage about once a second; ends it where the standby's own gaps begin."""

    def __init__(
        self,
        store: StandbyCoverageStore,
        topics: Sequence[str],
        stats: Callable[[], Any],
        clock: Callable[[], float],
        log: Any,
    ) -> None:
        self.store = store
        self.topics = sorted({t for raw in topics for t in expand_topic(raw)})
        self._stats = stats
        self._clock = clock
        self._log = log
        self.cover: tuple[float, float] | None = None
        """The last coverage published: (since, seen), wall-clock."""
        self.own_gaps = 0
        self.failures = 0

    async def publish_once(self) -> tuple[float, float] | None:
        stats = self._stats()
        cover = standby_cover(_get(stats, "paths") or ()) if stats is not None else None
        if cover is not None:
            rejected = set(_get(stats, "rejected_topics") or ())
            topics = [t for t in self.topics if t not in rejected]
            await self.store.publish(cover[0], cover[1], topics, self._clock())
            self.cover = cover
        return cover

    async def own_gap(self, gap: Gap) -> None:
        """The standby's own path missed ``gap``: its coverage ends at the gap's start; the owners' paths
        cover the shards meanwhile, so this is not journalled as a gap."""
        self.own_gaps += 1
        self._log.info(
            "standby path missed an interval; the owning instances' paths cover it",
            reason=gap.reason,
            start=gap.start,
            end=gap.end,
            seconds=round(gap.seconds, 3),
            topics=len(gap.topics),
        )
        for attempt in range(5):
            try:
                await self.store.truncate(gap.start, gap.end, self._clock())
                return
            except Exception as exc:
                if attempt == 4:
                    self._log.warning(
                        "could not end the standby's coverage at its own gap",
                        error=f"{type(exc).__name__}: {exc}",
                        what_to_do="nothing unless an owner died in this interval: then back-fill it",
                    )
                    return
                await asyncio.sleep(1.0)

    async def run(self, interval: float = PUBLISH_INTERVAL) -> None:
        next_forget = self._clock()
        while True:
            try:
                await self.publish_once()
                if self._clock() >= next_forget:
                    next_forget = self._clock() + 3600.0
                    await self.store.forget(FORGET_AFTER)
            except Exception as exc:
                # the database may be restarting (the outbox says so once); a standby that cannot publish
                # simply covers nothing meanwhile, which only makes takeovers report more
                self.failures += 1
                self._log.debug("standby coverage not published", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    async def stop(self, task: asyncio.Task[None] | None) -> None:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
