"""Server-side WebSocket text frames, fragmented when large (RFC 6455 section 5.4; pure).

aiohttp's writer always sets FIN, so a server built on it never fragments. Real servers do, and clients that
read into small buffers have mishandled it (spec 2.4), so the simulator writes its data frames itself: a text
frame without FIN, continuation frames, and a final continuation frame with FIN. Server frames are unmasked.
"""

from __future__ import annotations

import struct

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
_FIN = 0x80


def frame(payload: bytes, opcode: int, *, fin: bool) -> bytes:
    """One unmasked frame."""
    first = (_FIN if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def text_frames(payload: bytes, max_frame_size: int) -> list[bytes]:
    """The frames of one text message whose payload is at most ``max_frame_size`` bytes per frame."""
    if len(payload) <= max_frame_size:
        return [frame(payload, OP_TEXT, fin=True)]
    chunks = [payload[i : i + max_frame_size] for i in range(0, len(payload), max_frame_size)]
    last = len(chunks) - 1
    return [
        frame(chunk, OP_TEXT if i == 0 else OP_CONTINUATION, fin=i == last) for i, chunk in enumerate(chunks)
    ]
