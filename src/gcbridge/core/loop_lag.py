"""How late the event loop has been running lately: what a frame's read time says about its send time.

A frame read at loop time ``T`` was in the socket since some earlier moment; on a loop that keeps up that is a
few milliseconds, but on a starved one (a CPU-bound neighbour, a host under load) every callback runs late
and frames wait in the kernel's buffer for as long. When such a socket fails, what followed the last frame
read was sent from about ``T - lag`` on, and a gap that starts at ``T - gap_margin`` would miss some of it.

The shell measures the loop's lateness with a timer (how much later than asked it fired) and feeds each
measurement here; :meth:`LagWindow.worst_since` answers with the largest one since a moment (pure, times
passed in). Only the largest values matter, so the window keeps a falling staircase: an entry is dropped as
soon as a later one is at least as large, and anything older than ``keep`` seconds.
"""

from __future__ import annotations

from collections import deque


class LagWindow:
    """The loop's lateness measurements of the last ``keep`` seconds, for their maximum since a moment."""

    __slots__ = ("_entries", "keep")

    def __init__(self, keep: float) -> None:
        if keep <= 0:
            raise ValueError("keep must be positive")
        self.keep = keep
        # (when measured, how late): times rising, lateness falling from the front to the back
        self._entries: deque[tuple[float, float]] = deque()

    def observe(self, at: float, late: float) -> None:
        """A timer due at ``at - late`` fired at ``at``."""
        late = max(0.0, late)
        entries = self._entries
        while entries and entries[-1][1] <= late:
            entries.pop()
        entries.append((at, late))
        while entries[0][0] < at - self.keep:
            entries.popleft()

    def worst_since(self, since: float) -> float:
        """The largest lateness measured at or after ``since`` (0 if none, or if older than ``keep``)."""
        for at, late in self._entries:  # the first entry at or after ``since`` is the largest of the rest
            if at >= since:
                return late
        return 0.0

    def __len__(self) -> int:
        return len(self._entries)
