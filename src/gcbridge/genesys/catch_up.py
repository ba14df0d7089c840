"""When a socket reader has caught up after back-pressure, told from its own receives (no peeking into
aiohttp or the kernel).

While a slow consumer holds the reader back, what the server sends waits unread in aiohttp's queue, the
kernel's socket buffer and the server; a drop then loses it, so the socket's last good moment stays at the
start of the hold (:meth:`gcbridge.core.health.HealthMonitor.hold`) until the reader has read all of it.

How the reader knows, conservatively: count the event loop's turns while one ``receive()`` waits. A
receive that returns without waiting took a message aiohttp had queued. One that waited suspended on an
empty queue (aiohttp reads from the socket again by then); the loop's next turn polls the socket at once
(something is ready to run, so the poll does not block), and if the kernel held bytes, the reader runs again
on the turn after: two turns. Three turns or more mean that poll found nothing: at that moment neither
aiohttp nor the kernel held anything unread, and what remained was in flight (which ``gap_margin`` covers).
Two such *quiet* receives in a row are asked for, so that a layer in between (TLS) that hands its data over
a turn later is drained too. A busy socket may stay suspect for longer than it needs: that moves a later
gap's start earlier, never hides a loss.
"""

from __future__ import annotations

import asyncio

# turns of the loop a quiet receive spans at least, and how many quiet receives in a row close a backlog
QUIET_TURNS = 3
QUIET_RECEIVES = 2


class CatchUp:
    """One reader's watch over its backlog. :meth:`held` when back-pressure begins; while :attr:`open`,
    call :meth:`before_receive` and :meth:`after_receive` around each receive: the latter returns True once,
    when the reader has caught up (the backlog is then closed)."""

    __slots__ = ("_handle", "_loop", "_quiet", "_turns", "open")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.open = False
        self._quiet = 0
        self._turns = 0
        self._handle: asyncio.Handle | None = None

    def held(self) -> None:
        """The reader waits for the consumer: what arrives meanwhile waits unread."""
        self.open = True
        self._quiet = 0

    def before_receive(self) -> None:
        self._turns = 0
        self._handle = self._loop.call_soon(self._turn)

    def after_receive(self) -> bool:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._quiet = self._quiet + 1 if self._turns >= QUIET_TURNS else 0
        if self._quiet < QUIET_RECEIVES:
            return False
        self.open = False
        return True

    def _turn(self) -> None:
        self._turns += 1
        # enough turns seen: stop counting, so that a quiet socket does not keep the loop spinning
        self._handle = self._loop.call_soon(self._turn) if self._turns < QUIET_TURNS else None


__all__ = ["QUIET_RECEIVES", "QUIET_TURNS", "CatchUp"]
