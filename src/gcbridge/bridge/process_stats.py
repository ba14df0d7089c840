"""Counts of the service's own process that show a leak long before memory does (the soak samples them)."""

from __future__ import annotations

import asyncio
import threading


def process_counts() -> dict[str, int]:
    """``asyncio_tasks`` (of the running loop) and Python ``threads``; call from inside the event loop."""
    return {"asyncio_tasks": len(asyncio.all_tasks()), "threads": threading.active_count()}
