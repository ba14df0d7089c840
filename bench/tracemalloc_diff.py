"""Compare two ``tracemalloc`` snapshots of one process (from ``bench/tracemalloc_service.py``).

    python bench/tracemalloc_diff.py DIR                    # the process with most snapshots: its 2nd vs last
    python bench/tracemalloc_diff.py OLD.snap NEW.snap --key traceback --top 15

Prints the RSS and traced totals from ``DIR/index.jsonl`` for every snapshot, then the allocation sites that
grew most between the two snapshots (``--key lineno``: by source line; ``traceback``: by whole traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


def pick(folder: Path) -> tuple[Path, Path]:
    """The longest-lived process's second snapshot (the first may predate warm-up) and its last."""
    index = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines() if line.strip()]
    per_pid = Counter(e["pid"] for e in index)
    pid = per_pid.most_common(1)[0][0]
    mine = [e for e in index if e["pid"] == pid]
    first = mine[1] if len(mine) > 2 else mine[0]
    return folder / first["file"], folder / mine[-1]["file"]


def show_index(folder: Path) -> None:
    print("snapshot             RSS MB  traced MB  RSS - traced MB  tracemalloc's own MB")
    for line in (folder / "index.jsonl").read_text().splitlines():
        e = json.loads(line)
        print(
            f"{e['file']:20s} {e['rss_kb'] / 1024:6.1f}  {e['traced_kb'] / 1024:9.1f}  "
            f"{(e['rss_kb'] - e['traced_kb'] - e['overhead_kb']) / 1024:15.1f}  "
            f"{e['overhead_kb'] / 1024:8.1f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="a snapshot directory, or two snapshot files")
    p.add_argument("--key", default="lineno", choices=["lineno", "traceback", "filename"])
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--frames", type=int, default=6, help="frames printed per traceback")
    args = p.parse_args(argv)
    if len(args.paths) == 1:
        folder = Path(args.paths[0])
        show_index(folder)
        old, new = pick(folder)
    else:
        old, new = Path(args.paths[0]), Path(args.paths[1])
    before = tracemalloc.Snapshot.load(str(old))
    after = tracemalloc.Snapshot.load(str(new))
    stats = after.compare_to(before, args.key)
    total_old = sum(s.size for s in before.statistics("filename"))
    total_new = sum(s.size for s in after.statistics("filename"))
    print(f"\n{old.name} -> {new.name}: traced {total_old / 1e6:.2f} -> {total_new / 1e6:.2f} MB")
    for stat in stats[: args.top]:
        print(
            f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
            f"now {stat.size / 1024:8.1f} KiB {stat.count:7d} blocks"
        )
        for line in stat.traceback.format(limit=args.frames, most_recent_first=True):
            print(f"      {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
