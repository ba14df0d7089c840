"""What back-fill needs of the OAuth client, found by one harmless request per permission (for ``gcbridge
check``): a one-row details query over the last hour, a ``GET`` of a conversation that does not exist, and an
observations query for a queue that does not exist. A 403 means the permission is missing; the answers of an
endpoint that let us in (200, a 400 for the query, the 404 of the made-up conversation) mean it is granted;
anything else cannot tell. Nothing is written."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import aiohttp

NOBODY: Final = "00000000-0000-4000-8000-000000000000"

Found = Literal["granted", "missing", "unknown"]


@dataclass(frozen=True, slots=True)
class Need:
    permission: str  # what to grant (either of two, for the details query)
    families: str  # what back-fill cannot repair without it
    method: str
    path: str
    body: Any = None
    granted: tuple[int, ...] = (200, 400)  # answers that show the endpoint let us in


Probed = tuple[Need, Found, str]
"""A need, what its probe found, and the answer seen (``HTTP 403``)."""


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def needs(now: float) -> tuple[Need, ...]:
    """The permissions back-fill needs, each with its probe."""
    return (
        Need(
            "analytics:conversationDetail:view or analytics:agentConversationDetail:view",
            "queue and user conversations, detail events",
            "POST",
            "/api/v2/analytics/conversations/details/query",
            {"interval": f"{_iso(now - 3600)}/{_iso(now)}", "paging": {"pageSize": 1, "pageNumber": 1}},
        ),
        Need(
            "conversation:communication:view",
            "queue and user conversations",
            "GET",
            f"/api/v2/conversations/{NOBODY}",
            granted=(200, 404),  # no such conversation: we may read conversations
        ),
        Need(
            "analytics:queueObservation:view",
            "queue observations",
            "POST",
            "/api/v2/analytics/queues/observations/query",
            {
                "filter": {"type": "or", "predicates": [{"dimension": "queueId", "value": NOBODY}]},
                "metrics": ["oWaiting"],
            },
        ),
    )


def found_from_status(need: Need, status: int) -> Found:
    if status == 403:
        return "missing"
    return "granted" if status in need.granted else "unknown"


async def probe(
    http: aiohttp.ClientSession, api_base: str, headers: Mapping[str, str], now: float | None = None
) -> list[Probed]:
    """Each need's probe answer: granted, missing, or unknown (with what was seen)."""
    out: list[Probed] = []
    for need in needs(time.time() if now is None else now):
        try:
            async with http.request(need.method, api_base + need.path, json=need.body, headers=headers) as r:
                await r.read()
                out.append((need, found_from_status(need, r.status), f"HTTP {r.status}"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.append((need, "unknown", f"{type(exc).__name__}: {exc}"))
    return out


def verdict(found: Sequence[Probed]) -> tuple[Literal["ok", "warn"], str]:
    """``ok`` with the list, or ``warn`` naming what is missing and which families back-fill will leave open
    (pure). Never a failure: the live path does not need these."""
    missing = [n for n, f, _ in found if f == "missing"]
    unknown = [(n, seen) for n, f, seen in found if f == "unknown"]
    if not missing and not unknown:
        return "ok", "back-fill may read what it needs: " + "; ".join(n.permission for n, _, _ in found)
    parts = []
    if missing:
        parts.append(
            "missing "
            + "; ".join(n.permission for n in missing)
            + ": back-fill of "
            + "; ".join(n.families for n in missing)
            + " will be partial (grant them to the OAuth client's role)"
        )
    if unknown:
        parts.append("could not tell " + "; ".join(f"{n.permission} ({seen})" for n, seen in unknown))
    return "warn", ". ".join(parts)
