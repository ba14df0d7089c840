"""The asyncio shell of the org world: maps loop time to simulated time, advances the world, publishes.

The world (:mod:`.org`) decides; this shell only keeps it at "now" and hands each derived notification to
the simulator's ``publish``. REST handlers call :meth:`OrgService.sync` first, so an answer always reflects
every notification published before it (and none published after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from gcbridge.sim.genesys.org import Change, Conversation, OrgSettings, OrgWorld
from gcbridge.sim.genesys.org_bodies import analytics_conversation, notifications

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], object]

#: The driver wakes at least this often (real seconds), so a changed time scale or a late loop catches up.
MAX_SLEEP = 1.0


class OrgService:
    """One org world bound to a simulator's clock and publisher.

    Simulated time is ``start + (loop time - loop time at start) * time_scale``: with ``time_scale=60`` a
    simulated hour of the org passes in a real minute.
    """

    def __init__(
        self, settings: OrgSettings, publish: Publish, loop_time: Callable[[], float], time_scale: float = 1.0
    ) -> None:
        self.settings = settings
        self.time_scale = time_scale
        self.denied_permissions: set[str] = set()
        """Permissions the simulated OAuth client lacks (their endpoints answer 403)."""
        self.query_drift = 0
        """Fault: later pages of the details query start this many rows early; ``totalHits`` is off by it."""
        self.published = 0
        self._publish = publish
        self._loop_time = loop_time
        self._origin_loop = 0.0
        self._origin = 0.0
        self._world: OrgWorld | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._analytics: dict[str, tuple[Conversation, dict[str, Any]]] = {}

    @property
    def world(self) -> OrgWorld:
        if self._world is None:
            raise RuntimeError("the org world starts with the simulator")
        return self._world

    def start(self) -> None:
        """Create the world at the current wall-clock time (or ``settings.start``) and drive it."""
        self._origin_loop = self._loop_time()
        self._origin = self.settings.start if self.settings.start is not None else time.time()
        self._world = OrgWorld(self.settings, self._origin)
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._drive())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self._origin + (self._loop_time() - self._origin_loop) * self.time_scale

    def advance_by(self, seconds: float) -> list[Change]:
        """Move simulated time ``seconds`` ahead at once (e.g. a stopped clock, ``time_scale=0``) and publish
        what happened meanwhile; returns the changes."""
        if seconds < 0:
            raise ValueError(f"time cannot go back ({seconds} s)")
        self._origin += seconds
        self._wake.set()
        return self.sync()

    def analytics_conversations(self) -> list[dict[str, Any]]:
        """Every conversation in the analytics shape (rendered again only when it changed)."""
        rendered = []
        for conv in self.world.conversations():
            cached = self._analytics.get(conv.id)
            if cached is None or cached[0] is not conv:
                cached = (conv, analytics_conversation(conv))
                self._analytics[conv.id] = cached
            rendered.append(cached[1])
        return rendered

    def sync(self) -> list[Change]:
        """Advance the world to now and publish what changed; returns the changes."""
        world = self.world
        changes = world.advance(max(world.now, self.now()))
        for change in changes:
            for topic, body in notifications(world, change):
                self._publish(topic, body)
                self.published += 1
        return changes

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.sync()
            except Exception:
                log.exception("org world failed to advance")  # keep serving; the log says why
            due = self.world.next_due()
            sleep = MAX_SLEEP
            if due is not None and self.time_scale > 0:
                sleep = min(MAX_SLEEP, max(0.0, (due - self.now()) / self.time_scale))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep + 0.001)
