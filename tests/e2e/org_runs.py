"""Runs of the service against one seeded simulated org, as real processes, for the back-fill comparison.

A :class:`OrgRun` is three processes: ``gcbridge sim genesys --org`` (its org clock stopped), ``gcbridge sim
servicenow`` and ``gcbridge run``. Several runs are started with the same org seed and start, and one
:class:`OrgClock` moves all their org clocks by the same steps, following the wall clock: every run sees the
same world at the same simulated instants, and a gap the service measures in wall-clock time is the same
interval in the org's time, which is what back-fill queries. (A faster org clock would put the org's
conversations outside the interval the service asks for.) The org's durations are shortened instead
(``ORG_SETTINGS``), so that conversations start and end within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gcbridge.sim.processes import SimulatorProcess, simulator_process

from .bridge_process import Bridge, write_service_config
from .conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER

GENESYS_CLIENT = "gcbridge-backfill-e2e"

#: A small, busy org whose calls last seconds (simulated seconds = wall seconds here): about one call every
#: 4 s over 8 agents and 2 queues, talk ~10 s, wrap-up ~4 s, presence changes ~every 40 s.
ORG_SETTINGS = {
    "mean_talk": 10,
    "mean_hold": 3,
    "mean_patience": 12,
    "mean_wrapup": 4,
    "mean_presence": 40,
    "alert_timeout": 3,
    "not_responding": 8,
}
ORG_USERS, ORG_QUEUES, CALLS_PER_HOUR = 8, 2, 900

#: How often (wall seconds) the org clock catches up with the wall clock.
TICK = 0.25
#: The org starts this long (seconds) before the runs: its first step publishes that history to every
#: service at once, so that each has heard of every agent's presence and routing status and every queue's
#: counts before any fault (the Notification API sends changes only, so nothing else would tell a service
#: the state an entity had before it subscribed, and back-fill would then know more than the clean run).
HISTORY = 600.0

#: Queue observations into their own table. The default mapping reads ``data[?metric==...]``, the shape of
#: the observations *query*; the topic's body nests the metrics one level down (``data[].metrics[]``), so
#: the default maps no count at all. Counts that are zero are left out of the body: ``default = "0"``.
QUEUE_STATS_RULE = """
[[servicenow.mapping.rules]]
name = "queue_observations"
topics = ["v2.analytics.queues.*.observations"]
sink = "import_set"
target = "u_genesys_queue_stats_import"
key = "{topic_parts[3]}"
key_field = "u_queue_id"
[servicenow.mapping.rules.fields]
u_media_type = "{body.group.mediaType}"
u_observed_at = "{received_at}"
u_waiting = { value = "{body.data[0].metrics[?metric=='oWaiting'].stats.count}", default = "0" }
u_alerting = { value = "{body.data[0].metrics[?metric=='oAlerting'].stats.count}", default = "0" }
u_interacting = { value = "{body.data[0].metrics[?metric=='oInteracting'].stats.count}", default = "0" }
u_off_queue_users = { value = "{body.data[0].metrics[?metric=='oOffQueueUsers'].stats.count}", default = "0" }
u_on_queue_idle = { value = "{body.data[0].metrics[?qualifier=='IDLE'].stats.count}", default = "0" }
[servicenow.mapping.rules.fields.u_on_queue_interacting]
value = "{body.data[0].metrics[?qualifier=='INTERACTING'].stats.count}"
default = "0"
[servicenow.mapping.rules.fields.u_on_queue_not_responding]
value = "{body.data[0].metrics[?qualifier=='NOT_RESPONDING'].stats.count}"
default = "0"
"""


def org_args(seed: int, start: float) -> list[str]:
    settings = [arg for name, value in ORG_SETTINGS.items() for arg in ("--org-setting", f"{name}={value}")]
    return [
        "genesys",
        "--port",
        "0",
        "--client-id",
        GENESYS_CLIENT,
        "--client-secret",
        GENESYS_SECRET,
        "--heartbeat",
        "1",
        "--org",
        "--org-seed",
        str(seed),
        "--org-users",
        str(ORG_USERS),
        "--org-queues",
        str(ORG_QUEUES),
        "--org-calls-per-hour",
        str(CALLS_PER_HOUR),
        "--org-time-scale",
        "0",
        "--org-start",
        repr(start),
        *settings,
    ]


def topics_of(org: dict[str, Any]) -> list[str]:
    """Every topic of the org that can be subscribed without knowing a conversation id (detail events are
    per conversation, so a service cannot follow them for conversations yet to come)."""
    topics = []
    for user in org["users"]:
        topics += [f"v2.users.{user['id']}.{kind}" for kind in ("presence", "routingStatus", "conversations")]
    for queue in org["queues"]:
        topics += [
            f"v2.routing.queues.{queue['id']}.conversations",
            f"v2.analytics.queues.{queue['id']}.observations",
        ]
    return topics


#: What the back-fill runs add to the common configuration: stall detection within ~7 s (the simulator's
#: heartbeat is 1 s; generous enough that a loaded machine does not fake a stall in the clean run),
#: back-fill soon after a gap (the simulated org has no analytics lag) and retried soon, and the queue
#: observations rule.
SERVICE_EXTRA = f"""
[genesys.client]
heartbeat_timeout = 8.0
ping_interval = 4.0
pong_timeout = 3.0

