"""Stop a long-running command on SIGINT or SIGTERM, whatever signal disposition it inherited.

Python raises ``KeyboardInterrupt`` on SIGINT only when SIGINT was not ignored at interpreter start, and a
POSIX shell starts the background jobs of a script (``gcbridge sim genesys &``) with SIGINT ignored: such a
process would never stop on Ctrl-C or ``kill -INT``. ``loop.add_signal_handler`` replaces whatever
disposition was inherited, so the long-running commands (``gcbridge run``, ``gcbridge demo``, ``gcbridge
sim …``) take their stop requests from :class:`StopSignals` instead of relying on ``KeyboardInterrupt``.

A second SIGINT while stopping (a user pressing Ctrl-C again) asks to *hurry*: each command documents what it
then skips. A repeated SIGTERM does not hurry, because supervisors repeat it and expect the graceful stop they
asked for.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

__all__ = ["STOP_SIGNALS", "TRANSITIONS", "Action", "Phase", "StopSignals", "next_phase", "unless_set"]

T = TypeVar("T")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

Phase = Literal["running", "stopping", "hurrying"]
Action = Literal["stop", "hurry", "none"]

TRANSITIONS: Final[dict[tuple[Phase, signal.Signals], tuple[Phase, Action]]] = {
    ("running", signal.SIGINT): ("stopping", "stop"),
    ("running", signal.SIGTERM): ("stopping", "stop"),
    ("stopping", signal.SIGINT): ("hurrying", "hurry"),
    ("stopping", signal.SIGTERM): ("stopping", "none"),
    ("hurrying", signal.SIGINT): ("hurrying", "none"),
    ("hurrying", signal.SIGTERM): ("hurrying", "none"),
}


def next_phase(phase: Phase, sig: signal.Signals) -> tuple[Phase, Action]:
    """The phase after ``sig`` arrives in ``phase``, and what the command must do about it."""
    try:
        return TRANSITIONS[(phase, sig)]
    except KeyError:
        raise ValueError(f"{sig.name} is not a stop signal") from None


class StopSignals:
    """SIGINT and SIGTERM as two events of the running loop: :attr:`stop` is set by the first signal,
    :attr:`hurry` by a second SIGINT.

    Use it inside the loop, around the command's whole life (start-up included, so that an early signal is not
    lost)::

        with StopSignals() as signals:
            await server.start()
            await signals.stop.wait()
            await signals.unless_hurried(server.stop())

    ``on_signal(sig, action)`` is called for every stop signal (to log it, say). Leaving the ``with`` block
    gives SIGINT and SIGTERM back the dispositions they had before.
    """

    def __init__(self, on_signal: Callable[[signal.Signals, Action], None] | None = None) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self.phase: Phase = "running"
        self.received: list[signal.Signals] = []
        self._on_signal = on_signal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.uninstall()

    def install(self) -> None:
        """Handle SIGINT and SIGTERM on the running loop from now on (what entering the block does)."""
        loop = asyncio.get_running_loop()
        self._previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        try:
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self.deliver, sig)
        except NotImplementedError:  # no loop signal handlers (Windows): Ctrl-C stays a KeyboardInterrupt
            return
        self._loop = loop

    def uninstall(self) -> None:
        """Give SIGINT and SIGTERM back their earlier dispositions (what leaving the block does)."""
        if self._loop is not None and not self._loop.is_closed():
            for sig in STOP_SIGNALS:
                # Removing leaves Python's defaults, not the dispositions from before.
                self._loop.remove_signal_handler(sig)
                previous = self._previous.get(sig)
                if previous is not None:  # None: set outside Python, nothing to restore
                    signal.signal(sig, previous)
        self._loop = None

    def deliver(self, sig: signal.Signals) -> None:
        """Act on ``sig`` as if it had arrived (what the installed handlers call)."""
        self.phase, action = next_phase(self.phase, sig)
        self.received.append(sig)
        if action == "stop":
            self.stop.set()
        elif action == "hurry":
            self.stop.set()
            self.hurry.set()
        if self._on_signal is not None:
            self._on_signal(sig, action)

    async def unless_hurried(self, stopping: Awaitable[T]) -> tuple[bool, T | None]:
        """Await ``stopping`` (a graceful stop) unless a second SIGINT asks to hurry first; see
        :func:`unless_set`."""
        return await unless_set(self.hurry, stopping)


async def unless_set(event: asyncio.Event, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Await ``work`` unless ``event`` is set first (or already); then cancel it.

    Returns ``(True, result)`` when it finished and ``(False, None)`` when it was cut short; its own errors
    propagate, and cancelling the caller cancels ``work`` too.
    """
    task = asyncio.ensure_future(work)
    if event.is_set():
        task.cancel()
    waiting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # its clean-up has run when the caller resumes
        raise
    finally:
        waiting.cancel()
    if not task.done():
        task.cancel()
    try:
        return True, await task
    except asyncio.CancelledError:
        if not event.is_set():
            raise
        return False, None
