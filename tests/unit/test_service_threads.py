"""The service's threads: a fixed, named set however its disk writes overlap (the soak counts them)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import cast

from gcbridge import _json
from gcbridge.bridge.cli import AUX_THREADS, run_service
from gcbridge.bridge.gaps import GapJournal, LastRun
from gcbridge.bridge.process_stats import process_counts
from gcbridge.bridge.service import BridgeService
from gcbridge.genesys.events import Gap


def _new_threads(before: set[int]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.ident not in before]


async def test_gap_journal_writes_on_one_named_thread_however_they_overlap(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    journal = GapJournal(tmp_path / "gaps.jsonl")
    # alive marks and gap records asked for at the same moment: the loop's default executor would start a
    # worker for each one that found the others busy, and keep them all
    marks = [journal.mark_alive(float(i)) for i in range(8)]
    gaps = [Gap(float(i), i + 1.0, ("t",), "socket_dropped", "") for i in range(4)]
    records = [journal.record(gap, now=9.0) for gap in gaps]
    await asyncio.gather(*marks, *records)

    started = _new_threads(before)
    assert [t.name for t in started] == ["gcbridge-gap-journal_0"]
    lines = (tmp_path / "gaps.jsonl").read_bytes().splitlines()
    assert [_json.loads(line)["start"] for line in lines] == [0.0, 1.0, 2.0, 3.0]  # in the order asked
    assert journal.last_run() == LastRun(alive_at=7.0, clean=False)  # the last mark asked for is the one kept

    await journal.close()
    started[0].join(timeout=10)
    assert not started[0].is_alive()
    # a write after close opens the journal's thread again rather than failing
    await journal.mark_alive(20.0, clean=True)
    assert journal.last_run() == LastRun(alive_at=20.0, clean=True)
    await journal.close()


async def test_process_counts_name_every_thread() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="gcbridge-test-worker")
    worker.start()
    try:
        counts = process_counts()
    finally:
        release.set()
        worker.join()
    assert "gcbridge-test-worker" in counts["thread_names"]
    assert counts["threads"] == len(counts["thread_names"])
    assert counts["thread_names"] == sorted(counts["thread_names"])
    assert counts["asyncio_tasks"] >= 1  # this test's own task


class _BlockingService:
    """Stands in for the service: runs many blocking calls at once on the loop's default executor."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def _blocking(self) -> None:
        time.sleep(0.02)
        self.names.append(threading.current_thread().name)

    async def run(self) -> int:
        await asyncio.gather(*(asyncio.to_thread(self._blocking) for _ in range(3 * AUX_THREADS)))
        return 7


def test_gcbridge_run_bounds_and_names_the_loops_default_executor() -> None:
    service = _BlockingService()
    assert asyncio.run(run_service(cast(BridgeService, service))) == 7
    assert len(service.names) == 3 * AUX_THREADS
    assert set(service.names) <= {f"gcbridge-aux_{i}" for i in range(AUX_THREADS)}
