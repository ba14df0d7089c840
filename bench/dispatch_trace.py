"""Where a row's time goes between the outbox and the ServiceNow answer: phases from a dispatcher trace.

The trace is temporary instrumentation, not part of the service: ``git apply bench/dispatch_trace.diff`` (on a
copy of ``src``, e.g. ``cp -r src /tmp/trace/``), then run the benchmark with that copy and a trace path::

    PYTHONPATH=/tmp/trace/src GCBRIDGE_DISPATCH_TRACE=/tmp/tr .venv/bin/python bench/bench_latency.py ...
    .venv/bin/python bench/dispatch_trace.py /tmp/tr.<pid>      # one file per gcbridge process

Phases of one delivered row (wall clock of the bridge; the first ``--skip`` seconds are warm-up):

* ``predecessor``: received until the previous row of its order key was acked (0 if the key was free);
* ``slot``: ready until the last claim before its own that the window cut short (the window was full);
* ``claim cadence``: the rest of the wait until the dispatcher began the claim that took it;
* ``claim round trip``: that claim on the SQLite writer thread; ``task start``: until its delivery task ran;
* ``request``: the sink call (ServiceNow's answer time, aiohttp, event-loop lag);
* ``ack wait``: the answer until the loop's next ack began; ``ack round trip``: that ack on the writer thread.

A row holds a slot from ``task start`` to the end of ``ack wait``.
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections.abc import Sequence
from pathlib import Path

PHASES = (
    "predecessor",
    "slot",
    "claim cadence",
    "claim round trip",
    "task start",
    "request",
    "ack wait",
    "ack round trip",
    "total",
)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace", type=Path)
    parser.add_argument("--skip", type=float, default=3.0, help="seconds of warm-up left out")
    args = parser.parse_args()
    rows: list[list[float]] = []
    claims: list[tuple[float, float, int, int, int, int]] = []  # start, end, free, asked, got, window
    for line in args.trace.read_text().splitlines():
        parts = line.split()
        if parts[0] == "R":
            rows.append([float(v) for v in parts[2:]])
        elif parts[0] == "C":
            free, asked, got, window = (int(v) for v in [*parts[3:6], parts[6] if len(parts) > 6 else "0"])
            claims.append((float(parts[1]), float(parts[2]), free, asked, got, window))
    start = min(r[0] for r in rows) + args.skip
    rows = [r for r in rows if r[0] >= start]
    claims = [c for c in claims if c[0] >= start]
    claims.sort()
    starts = [c[0] for c in claims]
    split: dict[str, list[float]] = {name: [] for name in PHASES}
    for received, key_free, claim0, claim1, deliver0, deliver1, ack0, ack1 in rows:
        ready = max(received, key_free)
        full_until = ready
        i = bisect.bisect_left(starts, ready)
        while i < len(claims) and claims[i][0] < claim0:
            _, end, free, asked, got, _ = claims[i]
            if free <= 0 or (asked > 0 and got == asked):
                full_until = end
            i += 1
        slot = max(0.0, min(full_until, claim0) - ready)
        values = (
            max(0.0, key_free - received),
            slot,
            claim0 - ready - slot,
            claim1 - claim0,
            deliver0 - claim1,
            deliver1 - deliver0,
            ack0 - deliver1,
            ack1 - ack0,
            ack1 - received,
        )
        for name, value in zip(PHASES, values, strict=True):
            split[name].append(value)
    print(f"{len(rows)} rows; ms per phase")
    print(f"{'phase':18s} {'mean':>8s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>8s}")
    for name, phase in split.items():
        millis = [1000 * v for v in phase]
        figures = [
            sum(millis) / len(millis),
            pct(millis, 0.5),
            pct(millis, 0.9),
            pct(millis, 0.99),
            max(millis),
        ]
        print(f"{name:18s} " + " ".join(f"{v:8.1f}" for v in figures))
    windows = [c[5] for c in claims]
    full = sum(1 for c in claims if c[2] <= 0)
    print(f"loop turns with the window full: {full} of {len(claims)}; window {min(windows)}..{max(windows)}")


if __name__ == "__main__":
    main()
