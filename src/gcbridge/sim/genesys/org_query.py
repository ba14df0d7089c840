"""The analytics queries of the org world (pure): parse, filter, order and page.

``POST /api/v2/analytics/conversations/details/query`` (a ``ConversationQuery``) and
``POST /api/v2/analytics/queues/observations/query`` (a ``QueueObservationQuery``). Filters are evaluated on
the rendered analytics JSON, so a filter sees exactly the fields a client gets back. Bad input raises
:class:`QueryError` with a message that names the offending field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Body = dict[str, Any]

ORDERS = ("asc", "desc", "unordered")
ORDER_BY = ("conversationStart", "conversationEnd", "segmentStart", "segmentEnd")
OPERATORS = ("matches", "exists", "notExists")
DEFAULT_PAGE_SIZE = 25
OBSERVATION_METRICS = ("oWaiting", "oAlerting", "oInteracting", "oOnQueueUsers", "oOffQueueUsers")
MAX_OBSERVATION_QUEUES = 100


class QueryError(ValueError):
    """A query the API rejects with 400 (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class Predicate:
    dimension: str
    operator: str
    value: str | None


@dataclass(frozen=True, slots=True)
class Filter:
    """``{type: and|or, predicates[], clauses[]}``; a clause is itself a filter."""

    kind: str
    predicates: tuple[Predicate, ...]
    clauses: tuple[Filter, ...]

    def matches(self, row: Body) -> bool:
        results = [_predicate_matches(p, row) for p in self.predicates]
        results += [c.matches(row) for c in self.clauses]
        if not results:
            return True
        return all(results) if self.kind == "and" else any(results)


@dataclass(frozen=True, slots=True)
class DetailsQuery:
    start: float
    end: float
    conversation_filters: tuple[Filter, ...]
    segment_filters: tuple[Filter, ...]
    order: str
    order_by: str
    page_size: int
    page_number: int


def parse_details_query(body: Any, max_page_size: int) -> DetailsQuery:
    """A validated ``ConversationQuery``."""
    if not isinstance(body, dict):
        raise QueryError("The request body must be a ConversationQuery JSON object")
    start, end = _interval(body.get("interval"))
    order = body.get("order", "asc")
    if order not in ORDERS:
        raise QueryError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    order_by = body.get("orderBy", "conversationStart")
    if order_by not in ORDER_BY:
        raise QueryError(f"orderBy must be one of {', '.join(ORDER_BY)}, got {order_by!r}")
    paging = body.get("paging") or {}
    if not isinstance(paging, dict):
        raise QueryError("paging must be an object with pageSize and pageNumber")
    page_size = _int(paging.get("pageSize", DEFAULT_PAGE_SIZE), "paging.pageSize")
    page_number = _int(paging.get("pageNumber", 1), "paging.pageNumber")
    if not 1 <= page_size <= max_page_size:
        raise QueryError(f"paging.pageSize must be between 1 and {max_page_size}, got {page_size}")
    if page_number < 1:
        raise QueryError(f"paging.pageNumber must be >= 1, got {page_number}")
    return DetailsQuery(
        start,
        end,
        _filters(body.get("conversationFilters"), "conversationFilters"),
        _filters(body.get("segmentFilters"), "segmentFilters"),
        order,
        order_by,
        page_size,
        page_number,
    )


def run_details_query(query: DetailsQuery, conversations: Sequence[Body], drift: int = 0) -> Body:
    """One page of the answer: ``{conversations, totalHits}``, or only ``{totalHits}`` past the last page.

    ``conversations`` are rendered analytics conversations. The sync query covers "conversations that
    started on a day touched by the interval" (spec 7.1), so the interval is widened to whole UTC days.
    ``drift`` > 0 injects the documented page drift: later pages start ``drift`` rows early (rows reappear)
    and ``totalHits`` is off by as much.
    """
    first_day, after_last_day = _whole_days(query.start, query.end)
    rows = [
        c
        for c in conversations
        if first_day <= _epoch(c["conversationStart"]) < after_last_day
        and all(f.matches(_conversation_row(c)) for f in query.conversation_filters)
        and all(any(f.matches(s) for s in _segment_rows(c)) for f in query.segment_filters)
    ]
    if query.order != "unordered":
        rows.sort(key=_sort_key(query.order_by), reverse=query.order == "desc")
    total = len(rows)
    offset = (query.page_number - 1) * query.page_size
    if query.page_number > 1:
        offset = max(0, offset - drift)
    page = rows[offset : offset + query.page_size]
    answer: Body = {"totalHits": total + drift}
    if page:
        answer["conversations"] = page
    return answer


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    queue_ids: tuple[str, ...]
    metrics: tuple[str, ...]


def parse_observation_query(body: Any) -> ObservationQuery:
    """A validated ``QueueObservationQuery`` (queues by ``queueId`` predicates, the ``metrics`` wanted)."""
    if not isinstance(body, dict):
        raise QueryError("The request body must be a QueueObservationQuery JSON object")
    flt = _filter(body.get("filter"), "filter")
    queue_ids = tuple(dict.fromkeys(_values(flt, "queueId")))
    if not queue_ids:
        raise QueryError("filter must name at least one queueId")
    if len(queue_ids) > MAX_OBSERVATION_QUEUES:
        raise QueryError(f"filter may name at most {MAX_OBSERVATION_QUEUES} queues, got {len(queue_ids)}")
    metrics = body.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise QueryError("metrics must be a non-empty list of metric names")
    unknown = [m for m in metrics if m not in OBSERVATION_METRICS]
    if unknown:
        raise QueryError(f"unknown metrics {unknown}; known: {', '.join(OBSERVATION_METRICS)}")
    return ObservationQuery(queue_ids, tuple(metrics))


# -- parsing helpers -----------------------------------------------------------------------------------------
def _interval(value: Any) -> tuple[float, float]:
    if not isinstance(value, str) or value.count("/") != 1:
        raise QueryError("interval is required, as 'start/end' in ISO-8601 (e.g. 2026-12-04T00:00:00Z/...)")
    left, right = value.split("/")
    start, end = _parse_date(left, "interval start"), _parse_date(right, "interval end")
    if end <= start:
        raise QueryError("interval end must be after its start")
    return start, end


def _parse_date(text: str, what: str) -> float:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f"{what} {text!r} is not an ISO-8601 date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueryError(f"{name} must be an integer")
    return value


def _filters(value: Any, name: str) -> tuple[Filter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QueryError(f"{name} must be a list of filters")
    return tuple(_filter(item, f"{name}[{i}]") for i, item in enumerate(value))


def _filter(value: Any, where: str) -> Filter:
    if not isinstance(value, dict):
        raise QueryError(f"{where} must be an object with type and predicates or clauses")
    kind = value.get("type", "and")
    if kind not in ("and", "or"):
        raise QueryError(f"{where}.type must be 'and' or 'or', got {kind!r}")
    predicates = value.get("predicates") or []
    clauses = value.get("clauses") or []
    if not isinstance(predicates, list) or not isinstance(clauses, list):
        raise QueryError(f"{where}.predicates and {where}.clauses must be lists")
    if not predicates and not clauses:
        raise QueryError(f"{where} needs predicates or clauses")
    return Filter(
        kind,
        tuple(_predicate(p, f"{where}.predicates[{i}]") for i, p in enumerate(predicates)),
        tuple(_filter(c, f"{where}.clauses[{i}]") for i, c in enumerate(clauses)),
    )


def _predicate(value: Any, where: str) -> Predicate:
    if not isinstance(value, dict):
        raise QueryError(f"{where} must be an object")
    if value.get("type", "dimension") != "dimension":
        raise QueryError(f"{where}: only dimension predicates are supported by the simulator")
    dimension = value.get("dimension")
    if not isinstance(dimension, str) or not dimension:
        raise QueryError(f"{where}.dimension is required")
    operator = value.get("operator", "matches")
    if operator not in OPERATORS:
        raise QueryError(f"{where}.operator must be one of {', '.join(OPERATORS)}, got {operator!r}")
    raw = value.get("value")
    if operator == "matches" and not isinstance(raw, str):
        raise QueryError(f"{where}.value is required (a string) with operator 'matches'")
    return Predicate(dimension, operator, raw if isinstance(raw, str) else None)


def _values(flt: Filter, dimension: str) -> list[str]:
    found = [p.value for p in flt.predicates if p.dimension == dimension and p.value is not None]
    for clause in flt.clauses:
        found += _values(clause, dimension)
    return found


# -- evaluation helpers --------------------------------------------------------------------------------------
def _predicate_matches(p: Predicate, row: Body) -> bool:
    value = row.get(p.dimension)
    if p.operator == "exists":
        return value is not None
    if p.operator == "notExists":
        return value is None
    if isinstance(value, list):
        return p.value in value
    return value is not None and str(value) == p.value


def _conversation_row(conv: Body) -> Body:
    row = {k: v for k, v in conv.items() if k != "participants"}
    row["divisionId"] = conv.get("divisionIds", [])
    return row


def _segment_rows(conv: Body) -> list[Body]:
    """One flat row per segment: the segment's fields plus its session's and participant's."""
    rows = []
    for participant in conv.get("participants", []):
        party = {k: v for k, v in participant.items() if k != "sessions"}
        for session in participant.get("sessions", []):
            sess = {k: v for k, v in session.items() if k != "segments"}
            rows += [{**party, **sess, **segment} for segment in session.get("segments", [])]
    return rows


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _whole_days(start: float, end: float) -> tuple[float, float]:
    first = datetime.fromtimestamp(start, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    after = last.replace(hour=0, minute=0, second=0, microsecond=0)
    if after < last:
        after += timedelta(days=1)
    return first.timestamp(), after.timestamp()


def _sort_key(order_by: str) -> Callable[[Body], tuple[float, str]]:
    def segment_times(conv: Body, field: str) -> list[float]:
        return [_epoch(s[field]) for s in _segment_rows(conv) if field in s]

    def key(conv: Body) -> tuple[float, str]:
        if order_by == "conversationStart":
            at = _epoch(conv["conversationStart"])
        elif order_by == "conversationEnd":
            # Ongoing conversations have no end yet: they sort after every ended one.
            at = _epoch(conv["conversationEnd"]) if "conversationEnd" in conv else float("inf")
        elif order_by == "segmentStart":
            at = min(segment_times(conv, "segmentStart"), default=float("inf"))
        else:
            at = max(segment_times(conv, "segmentEnd"), default=float("inf"))
        return at, conv["conversationId"]

    return key
