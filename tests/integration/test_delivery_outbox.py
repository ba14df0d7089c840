"""End to end from the durable outbox into the ServiceNow simulator: crashes, outages, 429 storms, poison.

Simulated time: the simulator, the dispatcher and the writer share a :class:`WarpClock` (wall time plus an
offset the test moves forward), so a five-minute outage or an hourly rate-limit window takes a fraction of a
second and nothing depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from gcbridge.bridge.mapping import MappingRule, event_to_outbox_item
from gcbridge.bridge.router import Router, ServiceNowSection, build_router
from gcbridge.core.backoff import BackoffPolicy
from gcbridge.genesys.events import Event
from gcbridge.outbox import Dispatcher, OutboxItem, SqliteOutbox
from gcbridge.servicenow import BasicAuthConfig
from gcbridge.sim.servicenow import AutoMap, ServiceNowSim, SnSimConfig, TransformMap
from tests.library_logs import capture_logs

from .sn_fixtures import basic_writer_config, localhost_url, started_sim, writer_session

QUEUE_TOPIC = "v2.routing.queues.q-1.conversations"
STATES = ("alerting", "connected", "disconnected")


class WarpClock:
    """Wall-clock seconds plus an offset that the test advances."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def warp() -> WarpClock:
    return WarpClock()


@pytest.fixture
async def sim(warp: WarpClock) -> AsyncIterator[ServiceNowSim]:
    async with started_sim(SnSimConfig(users={"admin": "admin-pass"}, clock=warp)) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with writer_session() as s:
        yield s


def config(sim: ServiceNowSim, rules: list[MappingRule] | None = None) -> ServiceNowSection:
    return basic_writer_config(localhost_url(sim), rules)


def conversation(conv_id: str, state: str) -> dict[str, Any]:
    return {
        "id": conv_id,
        "participants": [
            {"purpose": "customer", "address": "tel:+15550100", "calls": [{"state": state}]},
            {"purpose": "agent", "userId": "u-1", "calls": [{"state": state}]},
        ],
    }


def items(
    router: Router,
    conversations: int,
    states: tuple[str, ...] = STATES,
    topic: str = QUEUE_TOPIC,
    start: int = 0,
) -> list[OutboxItem]:
    """``conversations`` conversations, each going through ``states`` (in order, per key)."""
    out = []
    for state in states:
        for i in range(start, start + conversations):
            event = Event(topic, conversation(f"c-{i}", state), "2", {}, f"c-{i}-{state}", 1.7e9)
            item = event_to_outbox_item(event, router.mapping)
            assert item is not None
            out.append(item)
    return out


def dispatcher(store: SqliteOutbox, router: Router, warp: WarpClock, **kwargs: Any) -> Dispatcher:
    options: dict[str, Any] = {
        "concurrency": 8,
        "backoff": BackoffPolicy(initial=1.0, cap=30.0),  # simulated seconds
        "idle_poll": 0.02,
        "housekeeping_interval": 0,
        "clock": warp,
    }
    options.update(kwargs)
    return Dispatcher(store, router, **options)


async def run_until_settled(
    store: SqliteOutbox,
    disp: Dispatcher,
    warp: WarpClock,
    *,
    step: float = 1.0,
    on_tick: Callable[[], None] | None = None,
    limit: float = 60.0,
) -> None:
    """Run the dispatcher, moving simulated time ``step`` seconds per tick, until nothing is pending."""
    task = asyncio.create_task(disp.run())
    deadline = time.monotonic() + limit
    try:
        while True:
            stats = await store.stats(warp())
            if stats.pending == 0 and stats.in_flight == 0:
                break
            assert time.monotonic() < deadline, f"not settled: {stats}"
            if on_tick is not None:
                on_tick()
            warp.offset += step
            disp.notify()
            await asyncio.sleep(0.01)
    finally:
        await disp.drain(timeout=5)
        await task


def interactions_by_conversation(sim: ServiceNowSim) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for record in sim.records("interaction"):
        out.setdefault(record["correlation_id"], []).append(record)
    return out


