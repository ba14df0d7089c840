"""The pure parts of the library back-fill: topic families, queries, pacing, reshaping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.genesys.backfill_plan import RollingLimit, details_query, had_activity, iso, parse_iso, plan
from gcbridge.genesys.backfill_shapes import topic_presence, topic_routing_status


def test_plan_sorts_topics_into_families_and_keeps_the_rest_with_a_reason() -> None:
    result = plan(
        [
            "v2.routing.queues.q1.conversations",
            "v2.users.u1.conversations",
            "v2.users.u1.presence",
            "v2.users.u1.routingStatus",
            "v2.analytics.queues.q1.observations",
            "v2.detail.events.conversation.c1.acd.end",
            "v2.detail.events.conversation.c1.attributes",
            "v2.users.u1.geolocation",
            "v2.routing.queues.q1.conversations.calls",
        ]
    )
    assert result.queue_conversations == {"q1": "v2.routing.queues.q1.conversations"}
    assert result.user_conversations == {"u1": "v2.users.u1.conversations"}
    assert result.presence == {"u1": "v2.users.u1.presence"}
    assert result.routing_status == {"u1": "v2.users.u1.routingStatus"}
    assert result.observations == {"q1": "v2.analytics.queues.q1.observations"}
    assert result.details == {"c1": {"acd.end": "v2.detail.events.conversation.c1.acd.end"}}
    assert set(result.unfillable) == {
        "v2.detail.events.conversation.c1.attributes",
        "v2.users.u1.geolocation",
        "v2.routing.queues.q1.conversations.calls",
    }
    assert "'attributes'" in result.unfillable["v2.detail.events.conversation.c1.attributes"]
    assert all(result.unfillable.values())


def test_details_query_filters_segments_or_conversations_oldest_first() -> None:
    query = details_query(1_800_000_000.0, 1_800_000_060.5, "queueId", ["a", "b"], 100, 3)
    assert query["interval"] == "2027-01-15T08:00:00.000Z/2027-01-15T08:01:00.500Z"
    assert query["order"] == "asc"
    assert query["orderBy"] == "conversationStart"
    assert query["paging"] == {"pageSize": 100, "pageNumber": 3}
    assert [p["value"] for p in query["segmentFilters"][0]["predicates"]] == ["a", "b"]
    by_id = details_query(0.0, 1.0, "conversationId", ["c"], 10, 1)
    assert "segmentFilters" not in by_id
    assert by_id["conversationFilters"][0]["predicates"][0]["dimension"] == "conversationId"


def test_had_activity_keeps_ongoing_and_overlapping_conversations_only() -> None:
    def conv(start: str, end: str | None = None) -> dict[str, str]:
        c = {"conversationId": "x", "conversationStart": start}
        if end:
            c["conversationEnd"] = end
        return c

    window = (parse_iso("2027-01-15T10:00:00Z"), parse_iso("2027-01-15T11:00:00Z"))
    assert had_activity(conv("2027-01-14T23:55:00.000Z"), *window)  # still going since yesterday
    assert had_activity(conv("2027-01-14T23:55:00.000Z", "2027-01-15T10:01:00.000Z"), *window)
    assert had_activity(conv("2027-01-15T10:10:00.000Z", "2027-01-15T10:20:00.000Z"), *window)
    assert not had_activity(conv("2027-01-15T09:00:00.000Z", "2027-01-15T09:59:59.000Z"), *window)
    assert not had_activity(conv("2027-01-15T11:00:01.000Z"), *window)  # started after: seen live
    assert had_activity({"conversationId": "x", "conversationStart": "garbage"}, *window)


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_iso_and_parse_iso_round_trip_whole_milliseconds(ms: int) -> None:
    assert round(parse_iso(iso(ms / 1000)) * 1000) == ms


def test_rolling_limit_holds_a_slot_until_a_minute_after_the_answer() -> None:
    limit = RollingLimit(2)
    assert limit.delay(0.0) == 0.0
    limit.sent()
    limit.sent()
    assert limit.delay(1.0) == 60.0  # both in flight: nothing to count down from yet
    limit.answered(5.0)
    limit.answered(6.0)
    assert limit.delay(10.0) == pytest.approx(55.0)
    assert limit.delay(65.0) == 0.0
    with pytest.raises(ValueError, match="rate limit"):
        RollingLimit(0)


@given(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=60))
def test_rolling_limit_never_lets_more_than_the_limit_into_a_window(latencies: list[float]) -> None:
    """Sent whenever allowed, each answered after its latency: no window of 60 s holds more than 3 sends."""
    limit, now, sends = RollingLimit(3), 0.0, []
    for latency in latencies:
        now += limit.delay(now)
        while limit.delay(now) > 0:
            now += limit.delay(now)
        limit.sent()
        sends.append(now)
        now += latency
        limit.answered(now)
    for t in sends:
        assert sum(1 for s in sends if t - 60 + 1e-6 < s <= t) <= 3


def test_presence_and_routing_status_reshape_to_the_topic_models() -> None:
    rest = {
        "id": "u1",
        "userId": "u1",
        "source": "PURECLOUD",
        "presenceDefinition": {"id": "p", "systemPresence": "OnQueue", "selfUri": "/x"},
        "message": "",
        "modifiedDate": "2027-01-15T08:00:00.000Z",
        "selfUri": "/y",
    }
    assert topic_presence(rest) == {
        "source": "PURECLOUD",
        "presenceDefinition": {"id": "p", "systemPresence": "ON_QUEUE"},
        "primary": True,
        "message": "",
        "modifiedDate": "2027-01-15T08:00:00.000Z",
    }
    assert topic_presence({"presenceDefinition": {"systemPresence": "AVAILABLE"}})["presenceDefinition"] == {
        "systemPresence": "AVAILABLE"
    }
    assert topic_routing_status({"userId": "u1", "status": "IDLE", "startTime": "t"}, "u1") == {
        "id": "u1",
        "routingStatus": {"status": "IDLE", "startTime": "t"},
    }
    assert topic_routing_status({"status": "OFF_QUEUE"}, "u2") == {
        "id": "u2",
        "routingStatus": {"status": "OFF_QUEUE"},
    }
