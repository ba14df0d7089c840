"""The service as a real subprocess (``python -m gcbridge run``) against both simulators.

Faults on the way (a planned ``socket_closing``, an abrupt socket drop, a ServiceNow 503 burst), a SIGTERM
mid-stream, a restart, then the books are balanced:

* every event the simulator wrote to one of the bridge's sockets is in the outbox, except events inside a
  gap that the bridge itself reported (the gap journal);
* every outbox row was delivered, none is dead;
* ServiceNow holds exactly one interaction per conversation, and its fields are the state of the last event
  of that conversation the bridge received;
* no secret appears in the logs, ``/status``, ``/metrics`` or the status page.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gcbridge.genesys.events import Event
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .bridge_process import GENESYS_CLIENT, Bridge, started_sims, write_service_config
from .conftest import (
    GENESYS_SECRET,
    SN_PASSWORD,
    check_interactions,
    expected_interactions,
    run_gcbridge,
    wait_for,
)

pytestmark = pytest.mark.slow

QUEUES = [f"5e1f{i:04d}-0000-4000-8000-00000000{i:04d}" for i in range(1, 4)]
USERS = [f"a9e7{i:04d}-0000-4000-8000-00000000{i:04d}" for i in range(1, 4)]
TOPICS = [f"v2.routing.queues.{q}.conversations" for q in QUEUES] + [f"v2.users.{u}.presence" for u in USERS]
RATE = 40.0  # events per second
GAP_SLACK = 0.05  # seconds of clock rounding around a reported gap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim], admin_port: int = 0) -> Path:
    """A config file for both simulators. The admin endpoint takes any free port unless ``admin_port`` is
    given (the ``outbox`` commands find a running service through the configured port): a port picked here
    and bound later by the service could be taken meanwhile by another process on a shared machine."""
    gsim, snsim = sims
    assert snsim.base_url is not None
    return write_service_config(
        tmp_path, gsim.base_url, GENESYS_CLIENT, TOPICS, snsim.base_url, admin_port=admin_port
    )


def balance_books(
    tmp_path: Path,
    gsim: GenesysSim,
    snsim: ServiceNowSim,
    final_seq: int,
    rows: list[tuple[bytes, int]] | None = None,
) -> list[dict[str, Any]]:
    """Every event published to a bridge channel (whether or not a socket was there to take it) is stored
    once and delivered, or inside a reported gap; ServiceNow holds one record per conversation with the last
    received state. ``rows``: the outbox's (payload, state) in id order, read from the SQLite outbox under
    ``tmp_path`` when not given. Returns the gaps."""
    sent = [r for r in gsim.ledger if r.deliveries]
    assert len(sent) > 100, f"too little traffic reached the bridge ({len(sent)} of {final_seq})"
    if rows is None:
        rows = (
            sqlite3.connect(tmp_path / "state" / "outbox.db")
            .execute("SELECT payload, state FROM outbox ORDER BY id")
            .fetchall()
        )
    received_seq: dict[int, int] = {}
    received_events: list[Event] = []  # in outbox order, which is the delivery order per conversation
    for payload, state in rows:
        data = orjson.loads(payload)
        seq = data["metadata"]["simSequence"]
        assert seq not in received_seq, f"event {seq} stored twice"
        received_seq[seq] = state
        received_events.append(
            Event(
                topic=data["topicName"],
                body=data["eventBody"],
                version=data.get("version"),
                metadata=data["metadata"],
                dedup_key=data["dedupKey"],
                received_at=data["receivedAt"],
            )
        )
    assert all(state == 2 for state in received_seq.values()), "rows not delivered (pending or dead)"

    journal = tmp_path / "state" / "gcbridge-gaps.jsonl"  # written at the first gap
    gaps = [orjson.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []

    def in_gap(published_at: float) -> bool:
        return any(g["start"] - GAP_SLACK <= published_at <= g["end"] + GAP_SLACK for g in gaps)

    missing = [r.seq for r in sent if r.seq not in received_seq and not in_gap(r.published_at)]
    assert not missing, f"{len(missing)} events lost outside any reported gap: {missing[:10]}; gaps {gaps}"
    lost_in_gaps = [r.seq for r in sent if r.seq not in received_seq]
    # The gaps must not be wider than the events they excuse: at RATE events per second, a gap of S seconds
    # can hide about RATE * S events. Measured against the gaps' own length, not the run's, because a restart
    # on a loaded machine takes as long as it takes.
    gap_seconds = sum(g["end"] - g["start"] + 2 * GAP_SLACK for g in gaps)
    assert len(lost_in_gaps) <= 1.5 * RATE * gap_seconds + 20, (
        f"implausibly many events lost in gaps: {len(lost_in_gaps)} in {gap_seconds:.1f} s of gaps"
    )

    check_interactions(snsim.records("interaction"), expected_interactions(received_events))
    users_seen = {
        r.topic.split(".")[2] for r in gsim.ledger if r.seq in received_seq and "presence" in r.topic
    }
    assert len(snsim.records("u_genesys_presence")) == len(users_seen)
    return gaps


@pytest.fixture
async def sims() -> AsyncIterator[tuple[GenesysSim, ServiceNowSim]]:
    async with started_sims(11) as both:
        yield both


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def check_metrics_of_the_second_run(text: str) -> None:
    """Every metric the operator was promised is exported, with values that match what happened."""
    got = samples(text)

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in got, f"{name}{labels} missing from /metrics"
        return got[key]

    queue_family = "v2.routing.queues.{id}.conversations"
    assert value("gcbridge_events_received_total", family=queue_family) > 0
    assert value("gcbridge_events_received_total", family="v2.users.{id}.presence") > 0
    assert value("gcbridge_gaps_total", reason="service_down") == 1  # the SIGTERM restart
    assert value("gcbridge_gap_seconds_total") >= 1.0  # the service was down for over a second
    assert value("gcbridge_token_refreshes_total") >= 1
    assert value("gcbridge_channels_in_use") >= 1
    for state in ("pending", "in_flight", "dead"):
        assert value("gcbridge_outbox_depth", state=state) == 0  # settled
    assert value("gcbridge_outbox_oldest_pending_age_seconds") == 0
    assert value("gcbridge_deliveries_total", result="delivered") > 0
    assert value("gcbridge_deliveries_total", result="rejected") == 0
    assert value("gcbridge_servicenow_delivery_seconds_count") >= value(
        "gcbridge_deliveries_total", result="delivered"
    )
    requests = sum(v for (name, _), v in got.items() if name == "gcbridge_servicenow_request_seconds_count")
    assert requests >= value("gcbridge_deliveries_total", result="delivered")  # one or more per delivery
    # Declared even when this run had none (the first run's rotation and reconnect are checked above).
    for family in ("gcbridge_reconnects", "gcbridge_rotations"):
        assert f"# TYPE {family}_total counter" in text


def check_log_context(logs: str) -> None:
    """One JSON object per line; lifecycle lines name their channel and shard, retries their topic and
    attempt."""
    lines = [orjson.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert lines
    # the client's own lines, one per change of a path, rendered by the service with their fields
    lifecycle = [e for e in lines if e["event"].startswith("notification path")]
    assert any("rotated" in e["event"] for e in lifecycle), "no rotation logged"
    assert any("lost its connection" in e["event"] for e in lifecycle), "no reconnect logged"
    assert all(e.get("channel_id") and e.get("path") for e in lifecycle), lifecycle[:3]
    retries = [e for e in lines if e["event"] == "outbox delivery will be retried"]
    assert retries, "the ServiceNow 503 burst caused no logged retry"
    assert all(e["topic"] and e["attempt"] >= 1 for e in retries), retries[:3]
    assert all(e["level"] == "debug" for e in retries), retries[:3]  # summarised at info once a minute


async def test_sigterm_restart_faults_every_event_exactly_once(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, snsim = sims
    config = write_config(tmp_path, sims)
    bridge = Bridge(config, tmp_path / "bridge.log")

    await bridge.start()
    await bridge.wait_ready()
    gsim.start_traffic(RATE, TOPICS)
    await asyncio.sleep(2)
    assert await gsim.socket_closing(grace=5.0), "no socket to send socket_closing to"
    await asyncio.sleep(2)
    await gsim.drop_socket()
    snsim.inject(503, count=8, path_prefix="/api/now/import/")
    # The client's lifecycle reaches the metrics: the planned rotation and the reconnect after the drop.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        text = await bridge.fetch("/metrics")
        if "gcbridge_rotations_total{" in text and "gcbridge_reconnects_total{" in text:
            break
        assert loop.time() < deadline, f"no rotation/reconnect in the metrics:\n{text}"
        await asyncio.sleep(0.3)
    assert "gcbridge_token_refreshes_total 1.0" in text
    # SIGTERM while events are still flowing.
    assert await bridge.terminate() == 0, bridge.tail()
    await asyncio.sleep(1)  # events published now reach no one: the restart gap accounts for them

    await bridge.start()
    await bridge.wait_ready()
    # SIGHUP applies a changed topic list without a restart.
    extra_topic = f"v2.users.{USERS[0]}.routingStatus"
    text = config.read_text()
    config.write_text(text.replace(f'"{TOPICS[-1]}"]', f'"{TOPICS[-1]}", "{extra_topic}"]'))
    assert bridge.proc is not None
    bridge.proc.send_signal(signal.SIGHUP)
    await wait_for(lambda: extra_topic in gsim.core.channels.subscribed_topics(), what="SIGHUP topic added")
    await asyncio.sleep(3)
    await gsim.stop_traffic()
    final_seq = len(gsim.ledger)

    await bridge.wait_settled()
    async with aiohttp.ClientSession() as http:
        pages = {}
        for path in ("/status", "/metrics", "/"):
            async with http.get(f"{bridge.url}{path}") as r:
                pages[path] = await r.text()
    assert await bridge.terminate() == 0, bridge.tail()

    gaps = balance_books(tmp_path, gsim, snsim, final_seq)
    assert any(g["reason"] == "service_down" for g in gaps), gaps
    check_metrics_of_the_second_run(pages["/metrics"])

    logs = bridge.log.read_text(errors="replace")
    assert '"event":"draining"' in logs
    check_log_context(logs)
    for text in (logs, *pages.values()):
        assert GENESYS_SECRET not in text
        assert SN_PASSWORD not in text


async def test_wrong_secret_exits_with_a_clear_message(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    config = write_config(tmp_path, sims)
    env = {"GCBRIDGE_GENESYS__CLIENT_SECRET": "WRONG-SECRET-e2e"}
    code, out, err = await run_gcbridge("run", "--config", str(config), env=env, within=90)
    logs = out + err
    assert code == 1, logs[-3000:]
    assert "invalid_client" in logs
    assert "WRONG-SECRET-e2e" not in logs


async def test_sigterm_interrupts_a_start_that_cannot_finish(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, _ = sims
    gsim.fail_next_token(n=10_000, status=503)  # the token endpoint keeps failing: start() keeps retrying
    config = write_config(tmp_path, sims)
    bridge = Bridge(config, tmp_path / "b.log")
    await bridge.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:  # the admin endpoint is up and says the service is still starting
        doc = await bridge.status()
        if doc is not None and doc["state"] == "starting":
            break
        assert loop.time() < deadline, bridge.tail()
        await asyncio.sleep(0.2)
    assert doc["readiness"]["ready"] is False
    assert bridge.proc is not None
    assert bridge.proc.returncode is None
    assert await bridge.terminate() == 0, bridge.tail()
    assert '"event":"stop requested during start-up"' in bridge.log.read_text()


async def test_sigkill_mid_stream_then_restart_delivers_what_was_stored(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, snsim = sims
    config = write_config(tmp_path, sims)
    bridge = Bridge(config, tmp_path / "bridge.log")
    await bridge.start()
    await bridge.wait_ready()
    snsim.set_delay(0.2)  # deliveries lag behind, so the kill leaves rows pending and in flight
    gsim.start_traffic(RATE, TOPICS)
    await asyncio.sleep(3)
    await bridge.kill()  # no drain, no clean mark
    snsim.set_delay(0.0)

    await bridge.start()
    await bridge.wait_ready()
    await asyncio.sleep(2)
    await gsim.stop_traffic()
    final_seq = len(gsim.ledger)
    await bridge.wait_settled()
    assert await bridge.terminate(signal.SIGINT) == 0, bridge.tail()  # Ctrl-C drains like SIGTERM
    gaps = balance_books(tmp_path, gsim, snsim, final_seq)
    assert [g["reason"] for g in gaps].count("service_crashed") == 1, gaps
    stopping = [
        orjson.loads(line)
        for line in bridge.log.read_text(errors="replace").splitlines()
        if '"signal received; draining"' in line
    ]
    assert [e["signal"] for e in stopping] == ["SIGINT"], stopping
    assert "rows left in flight by the previous run are pending again" in bridge.log.read_text()


async def test_dead_letters_are_listed_replayed_and_purged_while_the_service_runs(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, snsim = sims
    config = write_config(tmp_path, sims, admin_port=free_port())  # `gcbridge outbox` finds it there
    env = {"GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET}
    bridge = Bridge(config, tmp_path / "bridge.log")
    await bridge.start()
    try:
        await bridge.wait_ready()
        snsim.fail_transform("u_genesys_presence_import", len(USERS))  # three rows end in error: dead letters
        for user in USERS:
            gsim.publish(f"v2.users.{user}.presence")
        await _until_dead_letters(bridge, len(USERS))

        code, out, err = await run_gcbridge("outbox", "list", "--config", str(config), env=env)
        assert code == 0, err
        assert out.count("v2.users.") == len(USERS)
        assert "dead 3" in out
        ids = [line.split()[1] for line in out.splitlines() if "v2.users." in line]
        code, out, err = await run_gcbridge("outbox", "inspect", ids[0], "--config", str(config), env=env)
        assert code == 0, err
        assert orjson.loads(out)["payload"]["topicName"].startswith("v2.users.")

        # the cause is gone (the fault was for three rows): replay two, purge the third, while it runs
        code, out, err = await run_gcbridge("outbox", "replay", *ids[:2], "--config", str(config), env=env)
        assert (code, err) == (0, "")
        assert "replayed 2 rows; the running service is delivering them" in " ".join(out.split())
        purge = ("outbox", "purge", ids[2], "--yes", "--config", str(config))
        code, out, err = await run_gcbridge(*purge, env=env)
        assert (code, out.strip()) == (0, "purged 1 rows")
        await bridge.wait_settled()
        await _until_dead_letters(bridge, 0)
        assert len(snsim.records("u_genesys_presence")) == 2
    finally:
        assert await bridge.terminate() == 0


async def _until_dead_letters(bridge: Bridge, n: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        doc = await bridge.status()
        dead = (doc or {}).get("outbox", {}).get("dead")
        if dead == n:
            return
        assert loop.time() < deadline, f"{dead} dead letters, not {n}:\n{bridge.tail()}"
        await asyncio.sleep(0.2)


async def _until_logged(bridge: Bridge, event: str) -> None:
    """Until the bridge's log has a line whose event is ``event`` (a readiness signal, not a sleep)."""
    needle = f'"event":"{event}"'
    await wait_for(lambda: needle in bridge.log.read_text(errors="replace"), limit=90, what=needle)


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_run_drains_on_a_signal_even_when_started_with_sigint_ignored(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim], stop_with: signal.Signals
) -> None:
    """As a script's ``gcbridge run &`` starts: SIGINT ignored, which the bridge must not rely on."""
    bridge = Bridge(write_config(tmp_path, sims), tmp_path / "bridge.log", ignore_sigint=True)
    await bridge.start()
    await bridge.wait_ready()
    assert await bridge.terminate(stop_with) == 0, bridge.tail()
    logs = bridge.log.read_text(errors="replace")
    assert f'"signal":"{stop_with.name}"' in logs
    assert '"event":"stopped"' in logs