def assert_one_closed_record_each(sim: ServiceNowSim, conversations: int) -> None:
    found = interactions_by_conversation(sim)
    assert sorted(found) == sorted(f"c-{i}" for i in range(conversations))
    assert all(len(records) == 1 for records in found.values()), "duplicate records"
    assert {records[0]["state"] for records in found.values()} == {"closed_complete"}  # the last update won


# ---- crashes -------------------------------------------------------------------------------------------


async def test_crash_between_outbox_commit_and_the_write(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    router = build_router(config(sim), session, wall_clock=warp)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    await store.put_many(items(router, 10))
    claimed = await store.claim(8, warp())  # the process claimed rows, then died before writing
    assert len(claimed) == 8
    await store.close()
    assert sim.records("interaction") == []

    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    assert store.recovered_on_open == 8
    await run_until_settled(store, dispatcher(store, router, warp), warp)
    stats = await store.stats(warp())
    await store.close()
    assert (stats.delivered, stats.dead) == (30, 0)
    assert_one_closed_record_each(sim, 10)


TABLE_RULE = MappingRule(
    name="incidents",
    topics=["v2.routing.queues.*.conversations"],
    sink="table",
    target="incident",
    key="{body.id}",
    fields={
        "short_description": "Genesys call {body.id}",
        "description": "{body.participants[0].calls[0].state}",
    },
)


@pytest.mark.parametrize("sink", ["import_set", "table"])
async def test_crash_between_the_write_and_marking_it_done(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession, sink: str
) -> None:
    rules = [TABLE_RULE] if sink == "table" else None
    router = build_router(config(sim, rules), session, wall_clock=warp)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    await store.put_many(items(router, 6))
    claimed = await store.claim(6, warp())
    written = await asyncio.gather(*(router.deliver(row) for row in claimed))  # written, never acked: died
    assert {type(o).__name__ for o in written} == {"Delivered"}
    await store.close()

    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    assert store.recovered_on_open == 6
    await run_until_settled(store, dispatcher(store, router, warp), warp)
    stats = await store.stats(warp())
    await store.close()
    assert (stats.delivered, stats.dead) == (18, 0)
    if sink == "table":
        records = sim.records("incident")
        assert Counter(r["correlation_id"] for r in records) == Counter({f"c-{i}": 1 for i in range(6)})
        assert {r["description"] for r in records} == {"disconnected"}
    else:
        assert_one_closed_record_each(sim, 6)
        # the re-sent first updates were coalesced onto the records the dead process had created
        statuses = Counter(row.results[0]["status"] for s in sim.import_sets for row in s.rows)
        assert statuses["inserted"] == 6
        assert statuses["ignored"] + statuses["updated"] == 18


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pydantic import SecretStr
    from gcbridge.outbox import Dispatcher, SqliteOutbox
    from gcbridge.bridge.router import ServiceNowSection, build_router
    from gcbridge.servicenow import BasicAuthConfig, create_session

    async def main(db, url, kill_after):
        store = await SqliteOutbox.open(db)
        session = create_session()
        router = build_router(ServiceNowSection(instance_url=url, auth=BasicAuthConfig(
            username="admin", password=SecretStr("admin-pass"))), session)
        written = 0

        class DieAfterWrite:
            async def deliver(self, row):
                nonlocal written
                outcome = await router.deliver(row)
                written += 1
                if written >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)  # after the write, before the ack
                return outcome

        await Dispatcher(store, DieAfterWrite(), concurrency=4, idle_poll=0.05).run()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_sigkill_after_a_write_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    db = tmp_path / "outbox.db"
    router = build_router(config(sim), session, wall_clock=warp)
    store = await SqliteOutbox.open(db)
    await store.put_many(items(router, 8))
    await store.close()

    assert sim.base_url is not None
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(db),
        localhost_url(sim),
        "10",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    written_before_kill = len([r for r in sim.requests if r.path.startswith("/api/now/import/")])
    assert 10 <= written_before_kill < 24

    store = await SqliteOutbox.open(db)
    assert store.recovered_on_open >= 1
    await run_until_settled(store, dispatcher(store, router, warp), warp)
    stats = await store.stats(warp())
    await store.close()
    assert (stats.delivered, stats.dead) == (24, 0)
    assert_one_closed_record_each(sim, 8)


