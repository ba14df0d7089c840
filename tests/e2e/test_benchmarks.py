"""The benchmarks still run: each script, with tiny sizes, prints its product and its baseline side by side.

No timing is asserted (timing goals live in bench/README.md); what breaks here is a refactor the scripts did
not follow (``bench_receive.py --in-memory`` drives private parts of the client).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _run(script: str, *args: str) -> str:
    run = subprocess.run(  # noqa: S603 - our interpreter on our own scripts
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"{script} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def _median_ratio(side: str, text: str) -> float:
    """The first median ratio printed after the side's label."""
    match = re.search(r"ratio to bare: wall ([0-9.]+)", text.split(side, 1)[1])
    assert match, text
    return float(match.group(1))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_receive_benchmark_prints_every_receiver_beside_the_bare_loop() -> None:
    out = _run("bench_receive.py", "--events", "300", "--rounds", "3")
    assert re.search(r"best wall msg/s: bare [0-9,]+", out), out
    for side in ("async for item in client", "async for batch in client.batches()"):
        assert side in out, out
        assert 0 < _median_ratio(side, out) < 10
    assert re.search(r"cpu per event: [0-9,]+ ns", out), out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_receive_benchmark_in_memory_drives_the_clients_reader() -> None:
    out = _run("bench_receive.py", "--in-memory", "--events", "500", "--rounds", "2")
    match = re.search(
        r"bare ([0-9,]+) ns/event; client, async for item: ([0-9,]+) ns/event .* "
        r"client, async for batch: ([0-9,]+) ns/event",
        out,
    )
    assert match, out
    assert all(int(group.replace(",", "")) > 0 for group in match.groups())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_recovery_benchmark_measures_a_drop_and_reports_its_gap() -> None:
    out = _run("bench_recovery.py", "--drops", "1")
    assert re.search(r"recovery over 1 drops: p50 [0-9.]+ ms", out), out
    assert "baseline (healthy socket" in out
    assert "gaps reported: 1" in out


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        (
            "bench_outbox.py",
            ("--events", "500", "--repeat", "1", "--sync", "NORMAL"),
            ("bare sqlite loop", "SqliteOutbox.put_many", "bare select+update"),
        ),
        ("bench_delivery.py", ("--conversations", "10", "--updates", "2"), ("x the raw-POST baseline",)),
        (
            "bench_genesys_rest.py",
            ("--calls", "50", "--concurrency", "10"),
            ("bare aiohttp GET", "NotificationsApi", "token requests: 1,"),
        ),
        (
            "bench_sim_servicenow.py",
            ("--rows", "50", "--concurrency", "5"),
            ("bare aiohttp, canned 201 (baseline)", "simulator / baseline"),
        ),
    ],
)
def test_other_benchmarks_print_product_and_baseline(
    script: str, args: tuple[str, ...], expected: tuple[str]
) -> None:
    out = _run(script, *args)
    for text in expected:
        assert text in out, out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_latency_benchmark_times_the_service_beside_the_bare_forwarder_and_a_storm() -> None:
    out = _run(
        "bench_latency.py",
        *("--rates", "20", "--duration", "2", "--warmup", "1", "--variant", "concurrency8"),
        *("--storm", "1", "--storm-lead", "1", "--storm-tail", "2", "--drain-limit", "60"),
    )
    number = r"[0-9.]+ ms"
    for label in ("bare forwarder (baseline)", "gcbridge run ", "gcbridge run, concurrency8", "429 storm"):
        assert re.search(
            rf"{re.escape(label)}.*p50 +{number} +p99 +{number} +max +{number} +missing 0", out
        ), out
    assert "of which publish -> outbox receivedAt" in out
    assert re.search(r"recovered \(every later event within 200 ms\) -?[0-9.]+ s after the storm", out), out
    assert re.search(r"backlog committed -?[0-9.]+ s after the storm", out), out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cost_benchmark_reads_cpu_and_rss_of_the_service_and_the_client() -> None:
    out = _run(
        "bench_cost.py",
        *("--rates", "0", "20", "--warmup", "1", "--window", "2", "--client-window", "2", "--topics", "1500"),
    ).split("summary", 1)[1]
    usage = r"cpu +[0-9.]+ % of a core +rss +[0-9.]+ MiB"
    for label in (
        r"gcbridge run +0/s",
        r"gcbridge run +20/s",
        r"bare forwarder \(baseline\) +20/s",
        r"NotificationClient, 1,500 topics on 2 channels +idle",
        r"bare aiohttp sockets, 1,500 topics on 2 channels +idle",
    ):
        assert re.search(label + " +" + usage, out), out
