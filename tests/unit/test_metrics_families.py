"""Family labels of received events: computed once per topic (the ingest path counts every event), same
labels and counts as before."""

from __future__ import annotations

import pytest

from gcbridge.bridge import metrics as metrics_module
from gcbridge.bridge.metrics import MAX_FAMILIES, BridgeMetrics, topic_family


def _received(metrics: BridgeMetrics) -> dict[str, float]:
    return {
        s.labels["family"]: s.value
        for m in metrics.registry.collect()
        if m.name == "gcbridge_events_received"
        for s in m.samples
        if s.name.endswith("_total")
    }


def test_the_family_of_a_topic_is_worked_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(topic: str) -> str:
        calls.append(topic)
        return topic_family(topic)

    monkeypatch.setattr(metrics_module, "topic_family", counting)
    metrics = BridgeMetrics()
    queue = "v2.routing.queues.3f2c1a9e-0000-4000-8000-1234567890ab.conversations"
    for _ in range(5):
        metrics.record_received([queue, "v2.users.u1.presence", "v2.users.u1.presence"])
    metrics.record_received(["v2.users.u2.presence"])
    assert sorted(calls) == sorted([queue, "v2.users.u1.presence", "v2.users.u2.presence"])
    assert _received(metrics) == {"v2.routing.queues.{id}.conversations": 5.0, "v2.users.{id}.presence": 11.0}


def test_a_topic_first_seen_after_the_families_are_full_stays_other() -> None:
    metrics = BridgeMetrics()
    for i in range(MAX_FAMILIES):
        metrics.record_received([f"family{'x' * i}.event"])
    late = "late.family.event"
    metrics.record_received([late, late])
    assert metrics.family_label(late) == "other"
    assert metrics.family_label("familyx.event") == "familyx.event"
    assert _received(metrics)["other"] == 2.0
