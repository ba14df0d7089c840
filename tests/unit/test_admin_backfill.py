"""``POST /backfill`` on the admin endpoint (``gcbridge backfill`` while the service runs): what it accepts,
what it refuses, and only from this host. The whole path is in tests/e2e/test_service_backfill.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest import mock

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import make_mocked_request

from gcbridge.bridge.admin import AdminServer
from gcbridge.bridge.metrics import BridgeMetrics

TOPICS_ERROR = "topics must be a non-empty list of topic names, or left out"


class Source:
    def __init__(self) -> None:
        self.asked: list[tuple[float, float, list[str] | None]] = []

    async def status(self) -> dict[str, Any]:
        return {"state": "running", "readiness": {"ready": True, "reasons": []}}

    def is_alive(self) -> bool:
        return True

    async def backfill_by_hand(
        self, start: float, end: float, topics: Sequence[str] | None
    ) -> dict[str, Any]:
        self.asked.append((start, end, None if topics is None else list(topics)))
        return {"id": 1, "state": "done"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([1, 2], 'the body must be a JSON object: {"from": <unix seconds>, "to": <unix seconds>}'),
        ({"to": 2}, "from must be a time in UNIX seconds"),
        ({"from": "yesterday", "to": 2}, "from must be a time in UNIX seconds"),
        ({"from": 1, "to": True}, "to must be a time in UNIX seconds"),
        ({"from": 5, "to": 5}, "to must be after from"),
        ({"from": 1, "to": 2, "topics": []}, "topics must be a non-empty list of topic names, or left out"),
        (
            {"from": 1, "to": 2, "topics": ["a", 3]},
            "topics must be a non-empty list of topic names, or left out",
        ),
    ],
)
async def test_a_bad_request_is_one_clear_error(body: Any, error: str) -> None:
    source = Source()
    server = AdminServer(source, BridgeMetrics(), host="127.0.0.1", port=0, backfill=source)
    await server.start()
    try:
        async with ClientSession() as http, http.post(f"{server.url}/backfill", json=body) as r:
            assert (r.status, (await r.json())["error"]) == (400, error)
    finally:
        await server.stop()
    assert source.asked == []


async def test_a_good_request_runs_a_job_and_answers_its_document() -> None:
    source = Source()
    server = AdminServer(source, BridgeMetrics(), host="127.0.0.1", port=0, backfill=source)
    await server.start()
    try:
        async with ClientSession() as http:
            async with http.post(f"{server.url}/backfill", json={"from": 10, "to": 20.5}) as r:
                assert (r.status, await r.json()) == (200, {"job": {"id": 1, "state": "done"}})
            body = {"from": 10, "to": 20, "topics": ["v2.users.u1.presence"]}
            async with http.post(f"{server.url}/backfill", json=body) as r:
                assert r.status == 200
            async with http.post(f"{server.url}/backfill", data="from=1&to=2") as r:
                assert r.status == 415  # only JSON: a web page cannot send it to another origin unasked
    finally:
        await server.stop()
    assert source.asked == [(10.0, 20.5, None), (10.0, 20.0, ["v2.users.u1.presence"])]


async def test_the_backfill_route_answers_only_this_host() -> None:
    source = Source()
    app = AdminServer(source, BridgeMetrics(), backfill=source).app()
    transport = mock.Mock()
    transport.get_extra_info.return_value = ("10.1.2.3", 40000)
    request = make_mocked_request("POST", "/backfill", app=app, transport=transport)
    match = await app.router.resolve(request)
    with pytest.raises(web.HTTPForbidden) as refused:
        await match.handler(request)
    assert b"back-fill requests are answered only to this host" in refused.value.body  # type: ignore[operator]


async def test_without_back_fill_there_is_no_route() -> None:
    app = AdminServer(Source(), BridgeMetrics()).app()
    request = make_mocked_request("POST", "/backfill", app=app)
    match = await app.router.resolve(request)
    assert match.http_exception is not None
