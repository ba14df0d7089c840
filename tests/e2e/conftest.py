"""Shared helpers of the service end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gcbridge.bridge.config import BridgeConfig, parse_config
from gcbridge.bridge.mapping import compile_mapping, event_view
from gcbridge.bridge.service import BridgeService
from gcbridge.genesys.events import Event, Gap
from gcbridge.sim.genesys.bodies import BodyGenerator
from gcbridge.sim.processes import kill_children
from gcbridge.sim.servicenow.config import SnSimConfig
from gcbridge.sim.servicenow.sim import ServiceNowSim
from tests.logging_state import restored_logging

SN_USER = "bridge-user"
# Distinctive strings: a test greps every output of the service for them.
GENESYS_SECRET = "GSECRET-7f3a9c1e-do-not-print"
SN_PASSWORD = "SNPASS-2b8d4e6f-do-not-print"

_MAPPING = compile_mapping(None)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """These tests configure the process-wide logging; leave it as other tests expect it."""
    with restored_logging():
        yield


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way leaves no ``gcbridge`` process running into the next one."""
    yield
    kill_children()


async def wait_for(
    predicate: Callable[[], Any], limit: float = 60.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it is truthy; fail with ``what`` after ``limit`` seconds (loaded CI)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(interval)


async def run_gcbridge(
    *args: str, env: dict[str, str] | None = None, within: float = 120
) -> tuple[int, str, str]:
    """``python -m gcbridge *args`` to its end, without blocking this event loop: (exit code, stdout, stderr).

    ``env`` is laid over this process's environment; the terminal is 160 columns wide so tables do not wrap.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gcbridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def expected_interactions(events: list[Event]) -> dict[str, dict[str, str]]:
    """Fold the mapped fields of conversation events, in order, into the state ServiceNow should hold
    (per conversation id; the transform map strips the ``u_`` prefix and maps the key to correlation_id)."""
    state: dict[str, dict[str, str]] = {}
    for event in events:
        rule = _MAPPING.rule_for(event.topic)
        if rule is None or rule.name != "conversations":
            continue
        record = _MAPPING.map_event(event_view(event))
        fields = getattr(record, "fields", None)
        if fields is None:
            continue
        target = state.setdefault(record.key, {})  # type: ignore[union-attr]
        for name, value in fields.items():
            column = "correlation_id" if name == "u_conversation_id" else name.removeprefix("u_")
            target[column] = value
    return state


def check_interactions(records: list[dict[str, str]], expected: dict[str, dict[str, str]]) -> None:
    """No missing, no duplicate records; each record's fields are the folded last state."""
    by_conversation: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_conversation.setdefault(record.get("correlation_id", ""), []).append(record)
    duplicates = {k: len(v) for k, v in by_conversation.items() if len(v) > 1}
    assert not duplicates, f"duplicate records per conversation: {duplicates}"
    missing = sorted(set(expected) - set(by_conversation))
    assert not missing, f"{len(missing)} conversations have no record, e.g. {missing[:3]}"
    unexpected = sorted(set(by_conversation) - set(expected))
    assert not unexpected, f"records for conversations never sent: {unexpected[:3]}"
    wrong = []
    for conversation, fields in expected.items():
        record = by_conversation[conversation][0]
        for column, value in fields.items():
            if column in record and record[column] != value:
                wrong.append((conversation, column, record[column], value))
    assert not wrong, f"{len(wrong)} fields differ from the last event's, e.g. {wrong[:3]}"


QUEUE = "5e1f0001-0000-4000-8000-000000000001"
TOPICS = [
    f"v2.routing.queues.{QUEUE}.conversations",
    "v2.users.a9e70001-0000-4000-8000-000000000001.presence",
]


class ScriptedClient:
    """Stands in for NotificationClient: the test pushes events and gaps; it records subscriptions."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | Gap | None] = asyncio.Queue()
        self.subscribed: list[str] = []
        self.calls: list[tuple[str, list[str]]] = []
        self.closed = False

    async def start(self) -> None:
        self.calls.append(("start", []))

    async def subscribe(self, topics: list[str]) -> None:
        self.calls.append(("subscribe", list(topics)))
        self.subscribed += [t for t in topics if t not in self.subscribed]

    async def unsubscribe(self, topics: list[str]) -> None:
        self.calls.append(("unsubscribe", list(topics)))
        self.subscribed = [t for t in self.subscribed if t not in topics]

    def on_lifecycle(self, callback: Any) -> None:
        self.callback = callback

    def stats(self) -> dict[str, Any]:
        return {
            "channels": [
                {
                    "id": "streaming-0-abc",
                    "shard": 0,
                    "state": "connected",
                    "topic_count": len(self.subscribed),
                    "last_frame_at": time.time(),
                }
            ],
            "events_received": 0,
        }

    def __aiter__(self) -> AsyncIterator[Event | Gap]:
        return self

    async def __anext__(self) -> Event | Gap:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)


def make_events(n: int, seed: int = 3) -> list[Event]:
    bodies = BodyGenerator(seed, conversation_pool=12)
    events = []
    for i in range(n):
        topic = TOPICS[0] if i % 4 else TOPICS[1]
        events.append(
            Event(
                topic=topic,
                body=bodies.body(topic),
                version="2",
                metadata={"seq": i},
                dedup_key=str(uuid.uuid4()),
                received_at=time.time(),
            )
        )
    return events


def service_config(tmp_path: Path, sn_url: str, topics: list[str]) -> BridgeConfig:
    return parse_config(
        {
            "genesys": {
                "base_url": "http://127.0.0.1:9",
                "client_id": "cid",
                "client_secret": GENESYS_SECRET,
                "topics": topics,
            },
            "servicenow": {
                "instance_url": sn_url,
                "auth": {"kind": "basic", "username": SN_USER, "password": SN_PASSWORD},
            },
            "outbox": {"path": "outbox.db", "dispatcher": {"backoff_initial": 0.05, "backoff_max": 0.5}},
            "admin": {"port": 0},
        },
        base_dir=tmp_path,
    )


@pytest.fixture
async def sn() -> AsyncIterator[ServiceNowSim]:
    sim = ServiceNowSim(SnSimConfig(users={SN_USER: SN_PASSWORD}))
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def running_service(
    tmp_path: Path, sn: ServiceNowSim, client: ScriptedClient
) -> AsyncIterator[BridgeService]:
    """The service in this process, fed by ``client``, writing to ``sn`` (``service_config`` over ``TOPICS``,
    no signal handlers); stopped on exit."""
    assert sn.base_url is not None
    service = BridgeService(
        service_config(tmp_path, sn.base_url, TOPICS), install_signals=False, client_factory=lambda _c: client
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
