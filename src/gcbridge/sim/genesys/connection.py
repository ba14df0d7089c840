"""One server-side notification socket: frame writing, heartbeats, stall, close and abort (thin I/O shell)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from typing import Any

from aiohttp import web

from gcbridge import _json
from gcbridge.sim.genesys import messages
from gcbridge.sim.genesys.frames import text_frames


class SocketState(enum.Enum):
    OPEN = "open"
    STALLED = "stalled"
    CLOSING = "closing"
    CLOSED = "closed"


# (state, event) -> next state. An event missing from the table leaves the state unchanged: a closed socket
# cannot be stalled, a closing one cannot reopen.
_TRANSITIONS: dict[tuple[SocketState, str], SocketState] = {
    (SocketState.OPEN, "stall"): SocketState.STALLED,
    (SocketState.STALLED, "resume"): SocketState.OPEN,
    (SocketState.OPEN, "close"): SocketState.CLOSING,
    (SocketState.STALLED, "close"): SocketState.CLOSING,
    (SocketState.OPEN, "gone"): SocketState.CLOSED,
    (SocketState.STALLED, "gone"): SocketState.CLOSED,
    (SocketState.CLOSING, "gone"): SocketState.CLOSED,
}

#: Why a message was not written, by socket state (recorded in the ledger).
_NOT_SENT_REASON = {
    SocketState.STALLED: "stalled",
    SocketState.CLOSING: "closing",
    SocketState.CLOSED: "not_connected",
}


class Connection:
    """A connected WebSocket of one channel.

    Messages are written synchronously to the transport (so a publish knows at once whether it reached the
    socket) as frames of at most ``max_frame_size`` payload bytes.
    """

    def __init__(
        self,
        channel_id: str,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        max_frame_size: int,
        send_buffer_limit: int,
    ) -> None:
        self.channel_id = channel_id
        self.ws = ws
        self._transport = request.transport
        self._max_frame_size = max_frame_size
        self._send_buffer_limit = send_buffer_limit
        self.state = SocketState.OPEN
        self.frames_sent = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closers: set[asyncio.Task[Any]] = set()

    # -- state -----------------------------------------------------------------------------------------------
    def _fire(self, event: str) -> bool:
        nxt = _TRANSITIONS.get((self.state, event))
        if nxt is None:
            return False
        self.state = nxt
        return True

    @property
    def is_open(self) -> bool:
        return self.state is SocketState.OPEN

    def stall(self) -> None:
        """Go silent: no heartbeats, events, pongs or acks; the TCP connection stays open."""
        self._fire("stall")

    def resume(self) -> None:
        self._fire("resume")

    def buffered(self) -> int:
        transport = self._transport
        return 0 if transport is None or transport.is_closing() else transport.get_write_buffer_size()

    # -- output ----------------------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> str:
        """Write one JSON message; returns ``"sent"`` or why it was not written."""
        return self.send_payload(_json.dumps(message))

    def send_payload(self, payload: bytes) -> str:
        if self.state is not SocketState.OPEN:
            return _NOT_SENT_REASON[self.state]
        transport = self._transport
        if transport is None or transport.is_closing():
            self._fire("gone")
            return "not_connected"
        if transport.get_write_buffer_size() > self._send_buffer_limit:
            return "send_buffer_full"
        frames = text_frames(payload, self._max_frame_size)
        transport.writelines(frames)
        self.frames_sent += len(frames)
        return "sent"

    def start_heartbeats(self, interval: float) -> None:
        self._spawn(self._heartbeats(interval))

    async def _heartbeats(self, interval: float) -> None:
        while self.state in (SocketState.OPEN, SocketState.STALLED):
            await asyncio.sleep(interval)
            if self.state is SocketState.OPEN:
                self.send(messages.HEARTBEAT)

    # -- ending ----------------------------------------------------------------------------------------------
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame with ``code`` and wait (bounded) for the client's answer."""
        if self._fire("close"):
            await self._close_handshake(code, reason)

    def close_soon(self, code: int = 1000, reason: str = "") -> None:
        """Stop sending now and close in the background (no event is written after this call)."""
        if self._fire("close"):
            self._keep(self._close_handshake(code, reason))

    def close_later(self, delay: float, code: int, reason: str) -> None:
        """Close after ``delay`` seconds unless the socket has ended by then (socket_closing grace)."""

        async def later() -> None:
            await asyncio.sleep(delay)
            self.close_soon(code, reason)

        self._spawn(later())

    async def _close_handshake(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), timeout=5.0)
        self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        self._fire("gone")
        self.state = SocketState.CLOSED
        if self._transport is not None:
            self._transport.abort()

    def finished(self) -> None:
        """The handler's receive loop ended: stop timers."""
        self.state = SocketState.CLOSED
        for task in list(self._tasks):
            task.cancel()

    def _keep(self, coro: Any) -> None:
        # A close in progress must finish even if the receive loop ends meanwhile (finished() spares it).
        task = asyncio.get_running_loop().create_task(coro)
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
