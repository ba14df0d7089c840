"""The simulated org: how long a simulated day takes (pure world, then with its notifications rendered), and
how long the details query takes over a day of conversations.

    .venv/bin/python bench/bench_sim_org.py                 # 3 rounds, default org (12 agents, 60 calls/h)
    .venv/bin/python bench/bench_sim_org.py --calls-per-hour 240 --users 40 --rounds 5

Printed: the best and median wall time per round, changes and notifications per simulated day.
"""

from __future__ import annotations

import argparse
import statistics
import time

from gcbridge.sim.genesys.org import OrgSettings, OrgWorld
from gcbridge.sim.genesys.org_bodies import analytics_conversation, notifications
from gcbridge.sim.genesys.org_query import parse_details_query, run_details_query

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86_400.0


def one_day(settings: OrgSettings, render: bool) -> tuple[float, int, int, OrgWorld]:
    world = OrgWorld(settings, START)
    begin = time.perf_counter()
    changes = world.advance(START + DAY)
    events = sum(len(notifications(world, c)) for c in changes) if render else 0
    return time.perf_counter() - begin, len(changes), events, world


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--calls-per-hour", type=float, default=60.0)
    args = parser.parse_args()
    settings = OrgSettings(seed=1, users=args.users, calls_per_hour=args.calls_per_hour)

    for render in (False, True):
        times = []
        for _ in range(args.rounds):
            elapsed, changes, events, world = one_day(settings, render)
            times.append(elapsed)
        label = "world + notifications" if render else "world only"
        print(
            f"{label:22} one simulated day: best {min(times):.3f} s, "
            f"median {statistics.median(times):.3f} s; {changes} changes, {events} notifications, "
            f"{len(world.conversations())} conversations"
        )

    rendered = [analytics_conversation(c) for c in world.conversations()]
    query = parse_details_query(
        {"interval": "2027-01-15T00:00:00Z/2027-01-17T00:00:00Z", "paging": {"pageSize": 100}}, 100
    )
    times = []
    for _ in range(args.rounds * 5):
        begin = time.perf_counter()
        run_details_query(query, rendered)
        times.append(time.perf_counter() - begin)
    print(
        f"details query over {len(rendered)} conversations (page of 100): "
        f"best {min(times) * 1000:.1f} ms, median {statistics.median(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
