"""Counts of the service's own process that show a leak long before memory does (the soak samples them)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


def process_counts() -> dict[str, Any]:
    """``asyncio_tasks`` (of the running loop), Python ``threads`` and their ``thread_names`` (sorted); call
    from inside the event loop. Every thread ``gcbridge run`` starts is named ``gcbridge-...``, so a name
    says which part a thread belongs to: ``gcbridge-outbox-writer`` (SQLite), ``gcbridge-gap-journal_0``,
    ``gcbridge-aux_N`` (the loop's default executor: DNS lookups, opening and closing the outbox; at most
    four)."""
    names = sorted(t.name for t in threading.enumerate())
    return {"asyncio_tasks": len(asyncio.all_tasks()), "threads": len(names), "thread_names": names}
