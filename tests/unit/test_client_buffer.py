"""The client's buffer between its socket readers and the consumer: order, back-pressure, wake-ups."""

from __future__ import annotations

import asyncio

from gcbridge.genesys.client import _Buffer


async def test_items_come_out_in_order_and_a_waiting_consumer_is_woken() -> None:
    buf = _Buffer(limit=10)
    getter = asyncio.ensure_future(buf.get())
    await asyncio.sleep(0)
    assert not getter.done()
    buf.put("a")
    buf.put("b")
    assert await asyncio.wait_for(getter, 1) == "a"
    assert buf.take(5) == ["b"]
    assert len(buf) == 0


async def test_every_reader_waiting_for_room_goes_on_once_half_is_free() -> None:
    # two sockets' readers held back by one slow consumer: neither may be forgotten
    buf = _Buffer(limit=4)
    for i in range(4):
        buf.put(i)
    assert buf.full()
    readers = [asyncio.ensure_future(buf.wait_for_space()) for _ in range(2)]
    await asyncio.sleep(0)
    assert buf.take(1) == [0]  # 3 left: more than half full, the readers still wait
    await asyncio.sleep(0)
    assert not any(r.done() for r in readers)
    assert buf.take(1) == [1]  # 2 left: half free
    await asyncio.wait_for(asyncio.gather(*readers), 1)


async def test_take_gives_at_most_max_size_in_order() -> None:
    buf = _Buffer(limit=100)
    for i in range(10):
        buf.put(i)
    assert buf.take(4) == [0, 1, 2, 3]
    assert buf.take(100) == [4, 5, 6, 7, 8, 9]
    assert buf.take(3) == []
