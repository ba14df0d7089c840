"""A graceful close loses nothing outside a reported gap: ``aclose`` pings every open socket and reads until
each answers, so events the server sent before the close began reach the stream, and what a socket that
does not answer may have held is inside a gap (up to when the close began). Before, the sockets were closed
at once and the frames still unread in them were dropped, with no gap after the last frame read."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from .client_harness import (
    FAST,
    audit,
    client_for,
    collect,
    other_tasks,
    publish_until_received,
    wait_until,
)
from .conftest import SimFactory

TOPIC = "v2.users.0000dddd-0000-4000-8000-000000000001.presence"
BURST = 500  # enough that many of its frames are still unread in the socket when the close begins
# No regular ping during a test (so the closing ping is the only one); a generous bound on the drain, which
# ends as soon as the socket answers (a bound reached would show as a gap).
QUIET = dataclasses.replace(FAST, heartbeat_timeout=30.0, ping_interval=15.0, pong_timeout=5.0)


async def test_events_unread_when_the_close_begins_are_read_first(genesys_sim_factory: SimFactory) -> None:
    sim = await genesys_sim_factory()
    client = client_for(sim, QUIET)
    await client.start()
    await client.subscribe([TOPIC])
    got = collect(client)
    await publish_until_received(sim, got, TOPIC)
    # written to the socket with no chance for the reader to run before the close begins (a busy loop)
    for _ in range(BURST):
        sim.publish(TOPIC)
    await client.aclose()
    assert got.task is not None
    await got.task  # the stream ends after what was read
    received, _ = audit(sim, got, {TOPIC})
    assert not got.gaps, "the socket answered its ping: everything before it was read"
    assert len(received) > BURST


async def test_a_consumer_that_stopped_consuming_does_not_hold_the_drain(
    genesys_sim_factory: SimFactory,
) -> None:
    # Back-pressure: the buffer holds 5 items and nobody takes them; the reader must still read to the pong.
    sim = await genesys_sim_factory()
    client = client_for(sim, dataclasses.replace(QUIET, queue_size=5))
    await client.start()
    await client.subscribe([TOPIC])
    got = collect(client)
    await publish_until_received(sim, got, TOPIC)
    assert got.task is not None
    got.task.cancel()  # the consumer stops; what the client read waits in its buffer
    await asyncio.gather(got.task, return_exceptions=True)
    for _ in range(BURST):
        sim.publish(TOPIC)
    await asyncio.sleep(0.05)  # the reader fills the buffer and waits for room
    await client.aclose()
    rest = collect(client)
    assert rest.task is not None
    await rest.task
    got.events += rest.events
    got.gaps += rest.gaps
    received, _ = audit(sim, got, {TOPIC})
    assert not got.gaps
    assert len(received) > BURST


async def test_a_socket_that_does_not_answer_the_closing_ping_ends_in_a_gap(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory()
    client = client_for(sim, dataclasses.replace(QUIET, pong_timeout=0.5))
    await client.start()
    await client.subscribe([TOPIC])
    got = collect(client)
    await publish_until_received(sim, got, TOPIC)
    sim.stall_socket()  # silent: these events are never sent, and the ping is never answered
    await asyncio.sleep(0.05)
    for _ in range(10):
        sim.publish(TOPIC)
    await client.aclose()
    assert got.task is not None
    await got.task
    _, in_gap = audit(sim, got, {TOPIC})
    assert len(in_gap) == 10
    assert [g.reason for g in got.gaps] == ["unproven_at_close"]


async def test_a_close_cancelled_while_draining_still_closes_and_reports_the_gap(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory()
    before = other_tasks(sim)
    client = client_for(sim, QUIET)  # the drain would wait 5 s for the stalled socket's pong
    await client.start()
    await client.subscribe([TOPIC])
    got = collect(client)
    await publish_until_received(sim, got, TOPIC)
    sim.stall_socket()
    await asyncio.sleep(0.05)
    for _ in range(10):
        sim.publish(TOPIC)
    # aclose runs to the drain's first wait at once: the cancellation always lands while it drains
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.aclose()
    assert got.task is not None
    await asyncio.wait_for(got.task, 10)  # the stream ends all the same (the bound only guards a hang)
    _, in_gap = audit(sim, got, {TOPIC})
    assert len(in_gap) == 10
    await wait_until(lambda: not other_tasks(sim) - before - {got.task}, within=10, what="no task left")
