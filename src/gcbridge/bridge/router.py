"""The ServiceNow side of the bridge: its ``[servicenow]`` config section and the outbox sink.

:class:`Router` is what the outbox dispatcher delivers to (a :class:`~gcbridge.outbox.base.Sink`): it decodes
the stored event, maps it to a row with the compiled mapping and hands the row to the ServiceNow
:class:`~gcbridge.servicenow.sinks.Writer`. It lives here because it joins three parts that know nothing of
each other: the outbox, the Genesys event shape and the writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import aiohttp
from pydantic import Field

from gcbridge.bridge.mapping import Mapping, MappingConfig, Unmappable, view_from_payload
from gcbridge.core.outcome import Delivered, Outcome, Reject
from gcbridge.outbox.base import OutboxRow
from gcbridge.servicenow.config import ServiceNowConfig
from gcbridge.servicenow.rows import Row
from gcbridge.servicenow.sinks import build_writer

__all__ = ["Router", "RowWriter", "ServiceNowSection", "build_router"]


class ServiceNowSection(ServiceNowConfig):
    """The ``[servicenow]`` table of the service's file: the writer's settings plus ``[servicenow.mapping]``
    (compiled once, when the section is validated)."""

    mapping: MappingConfig = Field(default_factory=MappingConfig)


class RowWriter(Protocol):
    """What the router needs of the ServiceNow writer."""

    async def write(self, row: Row) -> Outcome: ...

    async def close(self) -> None: ...


class Router:
    """The outbox sink: decode the row, map it by topic, hand it to the writer.

    Undecodable payloads, topics without a rule and events without their key are rejected to the dead-letter
    list with the reason.
    """

    def __init__(self, mapping: Mapping, writer: RowWriter, sinks: frozenset[str] | None = None) -> None:
        if sinks is not None:
            missing = {r.sink for r in mapping.rules} - sinks
            if missing:
                raise ValueError(f"Router: no sink for {sorted(missing)} (rules use them)")
        self.mapping = mapping
        self.writer = writer

    async def deliver(self, row: OutboxRow) -> Outcome:
        try:
            view = view_from_payload(row.payload, row.topic, row.dedup_key, row.received_at)
        except ValueError as exc:
            return Reject(f"outbox row {row.id}: {exc}")
        record = self.mapping.map_event(view)
        if isinstance(record, Unmappable):
            return Reject(record.reason)
        outcome = await self.writer.write(record.row)
        if isinstance(outcome, Delivered) and record.notes:
            notes = "; ".join(record.notes)
            return Delivered(f"{outcome.detail} ({notes})"[:1000] if outcome.detail else notes[:1000])
        return outcome

    async def close(self) -> None:
        await self.writer.close()


def build_router(
    config: ServiceNowConfig,
    session: aiohttp.ClientSession,
    *,
    mapping: Mapping | None = None,
    wall_clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    on_request: Callable[[str, float], None] | None = None,
) -> Router:
    """The outbox sink for ``config``: the ServiceNow writer (see
    :func:`~gcbridge.servicenow.sinks.build_writer` for ``session`` and the clocks) behind ``mapping``
    (default: the section's compiled mapping, or the built-in rules for a bare ``ServiceNowConfig``)."""
    if mapping is None:
        section = config.mapping if isinstance(config, ServiceNowSection) else MappingConfig()
        mapping = section.compiled
    writer = build_writer(config, session, wall_clock=wall_clock, monotonic=monotonic, on_request=on_request)
    return Router(mapping, writer, frozenset(writer.sinks))
