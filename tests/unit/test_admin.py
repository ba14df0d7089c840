"""The admin endpoint and the pure pieces behind it (readiness, topic families, redaction)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession

from gcbridge.bridge import logging as bridge_logging
from gcbridge.bridge.admin import AdminServer, readiness
from gcbridge.bridge.metrics import MAX_FAMILIES, BridgeMetrics, topic_family
from gcbridge.outbox.base import OutboxStats
from gcbridge.secrets import Secret
from tests.logging_state import restored_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """These tests configure the process-wide logging; leave it as other tests expect it."""
    with restored_logging():
        yield


class FakeSource:
    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"state": "running", "readiness": {"ready": True, "reasons": []}}
        self.alive = True
        self.calls = 0

    async def status(self) -> Mapping[str, Any]:
        self.calls += 1
        return self.doc

    def is_alive(self) -> bool:
        return self.alive


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeSource, BridgeMetrics, str]]:
    source, metrics = FakeSource(), BridgeMetrics()
    server = AdminServer(source, metrics, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield source, metrics, server.url
    finally:
        await server.stop()


def test_readiness_requires_every_shard_live_and_servicenow() -> None:
    live = [{"shard": 0, "state": "live"}, {"shard": 1, "state": "live"}]
    assert readiness(live, 2, True, "running").ready
    half = [{"shard": 0, "state": "live"}, {"shard": 1, "state": "reconnecting"}]
    verdict = readiness(half, 2, True, "running")
    assert not verdict.ready
    assert verdict.reasons == ("shards without a live socket: [1]",)
    # shard 0 is an id, not a count: it must not read as "none"
    none_live = readiness([{"shard": 0, "state": "reconnecting"}], 1, True, "running")
    assert none_live.reasons == ("shards without a live socket: [0]",)
    assert readiness(live, 2, False, "running").reasons == ("ServiceNow is not reachable",)
    assert readiness(live, 2, True, "draining").reasons == ("service is draining",)
    assert not readiness(live, 2, None, "running").ready


def test_topic_family_replaces_ids_only() -> None:
    assert topic_family("v2.routing.queues.3f2c1a9e-0000-4000-8000-1234567890ab.conversations") == (
        "v2.routing.queues.{id}.conversations"
    )
    assert topic_family("v2.users.u17.presence") == "v2.users.{id}.presence"
    assert topic_family("v2.detail.events.conversation.c-9.acd.end") == (
        "v2.detail.events.conversation.{id}.acd.end"
    )


def test_family_labels_are_bounded() -> None:
    metrics = BridgeMetrics()
    for i in range(MAX_FAMILIES + 5):
        metrics.record_received([f"family{'x' * (i % 7)}.k{'y' * i}.event"])
    labels = {
        s.labels["family"]
        for m in metrics.registry.collect()
        if m.name == "gcbridge_events_received"
        for s in m.samples
    }
    assert len(labels) <= MAX_FAMILIES + 1


async def test_health_ready_status_and_metrics(served: tuple[FakeSource, BridgeMetrics, str]) -> None:
    source, metrics, url = served
    metrics.record_received(["v2.users.u1.presence", "v2.users.u2.presence"])
    metrics.set_outbox(OutboxStats(pending=3, in_flight=1, dead=2, delivered=10, oldest_pending_age=4.5))
    async with ClientSession() as http:
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200
        source.doc = {
            "state": "running",
            "readiness": {"ready": False, "reasons": ["ServiceNow is not reachable"]},
        }
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 503
            assert (await r.json())["reasons"] == ["ServiceNow is not reachable"]
        async with http.get(f"{url}/status") as r:
            assert r.status == 200
            assert (await r.json())["state"] == "running"
        async with http.get(f"{url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
        source.alive = False
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 503
    assert 'gcbridge_events_received_total{family="v2.users.{id}.presence"} 2.0' in text
    assert 'gcbridge_outbox_depth{state="dead"} 2.0' in text
    assert "gcbridge_outbox_oldest_pending_age_seconds 4.5" in text
    assert "gcbridge_servicenow_delivery_seconds_bucket" in text
    # /metrics refreshes the snapshot first.
    assert source.calls >= 3


async def test_status_page_is_self_contained(served: tuple[FakeSource, BridgeMetrics, str]) -> None:
    _, _, url = served
    async with ClientSession() as http:
        async with http.get(f"{url}/") as r:
            assert r.status == 200
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            html = await r.text()
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs
        assert all(ref.startswith("/") for ref in refs), refs
        for ref in refs:
            if ref.startswith("/static/"):
                async with http.get(f"{url}{ref}") as r:
                    assert r.status == 200, ref
                    # SVG's namespace is a name that is never fetched; any other URL would be
                    body = (await r.text()).replace('"http://www.w3.org/2000/svg"', "")
                    assert "http://" not in body
                    assert "https://" not in body
        async with http.get(f"{url}/static/gcbridge.example.toml") as r:
            assert r.status == 404
        async with http.get(f"{url}/static/..%2Fadmin.py") as r:
            assert r.status == 404


def test_redaction_masks_sensitive_keys_and_inline_credentials() -> None:
    stream = io.StringIO()
    bridge_logging.configure(level="debug", fmt="json", stream=stream)
    log = bridge_logging.get_logger("test")
    log.info(
        "token request",
        client_secret="S3CRET-A",
        headers={"Authorization": "Bearer S3CRET-B"},
        detail="POST failed with Authorization: Basic S3CRET-CCCC",
        nested=[{"password": "S3CRET-D"}],
        wrapped=Secret("S3CRET-E"),
        token_refreshes=3,
        channel="ch-1",
    )

    logging.getLogger("aiohttp.client").warning("retry with access_token=S3CRET-F&x=1")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    text = stream.getvalue()
    for marker in ("S3CRET-A", "S3CRET-B", "S3CRET-CCCC", "S3CRET-D", "S3CRET-E", "S3CRET-F"):
        assert marker not in text
    first = lines[0]
    assert first["event"] == "token request"
    assert first["token_refreshes"] == 3
    assert first["channel"] == "ch-1"
    assert first["level"] == "info"
    assert lines[1]["logger"] == "aiohttp.client"


def test_lifecycle_events_become_counters() -> None:
    metrics = BridgeMetrics()
    for kind, reason in [
        ("reconnecting", "closed_1006"),
        ("reconnecting", "closed_1006"),
        ("rotated", "socket_closing"),
        ("token_refreshed", ""),
        ("connected", ""),
    ]:
        metrics.record_lifecycle(kind, reason)
    text = metrics.render().decode()
    assert 'gcbridge_reconnects_total{reason="closed_1006"} 2.0' in text
    assert 'gcbridge_rotations_total{reason="socket_closing"} 1.0' in text
    assert "gcbridge_token_refreshes_total 1.0" in text


def test_readiness_names_a_sink_wide_condition() -> None:
    live = [{"shard": 0, "state": "live"}]
    verdict = readiness(live, 1, True, "running", ["ServiceNow rejected the credentials (HTTP 401)"])
    assert not verdict.ready
    assert verdict.reasons == ("ServiceNow rejected the credentials (HTTP 401)",)
    assert not readiness(
        live, 1, True, "running", ["every one of the last 20 deliveries was dead-lettered"]
    ).ready
