"""Back-fill in the running service (in this process, a scripted notification client and a stand-in filler;
the real outbox, dispatcher, writer and ServiceNow simulator): a gap becomes a job whose events reach
ServiceNow, a back-filled state never overwrites a newer live one, and ``gcbridge backfill`` works with and
without a running service."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from gcbridge import _json
from gcbridge.bridge.backfill_cli import run_here
from gcbridge.bridge.config import BridgeConfig, parse_config
from gcbridge.bridge.service import BridgeService
from gcbridge.genesys.events import Event, Gap
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.integration.backfill_fakes import FakeFiller, FakeUnfillable, conversation_event

from .conftest import (
    GENESYS_SECRET,
    SN_PASSWORD,
    SN_USER,
    TOPICS,
    ScriptedClient,
    check_interactions,
    expected_interactions,
    run_gcbridge,
    wait_for,
)

QUEUE_TOPIC = TOPICS[0]
QUEUE = QUEUE_TOPIC.split(".")[3]


def config(tmp_path: Path, sn_url: str, admin_port: int = 0) -> BridgeConfig:
    return parse_config(_settings(sn_url, admin_port), base_dir=tmp_path)


def _settings(sn_url: str, admin_port: int) -> dict[str, Any]:
    return {
        "genesys": {
            "base_url": "http://127.0.0.1:9",
            "client_id": "cid",
            "client_secret": GENESYS_SECRET,
            "topics": TOPICS,
        },
        "servicenow": {
            "instance_url": sn_url,
            "auth": {"kind": "basic", "username": SN_USER, "password": SN_PASSWORD},
        },
        "outbox": {"path": "outbox.db", "dispatcher": {"backoff_initial": 0.05, "backoff_max": 0.5}},
        "backfill": {"delay": 0.0},
        "admin": {"port": admin_port},
    }


def live_event(conversation_id: str, state: str, at: float) -> Event:
    event = conversation_event(conversation_id, state, at, queue=QUEUE)
    return Event(event.topic, event.body, "2", {}, "", at, "streaming-0")


async def started(
    tmp_path: Path, sn: ServiceNowSim, client: ScriptedClient, filler: FakeFiller
) -> BridgeService:
    assert sn.base_url is not None
    service = BridgeService(
        config(tmp_path, sn.base_url),
        install_signals=False,
        client_factory=lambda _c: client,
        filler_factory=lambda _c: filler,
    )
    await service.start()
    return service


async def test_a_gap_becomes_a_job_whose_events_reach_servicenow(tmp_path: Path, sn: ServiceNowSim) -> None:
    now = time.time()
    inside = conversation_event("c-inside-gap", "disconnected", now, queue=QUEUE)
    filler = FakeFiller(
        lambda _g, _n: (
            [inside, FakeUnfillable(("v2.users.x.presence",), "missing permission p:view")],
            None,
        )
    )
    client = ScriptedClient()
    service = await started(tmp_path, sn, client, filler)
    try:
        client.queue.put_nowait(Gap(start=now - 5, end=now, topics=(QUEUE_TOPIC,), reason="socket_dropped"))
        await wait_for(
            lambda: any(r.get("correlation_id") == "c-inside-gap" for r in sn.records("interaction")),
            what="the back-filled conversation in ServiceNow",
        )
        check_interactions(sn.records("interaction"), expected_interactions([inside]))
        assert filler.gaps[0].reason == "socket_dropped"
        assert service.admin_url is not None
        journal_path = service.config.outbox.gap_log_path
        # the job's line in the journal is the last step of its attempt (after its state is stored)
        await wait_for(lambda: b'"backfill"' in journal_path.read_bytes(), what="the job's journal line")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.admin_url}/status") as r:
                doc = await r.json()
            async with http.get(f"{service.admin_url}/metrics") as r:
                metrics = await r.text()
            async with http.get(f"{service.admin_url}/") as r:
                page = await r.text()
        backfill = doc["backfill"]
        assert backfill["jobs"]["partial"] == 1
        (job,) = backfill["recent"]
        assert job["events_written"] == 1
        assert job["unfillable"][0]["reason"] == "missing permission p:view"
        assert 'gcbridge_backfill_jobs{state="partial"} 1.0' in metrics
        assert 'gcbridge_backfill_events_total{result="written"} 1.0' in metrics
        assert 'id="backfill-jobs"' in page
        journal = [_json.loads(line) for line in journal_path.read_bytes().splitlines()]
        assert [("backfill" in e) for e in journal] == [False, True]  # the gap, then its back-fill outcome
    finally:
        await service.stop()
    assert filler.closed


async def test_a_backfilled_state_does_not_overwrite_a_newer_live_one(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    now = time.time()
    # back-fill reads c-1 as connected at `now`; live says disconnected a moment later: live must win
    hold = asyncio.Event()
    filler = FakeFiller(
        lambda _g, _n: (
            [
                conversation_event("c-1", "connected", now, queue=QUEUE),
                conversation_event("c-2", "disconnected", now, queue=QUEUE),
            ],
            None,
        ),
        hold=hold,
    )
    client = ScriptedClient()
    service = await started(tmp_path, sn, client, filler)
    try:
        assert service.admin_url is not None
        url = f"{service.admin_url}/backfill"

        async def ask() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as http,
                http.post(url, json={"from": now - 60, "to": now}) as r,
            ):
                assert r.status == 200
                answer: dict[str, Any] = (await r.json())["job"]
                return answer

        request = asyncio.create_task(ask())
        await asyncio.wait_for(filler.started.wait(), 20)
        live = live_event("c-1", "disconnected", now + 1)
        client.queue.put_nowait(live)
        await wait_for(lambda: len(sn.records("interaction")) == 1, what="the live event in ServiceNow")
        hold.set()
        job = await asyncio.wait_for(request, 20)
        assert (job["state"], job["events_written"], job["events_skipped"]) == ("done", 1, 1)
        assert filler.gaps[0].topics == tuple(TOPICS)  # the service's topics when none are named
        await wait_for(lambda: len(sn.records("interaction")) == 2, what="c-2 in ServiceNow")
        c2 = conversation_event("c-2", "disconnected", now, queue=QUEUE)
        check_interactions(sn.records("interaction"), expected_interactions([live, c2]))
    finally:
        await service.stop()


async def test_gcbridge_backfill_by_hand_with_and_without_the_service(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    now = time.time()
    filler = FakeFiller(
        lambda _g, n: ([conversation_event(f"c-hand-{n}", "disconnected", now, queue=QUEUE)], None)
    )
    assert sn.base_url is not None
    # without a service: the job runs in this process, its events wait in the outbox
    doc = await run_here(config(tmp_path, sn.base_url), now - 60, now - 10, [QUEUE_TOPIC], filler=filler)
    assert (doc["state"], doc["events_written"], doc["reason"]) == ("done", 1, "manual")
    assert filler.gaps[0].topics == (QUEUE_TOPIC,)
    # with the service running (it holds the outbox): the command goes through its admin endpoint
    client = ScriptedClient()
    service = await started(tmp_path, sn, client, filler)
    try:
        await wait_for(lambda: len(sn.records("interaction")) == 1, what="the first job's event delivered")
        assert service.admin is not None
        assert service.admin.port is not None
        path = tmp_path / "gcbridge.toml"
        path.write_text(_toml(_settings(sn.base_url, service.admin.port), tmp_path))
        code, out, err = await run_gcbridge(
            "backfill",
            "--config",
            str(path),
            "--from",
            "2026-12-04T10:00:00Z",
            "--to",
            "2026-12-04T10:05:00Z",
        )
        assert code == 0, (out, err)
        assert "back-fill job 2: done" in out
        assert "written 1" in out
        await wait_for(lambda: len(sn.records("interaction")) == 2, what="the second job's event delivered")
    finally:
        await service.stop()


async def test_bad_times_are_one_clear_line(tmp_path: Path) -> None:
    code, _, err = await run_gcbridge("backfill", "--from", "yesterday", "--to", "2026-12-04T10:05:00Z")
    assert code == 2
    assert "--from 'yesterday' is not an ISO-8601 time" in err


def _toml(settings: dict[str, Any], base: Path) -> str:
    lines: list[str] = []

    def section(name: str, values: dict[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        for key, value in plain.items():
            if key == "path":
                value = str(base / value)
            lines.append(f"{key} = {_json.dumps_str(value)}")
        for key, value in values.items():
            if isinstance(value, dict):
                section(f"{name}.{key}", value)

    for name, values in settings.items():
        section(name, values)
    return "\n".join(lines) + "\n"
