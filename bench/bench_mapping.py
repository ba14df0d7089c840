"""CPU per event of the mapping (``Mapping.map_event`` and the ingest side's ``event_to_outbox_item``).

    .venv/bin/python bench/bench_mapping.py                                   # this tree's src/
    .venv/bin/python bench/bench_mapping.py --src /tmp/base/src --src src     # side by side: old vs new

Each ``--src`` is measured in its own child process (``PYTHONPATH=<src>``, so that ``git archive <commit> |
tar -x`` of any commit can be the baseline), one after the other, alternating ``--rounds`` times so that a
change in the machine's load hits both alike; the best round of each is printed. Events: the built-in mapping
over the Genesys simulator's bodies (``BodyGenerator``, fixed seed), as payloads read back from the outbox the
way the router reads them, in two mixes: ``latency`` (the mix of ``bench_latency.py``: 2/3 queue
conversations, 1/3 presence) and ``all`` (every topic family the simulator lists, in turn). CPU is
``time.process_time``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _measure(events: int, repeat: int) -> dict[str, float]:
    from gcbridge.bridge.mapping import (
        compile_mapping,
        event_to_outbox_item,
        payload_of,
        view_from_payload,
    )
    from gcbridge.genesys.events import Event
    from gcbridge.sim.genesys.bodies import AVAILABLE_TOPICS, BodyGenerator

    rng = random.Random(11)
    bodies = BodyGenerator(seed=11)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(50)]
    every = [t for t, _ in AVAILABLE_TOPICS if "chats" not in t]
    mixes = {
        "latency": lambda i: (
            "v2.users.{id}.presence" if i % 3 == 2 else "v2.routing.queues.{id}.conversations"
        ),
        "all": lambda i: every[i % len(every)],
    }
    mapping = compile_mapping()
    out: dict[str, float] = {}
    for mix, pick in mixes.items():
        made = []
        for i in range(events):
            topic = pick(i).format(id=rng.choice(ids))
            made.append(Event(topic, bodies.body(topic), "2", {"simSequence": i}, f"k{i}", 1.7e9 + i))
        views = [view_from_payload(payload_of(e)) for e in made]
        for view in views[:200]:  # warm up (the rule cache by topic)
            mapping.map_event(view)
        start = time.process_time()
        for _ in range(repeat):
            for view in views:
                mapping.map_event(view)
        out[f"map_event {mix}"] = (time.process_time() - start) / (repeat * len(views)) * 1e6
        start = time.process_time()
        for _ in range(repeat):
            for event in made:
                event_to_outbox_item(event, mapping)
        out[f"event_to_outbox_item {mix}"] = (time.process_time() - start) / (repeat * len(made)) * 1e6
    return out


def _child(src: str, events: int, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    args = [sys.executable, __file__, "--child", "--events", str(events), "--repeat", str(repeat)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)  # noqa: S603 - this script
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", action="append", help="a source tree to measure (default: this tree's src)")
    parser.add_argument("--events", type=int, default=3000, help="events per mix")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the events per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the trees")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.events, args.repeat)))
        return
    trees: list[str] = args.src or [str(ROOT / "src")]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; µs of CPU per event, best round")
    best: dict[str, dict[str, float]] = {t: {} for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            for name, value in _child(tree, args.events, args.repeat).items():
                best[tree][name] = min(value, best[tree].get(name, value))
    names: list[Any] = list(best[trees[0]])
    print(f"{'':30}" + "".join(f"{str(Path(t).resolve())[-27:]:>28}" for t in trees))
    for name in names:
        print(f"{name:30}" + "".join(f"{best[t][name]:>25.1f} µs" for t in trees))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
