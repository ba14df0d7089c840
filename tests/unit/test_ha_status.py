"""The ``ha`` part of /status and its text for ``gcbridge status``: pure, from snapshots."""

from __future__ import annotations

from gcbridge.bridge.cli import ha_text
from gcbridge.bridge.ha_status import Failover, ha_document
from gcbridge.core.shard_leases import Lease
from gcbridge.core.standby_cover import CoverSpan
from gcbridge.outbox.pg_leases import Member, Snapshot

NOW = 1000.0


def snapshot() -> Snapshot:
    return Snapshot(
        now=NOW,
        leases={
            0: Lease(0, "a", 3, NOW + 10.0),
            1: Lease(1, "b", 7, NOW + 4.5, handoff_to="a", handoff_at=NOW - 1),
            2: Lease(2, "c", 2, NOW - 1.0),  # expired: nobody holds it now
        },
        members=[Member("a", "running", NOW - 0.5, 6, 4), Member("b", "leaving", NOW - 2.0, 6, 2)],
    )


def test_the_document_names_owners_epochs_expiry_standbys_and_failovers() -> None:
    spans = [
        CoverSpan("s1", 900.0, 990.0, frozenset({"t"}), updated_at=990.0),
        CoverSpan("s1", 995.0, 999.0, frozenset({"t"}), updated_at=999.2),  # its current stretch
        CoverSpan("s2", 100.0, 200.0, frozenset({"t"}), updated_at=200.0),  # gone silent
    ]
    failovers = [Failover(NOW - 30, 2, "c", 2, 3.5), Failover(NOW - 5, 0, "x", 3, None)]
    doc = ha_document(
        instance_id="a",
        standby=False,
        owned={0: 3},
        snapshot=snapshot(),
        failovers=failovers,
        standby_spans=spans,
        standby_now=NOW,
        standby_fresh=5.0,
    )
    assert doc["role"] == "owner"
    assert doc["owned"] == {"0": 3}
    assert [(s["shard"], s["owner"], s["epoch"], s["expires_in"]) for s in doc["shards"]] == [
        (0, "a", 3, 10.0),
        (1, "b", 7, 4.5),
        (2, None, 2, -1.0),
    ]
    assert doc["shards"][1]["handoff_to"] == "a"
    assert [(m["id"], m["heartbeat_age"], m["shards"]) for m in doc["instances"]] == [
        ("a", 0.5, [0]),
        ("b", 2.0, [1]),
    ]
    assert [(p["instance"], p["live"], p["since"]) for p in doc["standby_paths"]] == [
        ("s1", True, 995.0),
        ("s2", False, 100.0),
    ]
    assert [f["shard"] for f in doc["failovers"]] == [0, 2]  # newest first
    text = ha_text(doc)
    assert "owns shard@epoch: 0@3" in text
    assert "shard 2: owner -" in text
    assert "standby s2: silent" in text
    assert "gap 3.5 s" in text
    assert "gap none" in text


def test_a_standby_without_a_snapshot() -> None:
    doc = ha_document(
        instance_id="s1",
        standby=True,
        owned={},
        snapshot=None,
        failovers=[],
        standby_spans=[],
        standby_now=None,
        standby_fresh=5.0,
    )
    assert doc["role"] == "standby"
    assert doc["shards"] == []
    assert "(standby)" in ha_text(doc)
