"""Helpers for ServiceNow simulator tests: a running simulator, a thin raw HTTP client for it, and the
writer's session and configuration pointed at it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from gcbridge.bridge.mapping import MappingConfig, MappingRule
from gcbridge.bridge.router import ServiceNowSection
from gcbridge.servicenow import BasicAuthConfig, create_session
from gcbridge.sim.servicenow import ServiceNowSim, SnSimConfig

USERS = {"admin": "admin-pass", "bridge": "bridge-pass"}
CLIENTS = {"cid": "csecret"}


def basic(user: str = "admin", password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password or USERS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when the answer is not JSON
    headers: Any
    text: str


class SnClient:
    """A deliberately thin raw client (not the product's writer): one request, one :class:`Answer`."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: dict[str, str] | None = None,
    ) -> Answer:
        all_headers = {"Accept": "application/json", **(basic() if auth is None else auth), **(headers or {})}
        async with self.session.request(
            method, self.base_url + path, json=json, data=data, params=params, headers=all_headers
        ) as resp:
            text = await resp.text()
            body: Any = text
            if resp.content_type == "application/json" and text:
                body = await resp.json()
            return Answer(resp.status, body, resp.headers, text)


def sim_config(**overrides: Any) -> SnSimConfig:
    settings: dict[str, Any] = {"users": dict(USERS), "oauth_clients": dict(CLIENTS)}
    settings.update(overrides)
    return SnSimConfig(**settings)


@asynccontextmanager
async def started_sim(
    config: SnSimConfig | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[ServiceNowSim]:
    """A simulator on ``host`` and a free port, stopped on exit."""
    sim = ServiceNowSim(config or sim_config())
    await sim.start(host, 0)
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def writer_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The writer's own HTTP session (:func:`gcbridge.servicenow.create_session`), closed on exit."""
    session = create_session()
    try:
        yield session
    finally:
        await session.close()


def localhost_url(sim: ServiceNowSim) -> str:
    """The simulator's base URL by hostname (``localhost``), as a real instance URL would be named."""
    assert sim.base_url is not None
    return sim.base_url.replace("127.0.0.1", "localhost")


def basic_writer_config(url: str, rules: list[MappingRule] | None = None) -> ServiceNowSection:
    """The writer's configuration for ``url``: Basic auth as ``admin``, the given mapping ``rules``."""
    return ServiceNowSection(
        instance_url=url,
        auth=BasicAuthConfig(username="admin", password=SecretStr(USERS["admin"])),
        mapping=MappingConfig(rules=rules),
    )


@asynccontextmanager
async def running_sim(
    config: SnSimConfig | None = None,
    *,
    host: str = "127.0.0.1",
    cookie_jar: aiohttp.abc.AbstractCookieJar | None = None,
) -> AsyncIterator[tuple[ServiceNowSim, SnClient]]:
    """A simulator on ``host`` and a free port, with a client that keeps no cookies unless given a jar."""
    async with (
        started_sim(config, host) as sim,
        aiohttp.ClientSession(
            cookie_jar=cookie_jar if cookie_jar is not None else aiohttp.DummyCookieJar()
        ) as session,
    ):
        assert sim.base_url is not None
        yield sim, SnClient(sim.base_url, session)


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
