"""Crash recovery with real processes: a child writes to the outbox and is killed with SIGKILL (or leaves
with ``os._exit``), then this process opens the same file and checks that nothing acknowledged was lost and
that rows the child had in flight are handed out again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gcbridge.outbox import OutboxItem, SqliteOutbox

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from gcbridge.outbox import OutboxItem, SqliteOutbox

    def items(batch, size=50):
        return [
            OutboxItem(f"evt-{batch}-{i}", f"conv-{i % 7}", "v2.conversations.x", b"{}", time.time())
            for i in range(size)
        ]

    async def main(mode, path):
        store = await SqliteOutbox.open(path)
        if mode == "put-forever":
            batch = 0
            while True:
                await store.put_many(items(batch))
                print(f"stored {batch}", flush=True)  # only after put_many returned
                batch += 1
        if mode == "claim-then-hang":
            await store.put_many(items(0, 20))
            rows = await store.claim(5, now=time.time())
            print("claimed " + " ".join(str(r.id) for r in rows), flush=True)
            await asyncio.sleep(3600)
        if mode == "ack-some-then-exit":
            await store.put_many(items(0, 20))
            rows = await store.claim(7, now=time.time())
            await store.ack([r.id for r in rows[:3]], now=time.time())
            print("acked " + " ".join(str(r.id) for r in rows[:3]), flush=True)
            print("unacked " + " ".join(str(r.id) for r in rows[3:]), flush=True)
            os._exit(0)  # no close(), no cleanup: like a crash right after the acks committed

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def spawn(mode: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter running our own child script
        [sys.executable, "-c", CHILD, mode, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The child's next stdout line starting with ``prefix`` (read in a thread, generous timeout)."""
    assert proc.stdout is not None

    def read() -> str:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                return line.strip()
        assert proc.stderr is not None
        raise AssertionError(f"child ended without {prefix!r}: {proc.stderr.read()[-2000:]}")

    return await asyncio.wait_for(asyncio.to_thread(read), timeout=60)


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


async def test_rows_acknowledged_by_put_many_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    proc = spawn("put-forever", path)
    try:
        last = -1
        while last < 15:
            last = int((await read_line(proc, "stored ")).split()[1])
    finally:
        kill(proc)

    store = await SqliteOutbox.open(path)
    try:
        stats = await store.stats(0.0)
        assert stats.pending >= (last + 1) * 50  # every batch the child reported, maybe one more
        assert stats.pending % 50 == 0  # a batch is one transaction: all of it or none
        for batch in range(last + 1):
            for i in (0, 49):
                assert await store.put_many([_probe(batch, i)]) == 0, f"evt-{batch}-{i} was lost"
    finally:
        await store.close()


async def test_rows_in_flight_at_sigkill_come_back_on_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    proc = spawn("claim-then-hang", path)
    try:
        claimed = [int(x) for x in (await read_line(proc, "claimed ")).split()[1:]]
    finally:
        kill(proc)
    assert len(claimed) == 5

    store = await SqliteOutbox.open(path)
    try:
        assert store.recovered_on_open == 5
        stats = await store.stats(0.0)
        assert (stats.pending, stats.in_flight) == (20, 0)
        again = await store.claim(10, now=1e10)
        assert set(claimed) <= {r.id for r in again}
        assert len({r.order_key for r in again}) == len(again)  # still one per key
    finally:
        await store.close()


async def test_exit_between_claim_and_ack_loses_nothing_and_keeps_acks(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    proc = spawn("ack-some-then-exit", path)
    acked = [int(x) for x in (await read_line(proc, "acked ")).split()[1:]]
    unacked = [int(x) for x in (await read_line(proc, "unacked ")).split()[1:]]
    proc.wait(timeout=30)

    store = await SqliteOutbox.open(path)
    try:
        assert store.recovered_on_open == len(unacked) == 4
        stats = await store.stats(0.0)
        assert (stats.delivered, stats.pending, stats.in_flight) == (3, 17, 0)
        for row_id in acked:
            info = await store.inspect(row_id)
            assert info is not None
            assert info.state == "delivered"
        for row_id in unacked:
            info = await store.inspect(row_id)
            assert info is not None
            assert info.state == "pending"
    finally:
        await store.close()


def _probe(batch: int, i: int) -> OutboxItem:
    """Same dedup key as the child's item ``i`` of ``batch``: putting it is new only if that row was lost."""
    return OutboxItem(f"evt-{batch}-{i}", f"conv-{i % 7}", "v2.conversations.x", b"{}", 0.0)
