"""The compressed soak's fault plan (``bench/soak.py``, issue #16): pure, so checked without running it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_soak", SOAK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_every_5xx_storm_ends_within_two_simulated_hours(soak: ModuleType) -> None:
    """A storm is counted answers; while the bridge probes one row at a time (at most its backoff_max, 3 s,
    apart) 35 of them lasted ~90 real seconds, 18 simulated hours at x720. Each day's storm is now cleared
    by time, before that day's hibernation starts."""
    steps = soak.plan(7.0, 16)
    storms = [s for s in steps if s.kind == "sn_5xx"]
    ends = [s for s in steps if s.kind == "sn_5xx_off"]
    hibernations = [s for s in steps if s.kind == "sn_hibernate"]
    assert len(storms) == 21
    assert len(ends) == 7
    for end, hibernate in zip(ends, hibernations, strict=True):
        day = [s for s in storms if s.at <= end.at and end.at - s.at < soak.DAY / 2]
        assert len(day) == 3
        assert end.at - min(s.at for s in day) <= 2 * soak.HOUR
        assert end.at < hibernate.at


def _samples(soak: ModuleType, tasks: list[int]) -> list[object]:
    return [
        soak.Sample(
            sim_days=1.0 + i * 0.05,
            generation=1,
            rss_kb=70_000,
            fds=25,
            threads=3,
            tasks=t,
            outbox_bytes=0,
            rows={},
            oldest_delivered_age=0.0,
            gaps=0,
            published=0,
        )
        for i, t in enumerate(tasks)
    ]


def test_tasks_in_flight_at_a_sample_are_not_growth_but_a_rising_floor_is(soak: ModuleType) -> None:
    """The 7-day run of 2026-12-04 21:20 failed on medians (25 -> 29) while the count swung 21-30 all week
    with the same floor: transient tasks (deliveries, requests) above a constant floor. A leak raises the
    floor."""
    swinging = [22, 28, 25, 30, 23, 27] * 8 + [29, 22, 30, 28, 29, 30] * 8
    assert soak.judge(_samples(soak, swinging), days=7.0, retention_real=100.0).problems == []
    leaking = [22, 28, 25, 30, 23, 27] * 8 + [26, 31, 29, 33, 27, 30] * 8
    problems = soak.judge(_samples(soak, leaking), days=7.0, retention_real=100.0).problems
    assert problems == ["tasks grew from 22 to 26 (the least of 12 samples)"]


def test_a_thread_that_came_to_stay_is_growth_and_is_named(soak: ModuleType) -> None:
    """The second 7-day run of 2026-12-04 went from 3 to 4 threads at day 3.5 and said no more: the verdict
    names the thread that came (from the status page's ``process.thread_names``)."""
    base = ["MainThread", "gcbridge-gap-journal_0", "gcbridge-outbox-writer"]
    samples = _samples(soak, [22] * 96)
    for i, sample in enumerate(samples):
        grown = i >= 48
        sample.threads = 4 if grown else 3
        sample.thread_names = sorted([*base, "asyncio_1"] if grown else base)
    problems = soak.judge(samples, days=7.0, retention_real=100.0).problems
    assert problems == ["threads grew from 3 to 4 (the least of 12 samples)", "threads that came: asyncio_1"]
    for sample in samples:  # the same threads all week: nothing to say
        sample.threads, sample.thread_names = 3, base
    assert soak.judge(samples, days=7.0, retention_real=100.0).problems == []
