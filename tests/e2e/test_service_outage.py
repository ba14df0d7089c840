"""Issue #13: a sink-wide failure is one outage that /readyz, /status and /metrics name, not a flood of row
retries or dead letters; after the fix (and a restart) the held rows go at once."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp

from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge.service import BridgeService
from gcbridge.sim.servicenow.config import SnSimConfig
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import SN_PASSWORD, SN_USER, TOPICS, ScriptedClient, make_events, service_config, wait_for


async def admin_views(service: BridgeService) -> tuple[int, dict[str, Any], dict[str, Any], str]:
    assert service.admin_url is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.admin_url}/readyz") as r:
            ready_status, ready = r.status, await r.json(content_type=None)
        async with http.get(f"{service.admin_url}/status") as r:
            status = await r.json(content_type=None)
        async with http.get(f"{service.admin_url}/metrics") as r:
            metrics = await r.text()
    return ready_status, ready, status, metrics


def paused(service: BridgeService) -> bool:
    return service.dispatcher is not None and service.dispatcher.health.paused


async def test_wrong_password_is_one_error_a_named_readiness_reason_and_prompt_delivery_after_the_fix(
    tmp_path: Path,
) -> None:
    logs = io.StringIO()
    bridge_logging.configure(level="info", stream=logs)
    wrong = ServiceNowSim(SnSimConfig(users={SN_USER: "another-password"}))
    await wrong.start("127.0.0.1", 0)
    assert wrong.base_url is not None
    events = make_events(60)
    client = ScriptedClient()
    service = BridgeService(
        service_config(tmp_path, wrong.base_url, TOPICS),
        install_signals=False,
        client_factory=lambda _c: client,
    )
    await service.start()
    try:
        for event in events:
            client.queue.put_nowait(event)
        await wait_for(lambda: paused(service), what="deliveries paused")
        await asyncio.sleep(1.5)  # a probe or two
        code, ready, status, metrics = await admin_views(service)
    finally:
        await service.stop()
        await wrong.stop()
    assert code == 503
    assert "ServiceNow rejected the credentials (HTTP 401)" in ready["reasons"]
    assert "ServiceNow is not reachable" not in ready["reasons"]  # it answered: it refused the credentials
    assert status["servicenow"]["condition"]["kind"] == "credentials"
    assert "[servicenow.auth]" in status["servicenow"]["condition"]["action"]
    assert status["outbox"]["dead"] == 0
    assert 'gcbridge_servicenow_condition{condition="credentials"} 1.0' in metrics
    lines = logs.getvalue().splitlines()
    errors = [line for line in lines if '"level":"error"' in line or '"level": "error"' in line]
    assert len(errors) == 1, errors
    assert "ServiceNow rejected the credentials (HTTP 401)" in errors[0]
    assert not [line for line in lines if "outbox delivery will be retried" in line]
    assert SN_PASSWORD not in logs.getvalue()

    # the password is fixed and the service restarted: the held rows are delivered at once
    good = ServiceNowSim(SnSimConfig(users={SN_USER: SN_PASSWORD}))
    await good.start("127.0.0.1", 0)
    assert good.base_url is not None
    service = BridgeService(
        service_config(tmp_path, good.base_url, TOPICS),
        install_signals=False,
        client_factory=lambda _c: ScriptedClient(),
    )
    await service.start()
    try:
        sink = service.sink
        assert sink is not None
        await wait_for(lambda: sink.delivered >= len(events), limit=20, what="held rows delivered")
        code, ready, status, _ = await admin_views(service)
        assert status["servicenow"]["condition"] is None
        assert status["outbox"]["dead"] == 0
    finally:
        await service.stop()
        await good.stop()


async def test_a_missing_staging_table_makes_the_service_not_ready_and_dead_letters_nothing(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    assert sn.base_url is not None
    del sn.state.transform_maps["u_genesys_interaction_import"]  # as if the staging table did not exist
    client = ScriptedClient()
    service = BridgeService(
        service_config(tmp_path, sn.base_url, TOPICS), install_signals=False, client_factory=lambda _c: client
    )
    await service.start()
    try:
        for event in make_events(40):
            client.queue.put_nowait(event)
        await wait_for(lambda: paused(service), what="deliveries paused")
        code, ready, status, metrics = await admin_views(service)
    finally:
        await service.stop()
    assert code == 503
    assert any("u_genesys_interaction_import does not exist" in reason for reason in ready["reasons"])
    assert status["servicenow"]["condition"]["kind"] == "missing_table"
    assert status["outbox"]["dead"] == 0
    assert 'gcbridge_servicenow_condition{condition="missing_table"} 1.0' in metrics
