"""``CatchUp``: a reader has caught up after back-pressure only when its receives found nothing queued, twice
in a row. Driven on a real event loop with futures standing in for ``ws.receive()``: a message already
queued (no wait), one that arrives with the next poll (the kernel held it), and one that arrives later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gcbridge.genesys.catch_up import QUIET_RECEIVES, QUIET_TURNS, CatchUp


def after_turns(turns: int) -> Callable[[], asyncio.Future[None]]:
    """A stand-in for ``ws.receive()``: its message is ready after ``turns`` turns of the loop (0: queued)."""

    def receive() -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def step(left: int) -> None:
            if left == 0:
                fut.set_result(None)
            else:
                loop.call_soon(step, left - 1)

        step(turns)
        return fut

    return receive


async def receive_with(catch_up: CatchUp, receive: Callable[[], asyncio.Future[None]]) -> bool:
    catch_up.before_receive()
    await receive()
    return catch_up.after_receive()


async def test_queued_messages_and_ones_the_next_poll_brings_keep_the_backlog_open() -> None:
    c = CatchUp(asyncio.get_running_loop())
    c.held()
    # set_result at turn k wakes the reader at turn k + 1: a message fed by the next turn's poll is 1 here
    for _ in range(50):
        assert not await receive_with(c, after_turns(0))
        assert not await receive_with(c, after_turns(1))
    assert c.open


async def test_two_quiet_receives_in_a_row_close_it_once() -> None:
    c = CatchUp(asyncio.get_running_loop())
    c.held()
    assert not await receive_with(c, after_turns(5))
    assert not await receive_with(c, after_turns(1))  # more of the backlog: the count starts again
    assert [await receive_with(c, after_turns(5)) for _ in range(QUIET_RECEIVES)] == [False, True]
    assert not c.open


async def test_a_new_hold_starts_the_count_again() -> None:
    c = CatchUp(asyncio.get_running_loop())
    c.held()
    assert not await receive_with(c, after_turns(5))
    c.held()
    assert not await receive_with(c, after_turns(5))
    assert await receive_with(c, after_turns(5))


async def test_a_quiet_socket_does_not_keep_the_loop_spinning() -> None:
    loop = asyncio.get_running_loop()
    c = CatchUp(loop)
    c.held()
    turns_seen = 0
    original = loop.call_soon

    def counting_call_soon(callback, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal turns_seen
        if getattr(callback, "__self__", None) is c:
            turns_seen += 1
        return original(callback, *args, **kwargs)

    loop.call_soon = counting_call_soon  # type: ignore[method-assign]
    try:
        c.before_receive()
        await asyncio.sleep(0.05)  # a receive that waits for a heartbeat: the loop goes idle meanwhile
        assert not c.after_receive()  # one quiet receive of the two asked for
    finally:
        del loop.call_soon
    assert turns_seen == QUIET_TURNS  # counted up to what decides, then no more callbacks