[backfill]
delay = 2.0
retry_initial = 2.0
retry_max = 10.0

[servicenow.mapping]
include_defaults = true
{QUEUE_STATS_RULE}"""


@dataclass
class OrgRun:
    """One service with its two simulators."""

    name: str
    directory: Path
    genesys: SimulatorProcess
    servicenow: SimulatorProcess
    bridge: Bridge
    http: aiohttp.ClientSession

    async def sim(self, method: str, url: str, body: Any = None) -> Any:
        async with self.http.request(method, url, json=body) as resp:
            text = await resp.text()
            assert resp.status == 200, f"{self.name}: {method} {url} -> {resp.status} {text}"
            return orjson.loads(text)

    async def genesys_control(self, operation: str, **params: Any) -> Any:
        return await self.sim("POST", f"{self.genesys.base_url}/_sim/{operation}", params)

    async def records(self, table: str) -> list[dict[str, str]]:
        doc = await self.sim("GET", f"{self.servicenow.base_url}/_sim/records/{table}")
        records: list[dict[str, str]] = doc["result"]
        return records

    async def caught_up(self) -> bool:
        """Whether this service process received every event the simulator wrote to its channels (exact for
        a process that kept one channel, as every process here does once the faults are over)."""
        status = await self.bridge.status()
        if status is None:
            return False
        channels = {c["id"] for c in status["genesys"]["channels"]}
        ledger = await self.sim("GET", f"{self.genesys.base_url}/_sim/ledger")
        sent = sum(
            any(d["sent"] and d["channelId"] in channels for d in record["deliveries"])
            for record in ledger["records"]
        )
        received: int = status["genesys"]["events_received"]
        return received >= sent

    async def settled(self) -> None:
        """Until the service has received what was sent to it and delivered everything it stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not await self.caught_up():
            assert loop.time() < deadline, (
                f"{self.name}: events sent were never received:\n{self.bridge.tail()}"
            )
            await asyncio.sleep(0.2)
        await self.bridge.wait_settled()

    def journal(self) -> list[dict[str, Any]]:
        path = self.directory / "state" / "gcbridge-gaps.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def outbox_payloads(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.directory / "state" / "outbox.db") as db:
            rows = db.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        return [orjson.loads(payload) for (payload,) in rows]


@asynccontextmanager
async def org_runs(
    tmp_path: Path, names: Iterable[str], seed: int
) -> AsyncIterator[tuple[list[OrgRun], OrgClock]]:
    """Start one :class:`OrgRun` per name (same org seed and start), each service ready, and the clock that
    moves their orgs (not yet moving); stop them all."""
    start = float(int(time.time())) - HISTORY
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)))
        runs = []
        for name in names:
            directory = tmp_path / name
            directory.mkdir()
            genesys = await stack.enter_async_context(simulator_process(*org_args(seed, start)))
            servicenow = await stack.enter_async_context(
                simulator_process("servicenow", "--port", "0", "--user", f"{SN_USER}:{SN_PASSWORD}")
            )
            async with http.get(f"{genesys.base_url}/_sim/org") as resp:
                org = await resp.json()
            config = write_service_config(
                directory,
                genesys.base_url,
                GENESYS_CLIENT,
                topics_of(org),
                servicenow.base_url,
                extra=SERVICE_EXTRA,
            )
            bridge = Bridge(config, directory / "bridge.log")
            stack.push_async_callback(_stop, bridge)
            runs.append(OrgRun(name, directory, genesys, servicenow, bridge, http))
        await asyncio.gather(*(run.bridge.start() for run in runs))
        await asyncio.gather(*(run.bridge.wait_ready() for run in runs))
        clock = OrgClock(runs, start)
        try:
            yield runs, clock
        finally:
            await clock.freeze()


async def _stop(bridge: Bridge) -> None:
    if bridge.proc is not None and bridge.proc.returncode is None:
        await bridge.terminate()


class OrgClock:
    """Moves the org clocks of several simulators by the same steps, so that their worlds stay identical.

    Each step is the wall-clock time since the last one (the org clocks follow the wall clock, a tick
    behind), until :meth:`freeze`; a step is sent to every simulator before the next one is taken, and never
    interrupted halfway (a stop request waits for the step in progress).
    """

    def __init__(self, runs: list[OrgRun], start: float) -> None:
        self.runs = runs
        self.now = start
        self.steps = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def advance_to(self, moment: float) -> None:
        step = moment - self.now
        if step <= 0:
            return
        answers = await asyncio.gather(
            *(
                run.sim("POST", f"{run.genesys.base_url}/_sim/org/advance", {"seconds": step})
                for run in self.runs
            )
        )
        self.now = moment
        self.steps += 1
        assert len({a["now"] for a in answers}) == 1, f"the org clocks differ: {answers}"

    def follow_wall_clock(self) -> None:
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        while not self._stop.is_set():
            await self.advance_to(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK)

    async def freeze(self) -> float:
        """Stop following the wall clock (after the step in progress); returns the org time where every org
        stays. A failed step fails here."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        return self.now
