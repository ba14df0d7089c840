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
from typing import Any


def index(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines() if line.strip()]


def pick(folder: Path) -> tuple[Path, Path] | None:
    """The longest-lived process's second snapshot (the first may predate warm-up) and its last."""
    snaps = [e for e in index(folder) if "file" in e]
    if not snaps:
        return None
    pid = Counter(e["pid"] for e in snaps).most_common(1)[0][0]
    mine = [e for e in snaps if e["pid"] == pid]
    first = mine[1] if len(mine) > 2 else mine[0]
    return folder / first["file"], folder / mine[-1]["file"]


def show_index(folder: Path) -> None:
    """One line per dump, MB: RSS, what tracemalloc traced (and its own memory), SQLite's memory, malloc's
    bytes in use and free inside its heap (fragmentation)."""
    print("pid      n   RSS    traced  tracemalloc  SQLite  malloc used  malloc free")

    def mb(e: dict[str, Any], key: str) -> str:
        return f"{e[key] / 1024:6.1f}" if key in e else "     -"

    for e in index(folder):
        print(
            f"{e['pid']:<8d} {e['n']:2d} {mb(e, 'rss_kb')} {mb(e, 'traced_kb')}  "
            f"{mb(e, 'overhead_kb')}       {mb(e, 'sqlite_kb')}  {mb(e, 'malloc_used_kb')}       "
            f"{mb(e, 'malloc_free_kb')}"
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
        picked = pick(folder)
        if picked is None:
            return 0  # recorded without tracemalloc: the index is all there is
        old, new = picked
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