async def test_a_second_ctrl_c_stops_waiting_for_servicenow_and_keeps_the_rows(
    tmp_path: Path, sims: tuple[GenesysSim, ServiceNowSim]
) -> None:
    gsim, snsim = sims
    config = write_config(tmp_path, sims)
    # A drain that would outlast the test's patience: only the second Ctrl-C can end it in time.
    config.write_text(config.read_text().replace("drain_timeout = 20.0", "drain_timeout = 3600.0"))
    bridge = Bridge(config, tmp_path / "bridge.log", ignore_sigint=True)
    await bridge.start()
    await bridge.wait_ready()
    snsim.pause()  # every ServiceNow write hangs (until resume(), which the fixture's stop() calls)
    for user in USERS:
        gsim.publish(f"v2.users.{user}.presence")

    async def in_flight() -> int:
        doc = await bridge.status()
        return int((doc or {}).get("outbox", {}).get("in_flight", 0))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await in_flight() == 0:
        assert loop.time() < deadline, bridge.tail()
        await asyncio.sleep(0.1)
    assert bridge.proc is not None
    bridge.proc.send_signal(signal.SIGINT)
    await _until_logged(bridge, "draining")
    assert await bridge.terminate(signal.SIGINT) == 0, bridge.tail()
    logs = bridge.log.read_text(errors="replace")
    assert "second signal: not waiting for deliveries in progress" in logs
    states = sqlite3.connect(tmp_path / "state" / "outbox.db").execute("SELECT state FROM outbox").fetchall()
    assert len(states) == len(USERS), states  # every received event is stored
    assert snsim.records("u_genesys_presence") == []
    assert {state for (state,) in states} == {0}, states  # all pending (0), none left in flight (1)
