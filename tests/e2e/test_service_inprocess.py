"""The service's wiring in one process: a scripted notification client, the real outbox, dispatcher,
writer and ServiceNow simulator. Checks delivery, gaps, status, metrics, SIGHUP-style reload and that no
secret leaks into logs, /status, /metrics or the status page."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge import service as service_module
from gcbridge.bridge.config import parse_config
from gcbridge.bridge.service import BridgeService
from gcbridge.genesys.events import Event, Gap
from gcbridge.sim.servicenow.config import SnSimConfig
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import (
    GENESYS_SECRET,
    SN_PASSWORD,
    SN_USER,
    TOPICS,
    ScriptedClient,
    check_interactions,
    expected_interactions,
    make_events,
    run_gcbridge,
    running_service,
    service_config,
    wait_for,
)


async def test_events_reach_servicenow_with_gaps_status_and_no_secrets(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    logs = io.StringIO()
    bridge_logging.configure(level="debug", stream=logs)
    client = ScriptedClient()
    async with running_service(tmp_path, sn, client) as service:
        assert client.subscribed == TOPICS
        events = make_events(120)
        sn.inject(503, count=5, path_prefix="/api/now/import/")
        for event in events[:60]:
            client.queue.put_nowait(event)
        client.queue.put_nowait(
            Gap(
                start=time.time() - 3,
                end=time.time(),
                topics=(TOPICS[0],),
                reason="socket_dropped",
                detail="test",
            )
        )
        for event in events[60:]:
            client.queue.put_nowait(event)
        assert service.sink is not None
        sink = service.sink
        await wait_for(lambda: sink.delivered >= len(events), what="all events delivered")
        check_interactions(sn.records("interaction"), expected_interactions(events))
        assert len(sn.records("u_genesys_presence")) == 1
        assert sink.retried >= 5  # the 503 burst was retried, not lost

        assert service.admin_url is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.admin_url}/status") as r:
                status_text = await r.text()
                doc = await r.json(content_type=None)
            async with http.get(f"{service.admin_url}/metrics") as r:
                metrics_text = await r.text()
            async with http.get(f"{service.admin_url}/") as r:
                page = await r.text()
            async with http.get(f"{service.admin_url}/readyz") as r:
                assert r.status == 200, await r.text()
        assert doc["events"]["received"] == len(events)
        assert doc["gaps"]["count"] == 1
        assert doc["gaps"]["recent"][0]["reason"] == "socket_dropped"
        assert doc["deliveries"]["delivered"] >= len(events)
        assert (
            'gcbridge_events_received_total{family="v2.routing.queues.{id}.conversations"} 90.0'
            in metrics_text
        )
        assert 'gcbridge_gaps_total{reason="socket_dropped"} 1.0' in metrics_text
        journal = service.config.outbox.gap_log_path.read_text()
        # `gcbridge status` asks the same endpoint from a shell.
        code, cli_status, _ = await run_gcbridge("status", "--url", service.admin_url)
        assert code == 0, cli_status
        assert "state running  ready True" in cli_status
        assert f"events in {len(events)}" in cli_status
        assert '"reason":"socket_dropped"' in journal
    assert client.closed
    assert service.lifecycle.state == "stopped"
    for text in (logs.getvalue(), status_text, metrics_text, page, journal, cli_status):
        assert GENESYS_SECRET not in text
        assert SN_PASSWORD not in text


async def test_with_oauth_no_token_or_client_secret_leaks(tmp_path: Path) -> None:
    """ServiceNow over OAuth (password grant): the tokens the instance issued, the client secret and the
    password appear in none of the logs, /status, /metrics or the status page."""
    client_secret, password = "SNCLIENT-9c1d-do-not-print", "SNOAUTHPW-4e7a-do-not-print"
    issued: list[str] = []

    def token() -> str:
        issued.append(f"SNTOKEN-{len(issued)}-{uuid.uuid4().hex}")
        return issued[-1]

    sim = ServiceNowSim(
        SnSimConfig(
            users={"oauth-user": password},
            oauth_clients={"bridge-client": client_secret},
        )
    )
    sim.state.issuer._new_token = token  # recognisable tokens to search the outputs for
    await sim.start("127.0.0.1", 0)
    logs = io.StringIO()
    bridge_logging.configure(level="debug", stream=logs)
    client = ScriptedClient()
    assert sim.base_url is not None
    cfg = service_config(tmp_path, sim.base_url, TOPICS)
    raw = cfg.model_dump(mode="python")
    raw["genesys"]["client_secret"] = GENESYS_SECRET
    raw["servicenow"]["auth"] = {
        "kind": "oauth",
        "grant": "password",
        "client_id": "bridge-client",
        "client_secret": client_secret,
        "username": "oauth-user",
        "password": password,
    }
    service = BridgeService(
        parse_config(raw, base_dir=tmp_path), install_signals=False, client_factory=lambda _c: client
    )
    await service.start()
    try:
        events = make_events(30)
        for event in events:
            client.queue.put_nowait(event)
        assert service.sink is not None
        sink = service.sink
        await wait_for(lambda: sink.delivered >= len(events), what="all events delivered over OAuth")
        outputs = [logs.getvalue()]
        async with aiohttp.ClientSession() as http:
            for path in ("/status", "/metrics", "/"):
                async with http.get(f"{service.admin_url}{path}") as r:
                    outputs.append(await r.text())
    finally:
        await service.stop()
        await sim.stop()
    assert issued, "no token was issued: the test did not exercise OAuth"
    assert any(r.path == "/oauth_token.do" for r in sim.requests)
    text = "\n".join(outputs)
    for secret in (client_secret, password, GENESYS_SECRET, *issued):
        assert secret not in text


async def test_restart_journals_the_downtime_and_reload_applies_topic_changes(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    assert sn.base_url is not None
    config_file = tmp_path / "gcbridge.toml"
    cfg = service_config(tmp_path, sn.base_url, TOPICS)
    first = ScriptedClient()
    service = BridgeService(cfg, install_signals=False, client_factory=lambda _c: first)
    await service.start()
    await service.stop()

    second = ScriptedClient()
    config_file.write_text(
        '[genesys]\nbase_url = "http://127.0.0.1:9"\nclient_id = "cid"\n'
        f'client_secret = "{GENESYS_SECRET}"\ntopics = ["{TOPICS[0]}", "v2.users.u2.presence"]\n'
        f'[servicenow]\ninstance_url = "{sn.base_url}"\n'
        f'[servicenow.auth]\nkind = "basic"\nusername = "{SN_USER}"\npassword = "{SN_PASSWORD}"\n'
        '[outbox]\npath = "outbox.db"\n[admin]\nport = 0\n'
    )
    service = BridgeService(
        cfg, config_path=config_file, install_signals=False, client_factory=lambda _c: second
    )
    await service.start()
    try:
        assert service.journal.count == 1
        assert service.journal.recent[-1]["reason"] == "service_down"
        await service.reload_topics()
        assert ("subscribe", ["v2.users.u2.presence"]) in second.calls
        assert ("unsubscribe", [TOPICS[1]]) in second.calls
        assert service.topics == [TOPICS[0], "v2.users.u2.presence"]
        config_file.write_text("[genesys\n")  # a broken file is refused; the topics stay
        await service.reload_topics()
        assert service.topics == [TOPICS[0], "v2.users.u2.presence"]
    finally:
        await service.stop()


async def test_readyz_follows_servicenow_availability(tmp_path: Path, sn: ServiceNowSim) -> None:
    client = ScriptedClient()
    async with running_service(tmp_path, sn, client) as service:
        assert service.sink is not None
        sink = service.sink
        events = make_events(6)
        client.queue.put_nowait(events[0])
        await wait_for(lambda: sink.delivered >= 1, what="first delivery")
        sn.inject(503, count=1000, path_prefix="/api/now/import/")  # the load balancer says "unavailable"
        for event in events[1:]:
            client.queue.put_nowait(event)
        await wait_for(lambda: sink.reachable is False, what="ServiceNow marked unreachable")
        async with aiohttp.ClientSession() as http, http.get(f"{service.admin_url}/readyz") as r:
            assert r.status == 503
            assert "ServiceNow is not reachable" in (await r.json())["reasons"]
        sn.state.faults.clear()
        await wait_for(lambda: sink.delivered >= len(events), what="deliveries after recovery")
        async with aiohttp.ClientSession() as http, http.get(f"{service.admin_url}/readyz") as r:
            assert r.status == 200


class TwoShardClient(ScriptedClient):
    """Two shards; the test sets the state of the second one's channel."""

    second_state = "live"

    def stats(self) -> dict[str, Any]:
        doc = super().stats()
        doc["channels"] = [
            {**doc["channels"][0], "state": "live"},
            {**doc["channels"][0], "id": "streaming-1-def", "shard": 1, "state": self.second_state},
        ]
        return doc