# ---- outage and rate limits ----------------------------------------------------------------------------


async def test_a_five_minute_outage_is_ridden_out(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    router = build_router(config(sim), session, wall_clock=warp)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    await store.put_many(items(router, 12))
    outage_ends = warp() + 300.0
    sim.inject(503, count=10**9)
    sim.hibernate(False)

    def end_outage() -> None:
        if warp() >= outage_ends:
            sim.reset_faults()

    disp = dispatcher(store, router, warp)
    await run_until_settled(store, disp, warp, step=2.0, on_tick=end_outage)
    stats = await store.stats(warp())
    await store.close()
    assert (stats.delivered, stats.dead) == (36, 0)
    assert disp.counters.retried > 0
    failed = [r for r in sim.requests if r.status == 503]
    assert failed, "the outage never happened"
    outage = max(r.at for r in failed) - min(r.at for r in failed)
    assert outage >= 270, "the writer stopped trying during the outage"  # backoff is capped at 30 s
    assert_one_closed_record_each(sim, 12)


async def test_a_429_storm_slows_the_writer_without_losing_anything(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    conversations = 15
    router = build_router(config(sim), session, wall_clock=warp)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    await store.put_many(items(router, conversations))
    sim.set_rate_limit(12)  # per hour; 45 rows need four windows
    fast_backoff = BackoffPolicy(initial=0.001, cap=0.01)  # without Retry-After this would hammer
    disp = dispatcher(store, router, warp, backoff=fast_backoff)
    await run_until_settled(store, disp, warp, step=60.0)
    stats = await store.stats(warp())
    await store.close()
    assert (stats.delivered, stats.dead) == (3 * conversations, 0)
    assert_one_closed_record_each(sim, conversations)
    api = [r for r in sim.requests if r.path.startswith("/api/")]
    limited = Counter(int(r.at // 3600) for r in api if r.status == 429)
    assert limited, "the rate limit never applied"
    # Honouring Retry-After: a row that got a 429 waits for the next window, so no window sees more 429s
    # than there are rows (with the 1 ms backoff alone a row burns its 100 attempts and is dead-lettered).
    assert max(limited.values()) <= 3 * conversations


# ---- poison and replay ---------------------------------------------------------------------------------


async def tick_until(
    disp: Dispatcher, warp: WarpClock, done: Callable[[], Awaitable[bool]], *, step: float = 1.0
) -> None:
    """Move simulated time ``step`` seconds per tick until ``done()`` (the dispatcher runs meanwhile)."""
    deadline = time.monotonic() + 60.0
    while not await done():
        assert time.monotonic() < deadline, "condition not reached"
        warp.offset += step
        disp.notify()
        await asyncio.sleep(0.01)


async def test_a_missing_staging_table_holds_every_row_until_it_exists_and_poison_rows_die_alone(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    typo = MappingRule(
        name="presence",
        topics=["v2.users.*.presence"],
        sink="import_set",
        target="u_genesys_presense_import",
        key="{topic_parts[2]}",
        key_field="u_user_id",
        fields={"u_presence": "{body.presenceDefinition.systemPresence}"},
    )
    conversations = MappingRule(
        name="conversations",
        topics=["v2.routing.queues.*.conversations"],
        sink="import_set",
        target="u_genesys_interaction_import",
        key="{body.id}",
        key_field="u_conversation_id",
        fields={"u_state": "{body.participants[0].calls[0].state}"},
    )
    router = build_router(config(sim, [typo, conversations]), session, wall_clock=warp)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    presence = Event(
        "v2.users.u-1.presence", {"presenceDefinition": {"systemPresence": "Busy"}}, "2", {}, "p1", 1.0
    )
    batch = items(router, 5, states=("connected",))
    item = event_to_outbox_item(presence, router.mapping)
    assert item is not None
    await store.put_many([item, *batch])
    sim.fail_transform("u_genesys_interaction_import", 1, "Target record not found")
    disp = dispatcher(store, router, warp, concurrency=1)
    task = asyncio.create_task(disp.run())

    async def paused() -> bool:
        return disp.health.paused

    await tick_until(disp, warp, paused)
    assert disp.health.condition is not None
    assert disp.health.condition.kind == "missing_table"
    assert "u_genesys_presense_import" in disp.health.condition.summary
    # a few probes later: still nothing dead-lettered because of the missing table, nothing delivered
    warp.offset += 10
    await asyncio.sleep(0.1)
    stats = await store.stats(warp())
    assert (stats.dead, stats.delivered) == (0, 0)
    assert disp.counters.outages == 1
    (held,) = [r for r in [await store.inspect(1)] if r is not None]
    assert held.attempts == 0  # held rows keep their attempts: they did nothing wrong

    sim.add_transform_map(
        "u_genesys_presense_import",
        TransformMap(
            name="fix", target_table="u_genesys_presence", coalesce=["u_user_id"], auto_map=AutoMap.SAME
        ),
    )

    async def settled() -> bool:
        s = await store.stats(warp())
        return s.pending == 0 and s.in_flight == 0

    await tick_until(disp, warp, settled)
    await disp.drain(timeout=5)
    await task
    assert not disp.health.paused
    stats = await store.stats(warp())
    dead = await store.dead_letters()
    await store.close()
    # only the row-level poison (a transform error) is dead-lettered, with its reason
    assert (stats.delivered, stats.dead) == (5, 1)
    assert "error: Target record not found" in (dead[0].last_error or "")
    (user,) = sim.records("u_genesys_presence")
    assert user["u_presence"] == "Busy"
    assert len(sim.records("interaction")) == 4


async def test_a_wrong_password_is_one_outage_and_a_restart_after_the_fix_delivers_at_once(
    tmp_path: Path, sim: ServiceNowSim, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    wrong = config(sim).model_copy(
        update={"auth": BasicAuthConfig(username="admin", password=SecretStr("not-the-password"))}
    )
    router = build_router(wrong, session, wall_clock=warp)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    await store.put_many(items(router, 40, states=("connected",)))
    disp = dispatcher(store, router, warp)
    with capture_logs() as logs:
        task = asyncio.create_task(disp.run())

        async def paused() -> bool:
            return disp.health.paused

        await tick_until(disp, warp, paused)
        for _ in range(30):  # half a simulated minute of probing
            warp.offset += 1
            disp.notify()
            await asyncio.sleep(0.01)
        await disp.drain(timeout=5)
        await task
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == [
        "ServiceNow deliveries paused: ServiceNow rejected the credentials (HTTP 401)"
    ]
    assert "[servicenow.auth]" in errors[0]["what_to_do"]
    assert not [e for e in logs if e["event"] == "outbox delivery will be retried"]
    assert disp.health.condition is not None
    assert disp.health.condition.kind == "credentials"
    stats = await store.stats(warp())
    assert (stats.pending, stats.dead, stats.delivered) == (40, 0, 0)
    assert all(r.attempts == 0 for r in [await store.inspect(i) for i in range(1, 41)] if r is not None)
    await store.close()

    # the operator fixes the password and restarts: everything goes at once, without moving the clock
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    fixed = dispatcher(store, build_router(config(sim), session, wall_clock=warp), warp)
    task = asyncio.create_task(fixed.run())
    deadline = time.monotonic() + 30
    while (await store.stats(warp())).delivered < 40:
        assert time.monotonic() < deadline, await store.stats(warp())
        await asyncio.sleep(0.02)
    await fixed.drain(timeout=5)
    await task
    await store.close()
    assert len(sim.records("interaction")) == 40


# ---- coalescing ----------------------------------------------------------------------------------------

BURST_STATES = ("alerting", *["connected"] * 17, "disconnected", "disconnected")


def whole_state(conv_id: str, update: int) -> dict[str, Any]:
    """Update ``update`` of a conversation: every event carries the whole conversation (as Genesys sends
    it), so the agent's name, the end time and the wrap-up appear on the way and stay in later updates."""
    state = BURST_STATES[update]
    customer: dict[str, Any] = {
        "purpose": "customer",
        "address": "tel:+15550100",
        "calls": [{"state": state, "direction": "inbound"}],
    }
    agent: dict[str, Any] = {
        "purpose": "agent",
        "userId": "u-1",
        "queueId": "q-1",
        "calls": [{"state": state}],
    }
    if update >= 1:
        customer["connectedTime"] = "2024-03-01T10:00:00Z"
        agent["name"] = f"Agent {conv_id} v{update}"  # changes on every update: only the last may win
    if update >= len(BURST_STATES) - 2:
        customer["endTime"] = "2024-03-01T10:05:00Z"
    if update == len(BURST_STATES) - 1:
        agent["wrapup"] = {"code": "Sale", "notes": f"done {conv_id}"}
    return {"id": conv_id, "participants": [customer, agent]}


def burst(router: Router, conversations: int) -> list[OutboxItem]:
    out = []
    for update in range(len(BURST_STATES)):
        for i in range(conversations):
            body = whole_state(f"c-{i}", update)
            event = Event(QUEUE_TOPIC, body, "2", {}, f"c-{i}-{update}", 1.7e9 + update)
            item = event_to_outbox_item(event, router.mapping)
            assert item is not None
            out.append(item)
    return out


def business_fields(sim: ServiceNowSim) -> dict[str, dict[str, str]]:
    """The interactions by conversation, without what the instance assigns (sys_* fields, numbers)."""
    out: dict[str, dict[str, str]] = {}
    for record in sim.records("interaction"):
        fields = {k: v for k, v in record.items() if not k.startswith("sys_") and k != "number"}
        assert record["correlation_id"] not in out, "duplicate record"
        out[record["correlation_id"]] = fields
    return out


async def deliver_burst(
    path: Path, warp: WarpClock, session: aiohttp.ClientSession, conversations: int, *, coalesce: bool
) -> tuple[dict[str, dict[str, str]], int]:
    """The whole burst stored first, then delivered into a fresh instance: (records, Import Set writes)."""
    async with started_sim(SnSimConfig(users={"admin": "admin-pass"}, clock=warp)) as sim:
        router = build_router(config(sim), session, wall_clock=warp)
        store = await SqliteOutbox.open(path)
        await store.put_many(burst(router, conversations))
        await run_until_settled(store, dispatcher(store, router, warp, coalesce=coalesce), warp)
        stats = await store.stats(warp())
        await store.close()
        writes = [r for r in sim.requests if r.path == "/api/now/import/u_genesys_interaction_import"]
        records = business_fields(sim)
    assert (stats.delivered, stats.dead, stats.pending) == (conversations * len(BURST_STATES), 0, 0)
    return records, len(writes)


async def test_coalescing_a_burst_of_20_updates_gives_the_same_records_with_one_write_each(
    tmp_path: Path, warp: WarpClock, session: aiohttp.ClientSession
) -> None:
    conversations = 6
    plain, plain_writes = await deliver_burst(
        tmp_path / "plain.db", warp, session, conversations, coalesce=False
    )
    merged, merged_writes = await deliver_burst(
        tmp_path / "merged.db", warp, session, conversations, coalesce=True
    )
    assert plain_writes == conversations * len(BURST_STATES)
    assert merged_writes == conversations  # each key's first claim took its whole pending run
    assert merged == plain  # field for field
    # ... and both are the truth, which does not depend on either run: what each last update says
    for i in range(conversations):
        last = plain[f"c-{i}"]
        assert last["state"] == "closed_complete"
        assert last["agent_name"] == f"Agent c-{i} v{len(BURST_STATES) - 1}"
        assert (last["wrapup_code"], last["wrapup_notes"]) == ("Sale", f"done c-{i}")
        assert last["end_time"] != ""
