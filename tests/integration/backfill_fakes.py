"""Stand-ins for the library's Backfiller in tests of the service's job machinery, and a log that records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gcbridge.genesys.events import Event, Gap


@dataclass
class FakeReport:
    events: int = 0
    requests: int = 0
    conversations: int = 0
    unfillable: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    read_at: float | None = None


@dataclass(frozen=True)
class FakeUnfillable:
    topics: tuple[str, ...]
    reason: str


class FakeRun:
    def __init__(self, items: list[Any], *, fail: Exception | None = None, hold: asyncio.Event | None = None):
        self.report = FakeReport()
        self._items = items
        self._fail = fail
        self._hold = hold

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._run()

    async def _run(self) -> AsyncIterator[Any]:
        for item in self._items:
            self.report.requests += 1
            if isinstance(item, Event):
                self.report.events += 1
            yield item
        if self._hold is not None:
            await self._hold.wait()
        if self._fail is not None:
            raise self._fail


class FakeFiller:
    """``plan(gap, attempt)`` -> (items, failure or None); every call is recorded in ``gaps``."""

    def __init__(
        self,
        plan: Callable[[Gap, int], tuple[list[Any], Exception | None]],
        hold: asyncio.Event | None = None,
    ) -> None:
        self._plan = plan
        self.gaps: list[Gap] = []
        self.hold = hold
        self.started = asyncio.Event()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True

    def fill(self, gap: Gap) -> FakeRun:
        self.gaps.append(gap)
        self.started.set()
        items, failure = self._plan(gap, len(self.gaps))
        return FakeRun(items, fail=failure, hold=self.hold)


def conversation_event(conversation_id: str, state: str, read_at: float, queue: str = "q1") -> Event:
    body = {
        "id": conversation_id,
        "participants": [
            {"purpose": "customer", "address": "+15550100", "state": state, "calls": [{"state": state}]}
        ],
    }
    return Event(
        topic=f"v2.routing.queues.{queue}.conversations",
        body=body,
        version="2",
        metadata={"backfill": {"source": "GET /api/v2/conversations/{id}", "read_at": read_at}},
        dedup_key="",
        received_at=read_at,
        channel_id="backfill",
    )


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, message: str, **fields: Any) -> None:
        self.lines.append((level, message, fields))

    def debug(self, message: str, **fields: Any) -> None:
        self._add("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._add("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._add("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._add("error", message, **fields)

    def find(self, text: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [line for line in self.lines if text in line[1]]