async def test_readyz_needs_every_shard_live(tmp_path: Path, sn: ServiceNowSim) -> None:
    client = TwoShardClient()
    async with running_service(tmp_path, sn, client) as service:
        assert service.sink is not None
        sink = service.sink
        client.queue.put_nowait(make_events(1)[0])
        await wait_for(lambda: sink.delivered >= 1, what="ServiceNow answered")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.admin_url}/readyz") as r:
                assert r.status == 200, await r.text()
            client.second_state = "backoff"  # its socket dropped; the client is waiting to reconnect
            async with http.get(f"{service.admin_url}/readyz") as r:
                assert r.status == 503
                assert (await r.json())["reasons"] == ["shards without a live socket: [1]"]
            # the gauges follow within the snapshot interval
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                async with http.get(f"{service.admin_url}/metrics") as r:
                    text = await r.text()
                if "gcbridge_shards_live 1.0" in text or loop.time() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert "gcbridge_shards_live 1.0" in text
        assert "gcbridge_shards 2.0" in text
        assert "gcbridge_ready 0.0" in text


async def test_a_quiet_bridge_probes_servicenow_and_a_hibernating_instance_is_not_ready(
    tmp_path: Path, sn: ServiceNowSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No events, so no deliveries to judge by: the service's own probe decides, and the 200 HTML page of a
    hibernating instance is not an answer from ServiceNow."""
    monkeypatch.setattr(service_module, "SERVICENOW_PROBE_INTERVAL", 0.3)
    sn.hibernate(True)
    client = ScriptedClient()
    async with running_service(tmp_path, sn, client) as service:
        assert service.sink is not None
        sink = service.sink
        await wait_for(lambda: sink.reachable is False, what="the probe found the instance asleep")
        async with aiohttp.ClientSession() as http, http.get(f"{service.admin_url}/readyz") as r:
            assert r.status == 503
            assert "ServiceNow is not reachable" in (await r.json())["reasons"]
        sn.hibernate(False)
        await wait_for(lambda: sink.reachable is True, what="the probe found the instance awake")
        async with aiohttp.ClientSession() as http, http.get(f"{service.admin_url}/readyz") as r:
            assert r.status == 200, await r.text()
        probes = [r for r in sn.requests if r.path == "/api/now/table/sys_user"]
        assert probes
        assert all(r.user is None for r in probes)  # the probe sends no credentials
        assert sink.delivered == 0


async def test_an_event_the_mapping_cannot_encode_is_still_stored_and_delivered(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    client = ScriptedClient()
    async with running_service(tmp_path, sn, client) as service:
        presence = TOPICS[1]
        body = {"presenceDefinition": {"systemPresence": "Available"}, "huge": 2**70}  # beyond orjson
        client.queue.put_nowait(Event(presence, body, "2", {}, "k-huge", time.time()))
        assert service.sink is not None
        sink = service.sink
        await wait_for(lambda: sink.delivered + sink.rejected >= 1, what="the odd event handled")
        assert (sink.delivered, sink.rejected) == (1, 0), sink.last_error
        assert len(sn.records("u_genesys_presence")) == 1


class DrainingClient(ScriptedClient):
    """Closes like NotificationClient: a socket that did not answer the closing ping is reported as a gap
    up to when the close began (``drained_at``), on the stream, before its end."""

    drained_at: float = 0.0

    async def aclose(self) -> None:
        self.drained_at = time.time()
        self.queue.put_nowait(
            Gap(
                start=self.drained_at - 2.0,
                end=self.drained_at,
                topics=(TOPICS[0],),
                reason="unproven_at_close",
            )
        )
        await super().aclose()


async def test_a_stop_journals_the_gap_of_the_close_and_marks_alive_before_it(
    tmp_path: Path, sn: ServiceNowSim
) -> None:
    # Together they leave nothing out: the close's gap runs to when the close began, and the next start's
    # service_down gap from the alive mark, which is no later than that.
    client = DrainingClient()
    async with running_service(tmp_path, sn, client) as service:
        pass
    assert service.journal.recent[-1]["reason"] == "unproven_at_close"
    last = service.journal.last_run()
    assert last is not None
    assert last.clean
    assert last.alive_at <= client.drained_at


async def test_a_periodic_alive_mark_in_flight_when_the_stop_begins_does_not_replace_the_stops_mark(
    tmp_path: Path, sn: ServiceNowSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refresh loop writes the alive mark every second on a worker thread, which cancelling the loop
    # does not stop; one still being written when the stop writes its clean mark must not land after it
    # (the next start would report a crash, and a later start of the downtime gap).
    client = ScriptedClient()
    writes: list[asyncio.Task[None]] = []
    async with running_service(tmp_path, sn, client) as service:
        journal = service.journal
        write = journal.mark_alive
        periodic_in_flight = asyncio.Event()
        clean_written = asyncio.Event()

        async def periodic_write(now: float) -> None:
            with contextlib.suppress(TimeoutError):
                # lands after the stop's mark if the stop does not wait for it (bounded: one that waits
                # cannot write its own first)
                await asyncio.wait_for(clean_written.wait(), 0.5)
            await write(now)

        async def mark_alive(now: float, *, clean: bool = False) -> None:
            if clean:
                await write(now, clean=True)
                clean_written.set()
                return
            writes.append(asyncio.create_task(periodic_write(now)))
            periodic_in_flight.set()
            await asyncio.shield(writes[-1])  # like a thread: cancelling the caller does not stop it

        monkeypatch.setattr(journal, "mark_alive", mark_alive)
        await asyncio.wait_for(periodic_in_flight.wait(), 10)
    await asyncio.gather(*writes)
    last = service.journal.last_run()
    assert last is not None
    assert last.clean
