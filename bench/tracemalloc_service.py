"""Run a ``gcbridge`` command under ``tracemalloc`` and dump snapshots of it (dev only, not in the product).

    python bench/tracemalloc_service.py --dir DIR [--every SECONDS] [--frames N] -- run --config gcbridge.toml

Everything after ``--`` is the ``gcbridge`` command line. A snapshot goes to ``DIR/<pid>-<n>.snap`` every
``--every`` real seconds (0: never by itself) and whenever the process gets SIGUSR2 (``bench/soak.py
--tracemalloc DIR`` sends it once a simulated day); ``DIR/index.jsonl`` gets one line per snapshot with the
process's RSS and tracemalloc's own total, so that RSS growth that the traced total does not show (malloc
arenas, fragmentation, C extensions) stands out. Compare snapshots with ``bench/tracemalloc_diff.py``.

The snapshots are written by a thread: the signal handler only wakes it, so the service's event loop pays
only for the snapshot itself (taken under the GIL), not for writing it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (*_MALLINFO2, "keepcost")]


def native_memory() -> dict[str, int]:
    """What tracemalloc cannot see, in kB: SQLite's own allocations (its page cache: up to ``cache_size``,
    2 MB by default, per connection) and glibc's heap: bytes in use and bytes free inside it (fragmentation,
    memory freed but not returned). Empty where the libraries do not offer it."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, AttributeError):
        import _sqlite3

        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        used.restype = ctypes.c_int64
        out["sqlite_kb"] = int(used()) // 1024
    with contextlib.suppress(OSError, AttributeError):
        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = _MallInfo2
        info = mallinfo2()
        out["malloc_used_kb"] = (info.uordblks + info.hblkhd) // 1024
        out["malloc_free_kb"] = info.fordblks // 1024
    return out


def rss_kb() -> int:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Dumper:
    """Writes a snapshot when woken (SIGUSR2) or every ``every`` seconds."""

    def __init__(self, out: Path, every: float) -> None:
        self.out, self.every = out, every
        self.wake = threading.Event()
        self.count = 0

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.wake.set()

    def loop(self) -> None:
        while True:
            self.wake.wait(self.every if self.every > 0 else None)
            self.wake.clear()
            self.dump()

    def dump(self) -> None:
        self.count += 1
        line: dict[str, object] = {"pid": os.getpid(), "n": self.count, "time": round(time.time(), 3)}
        line |= {"rss_kb": rss_kb(), **native_memory()}
        if tracemalloc.is_tracing():
            line |= self.snapshot()
        with (self.out / "index.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")

    def snapshot(self) -> dict[str, object]:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
            )
        )
        current, peak = tracemalloc.get_traced_memory()
        path = self.out / f"{os.getpid()}-{self.count:04d}.snap"
        snapshot.dump(str(path))
        return {
            "file": path.name,
            "traced_kb": current // 1024,
            "traced_peak_kb": peak // 1024,
            "overhead_kb": tracemalloc.get_tracemalloc_memory() // 1024,
        }


def main(argv: Sequence[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    if "--" not in raw:
        raise SystemExit(
            "usage: tracemalloc_service.py --dir DIR [--every S] [--frames N] -- <gcbridge args>"
        )
    cut = raw.index("--")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="where snapshots and index.jsonl go")
    p.add_argument(
        "--every", type=float, default=0.0, help="real seconds between snapshots (0: SIGUSR2 only)"
    )
    p.add_argument(
        "--frames",
        type=int,
        default=10,
        help="frames kept per allocation traceback; 0: no tracemalloc, only the index lines (RSS, SQLite, "
        "malloc), at no cost to the service",
    )
    args = p.parse_args(raw[:cut])
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.frames > 0:
        tracemalloc.start(args.frames)
    dumper = Dumper(out, args.every)
    signal.signal(signal.SIGUSR2, dumper.on_signal)
    threading.Thread(target=dumper.loop, name="tracemalloc-dumper", daemon=True).start()

    from gcbridge.cli import main as gcbridge_main  # after tracemalloc.start: its imports are traced too

    sys.argv = ["gcbridge", *raw[cut + 1 :]]
    gcbridge_main()


if __name__ == "__main__":
    main()
