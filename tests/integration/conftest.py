"""Shared fixtures for integration tests: a running Genesys Cloud simulator and a small raw client for it; a
running ServiceNow simulator with its raw client (``sn``, from :mod:`sn_fixtures`)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest_asyncio

from gcbridge.sim.genesys import GenesysSim, SimConfig
from gcbridge.sim.servicenow import ServiceNowSim

from .sn_fixtures import SnClient, running_sim

SimFactory = Callable[..., Awaitable[GenesysSim]]


@pytest_asyncio.fixture
async def genesys_sim_factory() -> AsyncIterator[SimFactory]:
    """Start simulators with a custom :class:`SimConfig` (keyword arguments); all are stopped afterwards."""
    started: list[GenesysSim] = []

    async def make(**config: Any) -> GenesysSim:
        sim = GenesysSim(SimConfig(**config))
        await sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture
async def genesys_sim(genesys_sim_factory: SimFactory) -> GenesysSim:
    """A simulator with the default (spec) configuration, on 127.0.0.1 and a free port."""
    return await genesys_sim_factory()


class SimClient:
    """A deliberately thin raw client for the simulator's wire protocol (not the product's client)."""

    def __init__(self, sim: GenesysSim, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.token = ""

    @staticmethod
    def basic(client_id: str, secret: str) -> str:
        return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    async def get_token(self, client_id: str | None = None, secret: str | None = None) -> str:
        cfg = self.sim.config
        async with self.session.post(
            self.sim.base_url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": self.basic(client_id or cfg.client_id, secret or cfg.client_secret)},
        ) as resp:
            assert resp.status == 200, await resp.text()
            self.token = (await resp.json())["access_token"]
        return self.token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def api(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, Any, Any]:
        """(status, parsed JSON or None, headers) of one /api/v2 call."""
        all_headers = {**self.headers(token), **(headers or {})}
        async with self.session.request(
            method, self.sim.base_url + path, headers=all_headers, json=json, **kw
        ) as resp:
            text = await resp.text()
            body = await resp.json(content_type=None) if text else None
            return resp.status, body, resp.headers

    async def create_channel(self, token: str | None = None) -> dict[str, Any]:
        status, body, _ = await self.api(
            "POST",
            "/api/v2/notifications/channels",
            token=token,
            data="null",
            headers={"Content-Type": "application/json"},
        )
        assert status == 200, body
        return dict(body)

    async def subscribe(self, channel_id: str, topics: list[str], **kw: Any) -> tuple[int, Any]:
        status, body, _ = await self.api(
            "POST",
            f"/api/v2/notifications/channels/{channel_id}/subscriptions",
            json=[{"id": t} for t in topics],
            **kw,
        )
        return status, body

    async def connect(self, channel: dict[str, Any]) -> aiohttp.ClientWebSocketResponse:
        ws = await self.session.ws_connect(channel["connectUri"], autoping=True)
        await wait_for(
            lambda: (
                self.sim.channel(channel["id"]) is not None
                and channel["id"] in self.sim.connected_channel_ids
            )
        )
        return ws


async def wait_for(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``predicate()`` is true (polling; generous timeout for a loaded machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def next_json(
    ws: aiohttp.ClientWebSocketResponse, *, skip_heartbeats: bool = True, within: float = 10.0
) -> dict[str, Any]:
    """The next JSON message from the socket (heartbeats skipped unless asked for)."""
    while True:
        msg = await ws.receive(timeout=within)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data: dict[str, Any] = msg.json()
        if skip_heartbeats and data.get("eventBody") == {"message": "WebSocket Heartbeat"}:
            continue
        return data


@pytest_asyncio.fixture
async def sim_client(genesys_sim: GenesysSim) -> AsyncIterator[SimClient]:
    """A raw client bound to the default ``genesys_sim``, holding a fresh token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        client = SimClient(genesys_sim, session)
        await client.get_token()
        yield client


@pytest_asyncio.fixture
async def client_factory() -> AsyncIterator[Callable[[GenesysSim], SimClient]]:
    """Raw clients for simulators made by ``genesys_sim_factory`` (one shared session)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield lambda sim: SimClient(sim, session)


@pytest_asyncio.fixture
async def sn() -> AsyncIterator[tuple[ServiceNowSim, SnClient]]:
    """A ServiceNow simulator with the default users and OAuth client, and a raw client for it."""
    async with running_sim() as pair:
        yield pair
