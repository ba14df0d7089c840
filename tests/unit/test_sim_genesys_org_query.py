"""The org's analytics queries (pure): whole-day intervals, filters with clauses, ordering, paging, errors."""

from __future__ import annotations

from typing import Any

import pytest

from gcbridge.sim.genesys.org_query import (
    QueryError,
    parse_details_query,
    parse_observation_query,
    run_details_query,
)


def conversation(cid: str, start: str, end: str | None, *segments: dict[str, Any]) -> dict[str, Any]:
    conv: dict[str, Any] = {
        "conversationId": cid,
        "conversationStart": start,
        "divisionIds": ["d1"],
        "participants": [
            {
                "participantId": f"{cid}-p",
                "purpose": "agent",
                "userId": f"user-{cid}",
                "sessions": [{"sessionId": "s", "mediaType": "voice", "segments": list(segments)}],
            }
        ],
    }
    if end is not None:
        conv["conversationEnd"] = end
    return conv


ROWS = [
    conversation(
        "a",
        "2027-01-15T08:00:00.000Z",
        "2027-01-15T08:30:00.000Z",
        {"segmentType": "interact", "queueId": "q1"},
    ),
    conversation("b", "2027-01-15T09:00:00.000Z", None, {"segmentType": "hold", "queueId": "q2"}),
    conversation(
        "c",
        "2027-01-15T07:00:00.000Z",
        "2027-01-15T09:30:00.000Z",
        {"segmentType": "wrapup", "queueId": "q1", "wrapUpCode": "Sale"},
    ),
    conversation(
        "d",
        "2027-01-14T23:59:00.000Z",
        "2027-01-15T00:10:00.000Z",
        {"segmentType": "interact", "queueId": "q2"},
    ),
]


def ids(body: dict[str, Any], **query: Any) -> list[str]:
    parsed = parse_details_query({"interval": "2027-01-15T10:00:00Z/2027-01-15T11:00:00Z", **query}, 100)
    answer = run_details_query(parsed, body.get("rows", ROWS))
    return [c["conversationId"] for c in answer.get("conversations", [])]


def test_the_interval_covers_the_whole_days_it_touches() -> None:
    # 10:00-11:00 touches only 2027-01-15, so a conversation started on the 14th is out, all others in.
    assert ids({}) == ["c", "a", "b"]


def test_order_by_conversation_end_puts_ongoing_conversations_last() -> None:
    assert ids({}, orderBy="conversationEnd") == ["a", "c", "b"]
    assert ids({}, orderBy="conversationEnd", order="desc") == ["b", "c", "a"]


def test_segment_filters_match_within_one_segment_and_clauses_nest() -> None:
    sale_in_q1 = {
        "type": "and",
        "predicates": [{"dimension": "queueId", "value": "q1"}, {"dimension": "wrapUpCode", "value": "Sale"}],
    }
    assert ids({}, segmentFilters=[sale_in_q1]) == ["c"]
    either = {
        "type": "or",
        "clauses": [
            {"type": "and", "predicates": [{"dimension": "segmentType", "value": "hold"}]},
            {"type": "and", "predicates": [{"dimension": "userId", "value": "user-a"}]},
        ],
    }
    assert ids({}, segmentFilters=[either]) == ["a", "b"]
    no_code = {"type": "and", "predicates": [{"dimension": "wrapUpCode", "operator": "notExists"}]}
    assert ids({}, segmentFilters=[no_code]) == ["a", "b"]


def test_conversation_filters_see_conversation_fields() -> None:
    ongoing = {"type": "and", "predicates": [{"dimension": "conversationEnd", "operator": "notExists"}]}
    assert ids({}, conversationFilters=[ongoing]) == ["b"]
    by_id = {"type": "or", "predicates": [{"dimension": "conversationId", "value": "a"}]}
    assert ids({}, conversationFilters=[by_id]) == ["a"]
    division = {"type": "and", "predicates": [{"dimension": "divisionId", "value": "d1"}]}
    assert ids({}, conversationFilters=[division]) == ["c", "a", "b"]


def test_paging_ends_with_a_body_without_conversations_and_drift_repeats_rows() -> None:
    query = parse_details_query(
        {"interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z", "paging": {"pageSize": 2, "pageNumber": 2}},
        100,
    )
    assert [c["conversationId"] for c in run_details_query(query, ROWS)["conversations"]] == ["b"]
    assert [c["conversationId"] for c in run_details_query(query, ROWS, drift=1)["conversations"]] == [
        "a",
        "b",
    ]
    assert run_details_query(query, ROWS, drift=1)["totalHits"] == 4
    past = parse_details_query(
        {"interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z", "paging": {"pageSize": 2, "pageNumber": 3}},
        100,
    )
    assert run_details_query(past, ROWS) == {"totalHits": 3}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "must be a ConversationQuery"),
        ({"interval": "2027-01-15T00:00:00Z"}, "interval is required"),
        ({"interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z", "orderBy": "x"}, "orderBy must be one of"),
        (
            {"interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z", "paging": {"pageSize": "5"}},
            "pageSize must",
        ),
        (
            {"interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z", "paging": {"pageNumber": 0}},
            "pageNumber",
        ),
        (
            {"interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z", "segmentFilters": [{"type": "and"}]},
            "segmentFilters[0] needs predicates or clauses",
        ),
        (
            {
                "interval": "2027-01-15T00:00:00Z/2027-01-16T00:00:00Z",
                "segmentFilters": [
                    {"predicates": [{"dimension": "queueId", "operator": "like", "value": "q"}]}
                ],
            },
            "segmentFilters[0].predicates[0].operator",
        ),
    ],
)
def test_a_bad_details_query_names_what_is_wrong(body: Any, fragment: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_details_query(body, 100)
    assert fragment in str(caught.value)


def test_observation_query_takes_queue_ids_from_nested_predicates_and_checks_metrics() -> None:
    query = parse_observation_query(
        {
            "filter": {
                "type": "or",
                "clauses": [{"type": "or", "predicates": [{"dimension": "queueId", "value": "q1"}]}],
                "predicates": [
                    {"dimension": "queueId", "value": "q2"},
                    {"dimension": "queueId", "value": "q1"},
                ],
            },
            "metrics": ["oWaiting"],
        }
    )
    assert set(query.queue_ids) == {"q1", "q2"}
    assert len(query.queue_ids) == 2
    with pytest.raises(QueryError, match="unknown metrics"):
        parse_observation_query(
            {"filter": {"predicates": [{"dimension": "queueId", "value": "q"}]}, "metrics": ["x"]}
        )
    with pytest.raises(QueryError, match="at least one queueId"):
        parse_observation_query(
            {
                "filter": {"predicates": [{"dimension": "mediaType", "value": "voice"}]},
                "metrics": ["oWaiting"],
            }
        )
