"""The service's logs as an operator reads them: one line per gap, one per lifecycle change, delivery retries
summarised once a minute, and every warning or error saying what to do next."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import orjson

from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge.retry_summary import RECOVERED_MESSAGE, RETRYING_MESSAGE
from gcbridge.bridge.service import RETRY_SUMMARY_PERIOD, BridgeService
from gcbridge.genesys import LifecycleEvent
from gcbridge.genesys.events import Gap
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import TOPICS, ScriptedClient, make_events, running_service, service_config, wait_for


def lines(logs: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]


def said(logs: io.StringIO, event: str) -> list[dict[str, Any]]:
    return [line for line in lines(logs) if line["event"] == event]


async def test_one_line_per_gap_and_per_lifecycle_change(tmp_path: Path, sn: ServiceNowSim) -> None:
    logs = io.StringIO()
    bridge_logging.configure(level="info", stream=logs)
    client = ScriptedClient()
    async with running_service(tmp_path, sn, client) as service:
        now = time.time()
        # what the real client does for one outage: it announces the reconnect, then reports the gap both
        # as a lifecycle event and in the stream
        client.callback(LifecycleEvent("reconnecting", now, "ch-1", 0, "socket_dropped", ""))
        client.callback(LifecycleEvent("connected", now, "ch-2", 0, "reconnected", ""))
        client.callback(LifecycleEvent("gap", now, "", 0, "socket_dropped", "3.000s"))
        client.queue.put_nowait(Gap(now - 3.0, now, (TOPICS[0],), "socket_dropped", "test"))
        client.callback(
            LifecycleEvent("subscription_rejected", now, "", None, "missing permission", TOPICS[1])
        )
        await wait_for(lambda: service.journal.count == 1, what="the gap journalled")
    gap_lines = [line for line in lines(logs) if "gap" in line["event"]]
    assert [line["event"] for line in gap_lines] == ["gap: events may have been missed"]
    (gap,) = gap_lines
    assert gap["start_utc"].endswith("Z")
    assert gap["topics"] == 1
    assert str(service.journal.path) in gap["what_to_do"]
    # the client logs its own lifecycle lines (one per change of a path); the service only counts them
    assert not [line for line in lines(logs) if line["event"].startswith("genesys ")]
    assert [line["event"] for line in lines(logs)].count("starting") == 1
    loud = [line for line in lines(logs) if line["level"] in ("warning", "error")]
    assert loud
    assert all(line.get("what_to_do") for line in loud), [line["event"] for line in loud]


async def test_retries_are_debug_lines_summarised_once_a_period(tmp_path: Path, sn: ServiceNowSim) -> None:
    logs = io.StringIO()
    bridge_logging.configure(level="info", stream=logs)
    offset = [0.0]

    def clock() -> float:  # the service's clock; the test moves it past the summary period
        return time.time() + offset[0]

    client = ScriptedClient()
    assert sn.base_url is not None
    service = BridgeService(
        service_config(tmp_path, sn.base_url, TOPICS),
        clock=clock,
        install_signals=False,
        client_factory=lambda _c: client,
    )
    await service.start()
    try:
        assert service.sink is not None
        sink = service.sink
        sn.inject(503, count=6, path_prefix="/api/now/import/")
        for event in make_events(10):
            client.queue.put_nowait(event)
        await wait_for(lambda: sink.retried >= 6 and sink.delivered >= 10, what="retries, then deliveries")
        assert said(logs, "outbox delivery will be retried") == []  # each retry is at debug
        assert said(logs, RETRYING_MESSAGE) == []  # and the summary waits for the period's end
        await wait_for(lambda: service.retry_summary.period_start is not None, what="the first period")
        offset[0] += RETRY_SUMMARY_PERIOD + 1
        await wait_for(lambda: bool(said(logs, RETRYING_MESSAGE)), what="the retry summary")
        (summary,) = said(logs, RETRYING_MESSAGE)
        assert summary["level"] == "info"
        assert summary["retries"] == sink.retried
        assert "503" in summary["last_reason"]
        assert summary["what_to_do"]
        offset[0] += RETRY_SUMMARY_PERIOD + 1
        await wait_for(lambda: bool(said(logs, RECOVERED_MESSAGE)), what="the all-clear")
        assert len(said(logs, RETRYING_MESSAGE)) == 1
    finally:
        await service.stop()
