"""The admin endpoint's dead-letter routes (``gcbridge outbox`` while the service runs) and the documents
behind them. The whole path, CLI to running service, is in tests/e2e/test_service_e2e.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import make_mocked_request

from gcbridge.bridge.admin import AdminServer, _is_loopback
from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.outbox.base import ALL, OutboxStats, RowInfo, Selection
from gcbridge.outbox.documents import parse_selection, row_document, selection_document


def info(row_id: int, payload: bytes = b'{"topicName":"v2.users.u1.presence"}') -> RowInfo:
    return RowInfo(
        id=row_id,
        dedup_key=f"k{row_id}",
        order_key="o",
        topic="v2.users.u1.presence",
        payload=payload,
        received_at=1.0,
        state="dead",
        attempts=3,
        next_attempt_at=0.0,
        last_error="HTTP 400: Invalid table x",
        lease_owner=None,
        lease_expires_at=None,
        finished_at=2.0,
        detail=None,
    )


# == the documents =========================================================================================
@pytest.mark.parametrize(
    ("body", "selection"),
    [({"ids": [3, 1]}, [3, 1]), ({"all": True}, ALL), ({"ids": [2], "all": False}, [2])],
)
def test_a_selection_names_ids_or_all(body: Any, selection: Selection) -> None:
    assert parse_selection(body) == selection
    assert parse_selection(selection_document(selection)) == selection


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([1, 2], "must be a JSON object"),
        ({"ids": [1], "rows": 2}, "unknown field(s): rows"),
        ({"ids": [1], "all": True}, "one of them"),
        ({}, "one of them"),
        ({"all": "yes"}, '"all" must be true or false'),
        ({"ids": []}, "non-empty list"),
        ({"ids": "1,2"}, "non-empty list"),
        ({"ids": [1, True]}, "positive whole numbers"),
        ({"ids": [0]}, "positive whole numbers"),
        ({"ids": ["1"]}, "positive whole numbers"),
    ],
)
def test_a_bad_selection_is_refused_with_the_reason(body: Any, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_selection(body)


def test_a_row_document_parses_a_json_payload_and_keeps_any_other_as_text() -> None:
    doc = row_document(info(1))
    assert doc["payload"] == {"topicName": "v2.users.u1.presence"}
    assert (doc["id"], doc["state"], doc["last_error"]) == (1, "dead", "HTTP 400: Invalid table x")
    assert row_document(info(2, b"\xffnot json"))["payload"] == "\ufffdnot json"
    assert "payload" not in row_document(info(3), payload=False)


# == the routes ============================================================================================
class FakeDeadLetters:
    def __init__(self) -> None:
        self.rows = {i: info(i) for i in (1, 2, 3)}
        self.asked: list[tuple[str, Any]] = []

    async def dead_letters(self, limit: int, offset: int) -> tuple[list[RowInfo], OutboxStats]:
        self.asked.append(("list", (limit, offset)))
        rows = sorted(self.rows.values(), key=lambda r: r.id)[offset : offset + limit]
        return rows, OutboxStats(
            pending=0, in_flight=0, dead=len(self.rows), delivered=5, oldest_pending_age=0.0
        )

    async def row(self, row_id: int) -> RowInfo | None:
        return self.rows.get(row_id)

    async def replay(self, rows: Selection) -> int:
        self.asked.append(("replay", rows))
        return len(self.rows) if rows == ALL else sum(1 for i in rows if i in self.rows)

    async def purge(self, rows: Selection) -> int:
        self.asked.append(("purge", rows))
        gone = list(self.rows) if rows == ALL else [i for i in rows if i in self.rows]
        for i in gone:
            del self.rows[i]
        return len(gone)


class Source:
    async def status(self) -> dict[str, Any]:
        return {"state": "running", "readiness": {"ready": True, "reasons": []}}

    def is_alive(self) -> bool:
        return True


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeDeadLetters, str]]:
    dead = FakeDeadLetters()
    server = AdminServer(Source(), BridgeMetrics(), host="127.0.0.1", port=0, dead_letters=dead)
    await server.start()
    try:
        yield dead, server.url
    finally:
        await server.stop()


async def test_dead_letters_are_listed_and_shown(served: tuple[FakeDeadLetters, str]) -> None:
    dead, url = served
    async with ClientSession() as http:
        async with http.get(f"{url}/outbox/dead?limit=2&offset=1") as r:
            assert r.status == 200
            doc = await r.json()
        assert [row["id"] for row in doc["rows"]] == [2, 3]
        assert "payload" not in doc["rows"][0]
        assert doc["stats"]["dead"] == 3
        assert dead.asked == [("list", (2, 1))]
        async with http.get(f"{url}/outbox/dead?limit=0") as r:
            assert (r.status, (await r.json())["error"]) == (400, "limit must be from 1 to 10000")
        async with http.get(f"{url}/outbox/rows/2") as r:
            assert (r.status, (await r.json())["payload"]) == (200, {"topicName": "v2.users.u1.presence"})
        async with http.get(f"{url}/outbox/rows/9") as r:
            assert (r.status, (await r.json())["error"]) == (
                404,
                "no row 9 (never stored, expired or purged)",
            )
        async with http.get(f"{url}/outbox/rows/x") as r:
            assert r.status == 400


async def test_replay_and_purge_take_a_json_selection(served: tuple[FakeDeadLetters, str]) -> None:
    dead, url = served
    async with ClientSession() as http:
        async with http.post(f"{url}/outbox/replay", json={"ids": [1, 7]}) as r:
            assert (r.status, await r.json()) == (200, {"replayed": 1})
        async with http.post(f"{url}/outbox/purge", json={"all": True}) as r:
            assert (r.status, await r.json()) == (200, {"purged": 3})
        # a form or plain-text post (what a web page may send anywhere without asking) changes nothing
        async with http.post(f"{url}/outbox/purge", data="ids=1") as r:
            assert r.status == 415
        async with http.post(
            f"{url}/outbox/replay", data=b"{nope", headers={"Content-Type": "application/json"}
        ) as r:
            assert (r.status, (await r.json())["error"]) == (400, "the body is not JSON")
        async with http.post(f"{url}/outbox/replay", json={"ids": [1], "all": True}) as r:
            assert r.status == 400
            assert "one of them" in (await r.json())["error"]
    assert dead.asked == [("replay", [1, 7]), ("purge", ALL)]


async def test_the_dead_letter_routes_answer_only_this_host() -> None:
    dead = FakeDeadLetters()
    server = AdminServer(Source(), BridgeMetrics(), dead_letters=dead)
    app = server.app()
    transport = mock.Mock()
    transport.get_extra_info.return_value = ("10.1.2.3", 40000)
    for method, path in (("GET", "/outbox/dead"), ("POST", "/outbox/purge")):
        request = make_mocked_request(method, path, app=app, transport=transport)
        match = await app.router.resolve(request)
        with pytest.raises(web.HTTPForbidden) as refused:
            await match.handler(request)
        assert b"answered only to this host" in refused.value.body  # type: ignore[operator]
    # from this host, but for a name that is not: a page that rebound its domain to 127.0.0.1
    transport.get_extra_info.return_value = ("127.0.0.1", 40000)
    for host, served in (("attacker.example:9464", False), ("127.0.0.1:9464", True), ("[::1]:9464", True)):
        request = make_mocked_request(
            "GET", "/outbox/dead", app=app, transport=transport, headers={"Host": host}
        )
        match = await app.router.resolve(request)
        if served:
            assert (await match.handler(request)).status == 200
        else:
            with pytest.raises(web.HTTPForbidden):
                await match.handler(request)
    assert dead.asked == [("list", (100, 0)), ("list", (100, 0))]
    assert _is_loopback("127.0.0.1")
    assert _is_loopback("::1")
    assert not _is_loopback("10.1.2.3")
    assert not _is_loopback(None)


async def test_without_an_outbox_there_are_no_dead_letter_routes() -> None:
    server = AdminServer(Source(), BridgeMetrics(), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with ClientSession() as http, http.get(f"{server.url}/outbox/dead") as r:
            assert r.status == 404
    finally:
        await server.stop()
