"""WebSocket plumbing for notification channels: open a socket, sort incoming frames by kind.

Kept apart so the hot path (``classify``) is one small function and the aiohttp details live in
one place. The documented health check is the JSON ``{"message":"ping"}`` (answered with a ``pong`` message);
aiohttp answers protocol-level pings by itself (``autoping=True``).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Final

import aiohttp

PING_MESSAGE: Final = '{"message":"ping"}'
METADATA_TOPIC: Final = "channel.metadata"
SYSTEM_PREFIX: Final = "v2.system."


class SocketOpenError(Exception):
    """The WebSocket handshake failed; ``channel_gone`` when the server said the channel does not exist."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.channel_gone = status == 404


class Frame(enum.Enum):
    EVENT = "event"
    PONG = "pong"
    HEARTBEAT = "heartbeat"
    SYSTEM = "system"
    CHANNEL_GONE = "channel_gone"  # {"result":"404", ...}
    REPLY = "reply"  # other answers to messages we sent
    MALFORMED = "malformed"


def classify(data: Any) -> Frame:
    """What kind of message a decoded frame is (never raises)."""
    if not isinstance(data, dict):
        return Frame.MALFORMED
    topic = data.get("topicName")
    if isinstance(topic, str):
        if topic == METADATA_TOPIC:
            body = data.get("eventBody")
            if isinstance(body, dict) and body.get("message") == "pong":
                return Frame.PONG
            return Frame.HEARTBEAT
        if topic.startswith(SYSTEM_PREFIX):
            return Frame.SYSTEM
        return Frame.EVENT
    if topic is not None:
        return Frame.MALFORMED
    if str(data.get("result")) == "404":
        return Frame.CHANNEL_GONE
    return Frame.REPLY


async def open_socket(
    session: aiohttp.ClientSession, url: str, *, connect_timeout: float, close_timeout: float, max_size: int
) -> aiohttp.ClientWebSocketResponse:
    """Connect to a channel's ``connectUri`` (no auth: the channel id is the capability)."""
    try:
        async with asyncio.timeout(connect_timeout):
            return await session.ws_connect(
                url,
                autoping=True,
                heartbeat=None,
                compress=0,
                max_msg_size=max_size,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout),
            )
    except aiohttp.WSServerHandshakeError as exc:
        raise SocketOpenError(f"handshake refused with HTTP {exc.status}", status=exc.status) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise SocketOpenError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
