"""Loopback ports for tests that need one nobody answers on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections for as long as the block runs.

    The socket stays bound without listening, so connecting is refused and no other process can take the
    port meanwhile: a port picked and closed before use may be in use by someone else a moment later on a
    machine shared by parallel test runs.
    """
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])
