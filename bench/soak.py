"""A compressed soak: ``gcbridge run`` against both simulators (real processes) for simulated days.

The Genesys simulator runs with ``--time-scale S``: tokens and channels live a simulated day, so every day
brings a token refresh and a channel expiry; the harness adds a ``socket_closing`` every simulated hour,
random drops and stalls, ServiceNow 429 storms, 5xx answers and a hibernation window every day, a SIGHUP topic
change every day, and one SIGTERM restart and one SIGKILL (each followed by a restart). The service's own
clocks are real, so its timings are compressed in its configuration (heartbeat watchdog, retry backoff,
outbox retention) and the ones it derives from the simulator (token and channel lifetimes) follow by
themselves.

It samples the service process every simulated hour (RSS, open descriptors, OS threads, asyncio tasks from
``/status``, outbox file size and rows by state, gaps journalled) and at the end balances the books: every
event the simulator published to a subscribed channel is in ServiceNow exactly once (one record per event,
coalesced on its sequence number) or lies inside a gap the service journalled. Exit code 0 when the books
balance and the pass criteria hold (after day 1: RSS grows < 5 %, descriptors, tasks and threads do not
grow, judged on runs of 2 days or more; delivered rows never outlive the retention); the result is also
written as JSON (``--json``) and as a PNG (``--plot``; matplotlib, a dev dependency, imported only then).

    .venv/bin/python bench/soak.py                       # 7 simulated days at time scale 400: ~27 min
    .venv/bin/python bench/soak.py --days 1 --time-scale 720 --no-plot   # what the slow test runs: ~2.5 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

DAY = 86400.0
HOUR = 3600.0
HOUSEKEEPING = 60.0  # the dispatcher deletes expired delivered rows this often (real seconds)
STORM_END = 0.47  # fraction of each day when the day's ServiceNow 5xx storm (from 0.40) is cleared
STAGING = "u_soak_event_import"
TARGET = "u_soak_event"

# --- the plan ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One scheduled action at simulated second ``at``."""

    at: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


def plan(days: float, seed: int) -> list[Step]:
    """The fault schedule in simulated seconds (pure: the same days and seed give the same plan)."""
    rng = random.Random(seed)
    steps: list[Step] = []
    hour = HOUR
    while hour < days * DAY:
        steps.append(Step(hour, "socket_closing"))
        hour += HOUR
    whole_days = max(1, int(days + 0.999))
    for day in range(whole_days):
        base = day * DAY

        def at(fraction: float, base: float = base) -> float:
            return base + fraction * DAY

        for _ in range(3):
            steps.append(Step(at(rng.uniform(0.05, 0.95)), "drop"))
        for _ in range(2):
            steps.append(Step(at(rng.uniform(0.05, 0.95)), "stall"))
        steps.append(Step(at(0.30), "sn_rate_limit"))
        steps.append(Step(at(0.30) + 2 * HOUR, "sn_rate_limit_off"))
        steps.append(Step(at(0.40), "sn_5xx", {"status": 503, "count": 20}))
        steps.append(Step(at(0.42), "sn_5xx", {"status": 502, "count": 10}))
        steps.append(Step(at(0.45), "sn_5xx", {"status": 500, "count": 5}))
        # A 5xx storm ends with time, not after a number of answers: once the bridge pauses for the outage
        # it sends one probe at a time, at most its backoff_max apart, so 35 counted answers would take 35
        # probes (~90 real seconds: 18 simulated hours at x720) and read as a day-long outage.
        steps.append(Step(at(STORM_END), "sn_5xx_off"))
        steps.append(Step(at(0.55), "sn_hibernate"))
        steps.append(Step(at(0.55) + 2 * HOUR, "sn_hibernate_off"))
        steps.append(Step(at(0.5), "sighup"))
    steps.append(Step(restart_at(days, "sigterm"), "sigterm"))
    steps.append(Step(restart_at(days, "sigkill"), "sigkill"))
    return sorted((s for s in steps if s.at < days * DAY), key=lambda s: s.at)


def restart_at(days: float, kind: str) -> float:
    """Late in the run, so that one process lives through most of it (the leak criteria look at that one)."""
    if kind == "sigterm":
        return max(days - 0.8, days * 0.6) * DAY
    return max(days - 0.5, days * 0.8) * DAY


def warmup_days(days: float) -> float:
    return min(1.0, days / 4)


# --- topics -------------------------------------------------------------------------------------------

USERS = [f"a9e7{i:04d}-0000-4000-8000-00000000000{i % 10}" for i in range(8)]
QUEUES = [f"5e1f{i:04d}-0000-4000-8000-00000000000{i % 10}" for i in range(4)]


def topic_sets(days: float) -> list[list[str]]:
    """The configured topics per SIGHUP generation: each change drops one topic and adds another."""
    pool = [f"v2.users.{u}.presence" for u in USERS] + [
        f"v2.routing.queues.{q}.conversations" for q in QUEUES
    ]
    pool += [f"v2.users.{u}.routingStatus" for u in USERS[:4]]
    current = pool[:10]
    spare = pool[10:]
    sets = [list(current)]
    for i in range(int(days) + 2):
        out = current[i % len(current)]
        current = [t for t in current if t != out] + [spare.pop(0)]
        spare.append(out)
        sets.append(list(current))
    return sets


# --- processes ----------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the harness dies, so that no simulator or service outlives a
    killed soak (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_sim(argv: list[str], log: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Start a simulator CLI; returns it and the base URL it printed."""
    out = log.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gcbridge",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=out,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_die_with_parent,  # only prctl: no locks or threads in the child
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            break
        out.write(line)
        match = re.search(rb"listening on (http://\S+)", line)
        if match:
            asyncio.get_running_loop().create_task(_copy(proc.stdout, out))
            return proc, match.group(1).decode()
    raise RuntimeError(f"simulator {argv[:2]} did not start; see {log}")


async def _copy(stream: asyncio.StreamReader, out: Any) -> None:
    while line := await stream.readline():
        out.write(line)
        out.flush()


class Service:
    """``gcbridge run`` as a child process; its JSON logs go to ``log``."""

    def __init__(
        self, config: Path, log: Path, admin_url: str, tracemalloc_dir: Path | None = None, frames: int = 10
    ) -> None:
        self.config, self.log, self.admin_url = config, log, admin_url
        self.tracemalloc_dir, self.frames = tracemalloc_dir, frames
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.launcher(),
                "run",
                "--config",
                str(self.config),
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=str(self.config.parent),
                preexec_fn=_die_with_parent,  # only prctl: no locks or threads in the child
            )
        self.generation += 1

    def launcher(self) -> list[str]:
        """``-m gcbridge``, or the tracemalloc wrapper (dev only) that dumps a snapshot on SIGUSR2."""
        if self.tracemalloc_dir is None:
            return ["-m", "gcbridge"]
        wrapper = Path(__file__).resolve().parent / "tracemalloc_service.py"
        return [
            str(wrapper),
            "--dir",
            str(self.tracemalloc_dir.resolve()),
            "--frames",
            str(self.frames),
            "--",
        ]

    def snapshot(self) -> None:
        """Ask the tracemalloc wrapper for a snapshot (nothing without ``--tracemalloc``)."""
        if self.tracemalloc_dir is not None and self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGUSR2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self, sig: signal.Signals, within: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), within)

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(f"{self.admin_url}/status", timeout=aiohttp.ClientTimeout(total=10)) as r:
                if r.status != 200:
                    return None
                doc: dict[str, Any] = await r.json()
                return doc
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def kill(self) -> None:
        """However the run ends, the service does not outlive it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def wait_live(self, http: aiohttp.ClientSession, within: float = 90.0) -> None:
        """Until every shard has a live socket (ServiceNow may be down on purpose: that is not waited for)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"gcbridge run exited with {self.proc.returncode}; see {self.log}")
            doc = await self.status(http)
            reasons = (doc or {}).get("readiness", {}).get("reasons", ["no answer"])
            if doc and not [r for r in reasons if r.startswith(("service is", "shards without"))]:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gcbridge run not live after {within} s; see {self.log}")


def service_config(
    genesys_url: str, sn_url: str, admin_port: int, topics: Sequence[str], scale: float, retention_days: float
) -> str:
    """The service's TOML: every timing it keeps on its own (real) clock is compressed by hand."""
    topic_list = ", ".join(json.dumps(t) for t in topics)
    return f"""
[genesys]
base_url = "{genesys_url}"
client_id = "sim-client"
client_secret = "sim-secret"
topics = [{topic_list}]

[genesys.client]
heartbeat_timeout = 6.0
ping_interval = 3.0
pong_timeout = 2.0
healthy_period = 3.0
max_topics_per_channel = 4
backoff = {{ initial = 0.1, factor = 2.0, cap = 3.0 }}

[servicenow]
instance_url = "{sn_url}"
concurrency = 8

[servicenow.auth]
kind = "basic"
username = "admin"
password = "admin"

[[servicenow.mapping.rules]]
name = "soak"
topics = ["v2.#"]
sink = "import_set"
target = "{STAGING}"
key = "{{metadata.simSequence}}"
key_field = "u_seq"
fields = {{ u_topic = "{{topic}}", u_correlation = "{{metadata.CorrelationId}}" }}

[outbox]
path = "outbox.db"
retention_days = {retention_days!r}
drain_timeout = 20.0

[outbox.dispatcher]
backoff_initial = 0.1
backoff_max = 3.0
idle_poll = 1.0

[admin]
port = {admin_port}

[logging]
level = "info"
"""


# --- sampling -----------------------------------------------------------------------------------------


@dataclass
class Sample:
    sim_days: float
    generation: int
    rss_kb: int
    fds: int
    threads: int
    tasks: int
    outbox_bytes: int
    rows: dict[str, int]
    oldest_delivered_age: float  # real seconds; 0 when none
    gaps: int
    published: int
    thread_names: list[str] = field(default_factory=list)  # the Python threads, from /status


def proc_stats(pid: int) -> tuple[int, int, int]:
    """(RSS kB, open descriptors, OS threads) of ``pid`` from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


STATES = {0: "pending", 1: "in_flight", 2: "delivered", 3: "dead"}


def outbox_rows(path: Path, now: float) -> tuple[dict[str, int], float]:
    """Rows by state and the age of the oldest delivered row, read-only beside the running service."""
    rows = dict.fromkeys(STATES.values(), 0)
    if not path.exists():
        return rows, 0.0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        for state, count in conn.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            rows[STATES.get(state, str(state))] = count
        (oldest,) = conn.execute("SELECT min(finished_at) FROM outbox WHERE state = 2").fetchone()
    finally:
        conn.close()
    return rows, (now - oldest) if oldest else 0.0


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def read_gaps(path: Path) -> list[dict[str, Any]]:
    """The gaps of the journal; its other lines (a back-fill job's outcome: ``{"backfill": ...}``) are not
    gaps."""
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if "backfill" not in e]


# --- the books ----------------------------------------------------------------------------------------


def expand(topic: str) -> list[str]:
    if "?" not in topic:
        return [topic]
    prefix, _, leaves = topic.partition("?")
    return [f"{prefix}.{leaf}" for leaf in leaves.split("&") if leaf]


@dataclass
class Books:
    owed: int = 0
    delivered_once: int = 0
    in_gap: int = 0
    in_gap_and_delivered: int = 0
    unexplained: list[int] = field(default_factory=list)
    duplicate_records: list[str] = field(default_factory=list)
    phantom_records: list[str] = field(default_factory=list)
    redelivered_rows: int = 0
    not_owed_delivered: int = 0

    @property
    def balanced(self) -> bool:
        return not (self.unexplained or self.duplicate_records or self.phantom_records)


def configured(topic: str, at: float, changes: Sequence[tuple[float, Sequence[str]]]) -> bool:
    """Was ``topic`` in the service's configuration at wall time ``at`` (``changes``: (since, topics))?"""
    current: Sequence[str] = ()
    for since, topics in changes:
        if since <= at:
            current = topics
    return topic in current


def balance(
    ledger: Sequence[dict[str, Any]],
    records: Sequence[dict[str, Any]],
    import_rows: int,
    gaps: Sequence[dict[str, Any]],
    changes: Sequence[tuple[float, Sequence[str]]],
) -> Books:
    """Every event published to at least one subscribed channel, on a topic the service was configured for
    at the time, is in exactly one record or inside a journalled gap of its topic (pure)."""
    books = Books()
    per_seq: dict[str, int] = {}
    for record in records:
        seq = str(record.get("u_seq", ""))
        per_seq[seq] = per_seq.get(seq, 0) + 1
    books.duplicate_records = sorted(s for s, n in per_seq.items() if n > 1)
    published = {str(r["seq"]) for r in ledger}
    books.phantom_records = sorted(set(per_seq) - published)
    windows: dict[str, list[tuple[float, float]]] = {}
    for gap in gaps:
        for raw in gap["topics"]:
            for topic in expand(raw):
                windows.setdefault(topic, []).append((gap["start"], gap["end"]))
    for entry in ledger:
        seq, topic, at = str(entry["seq"]), entry["topic"], entry["publishedAt"]
        delivered = per_seq.get(seq, 0) == 1
        if not entry["deliveries"] or not configured(topic, at, changes):
            books.not_owed_delivered += delivered
            continue
        books.owed += 1
        inside = any(start <= at <= end for start, end in windows.get(topic, ()))
        if delivered:
            books.delivered_once += 1
            books.in_gap_and_delivered += inside
        elif inside:
            books.in_gap += 1
        else:
            books.unexplained.append(int(seq))
    books.redelivered_rows = max(0, import_rows - len(records))
    return books


# --- criteria -----------------------------------------------------------------------------------------


@dataclass
class Verdict:
    rss_growth_pct: float
    fds: tuple[float, float]
    tasks: tuple[float, float]
    threads: tuple[float, float]
    max_delivered_age: float
    retention_limit: float
    problems: list[str]


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def new_threads(head: Sequence[Sample], tail: Sequence[Sample]) -> list[str]:
    """The thread names in every sample of ``tail`` that no sample of ``head`` had (each name once)."""
    seen = {name for s in head for name in s.thread_names}
    always = set.intersection(*(set(s.thread_names) for s in tail)) if tail else set()
    return sorted(always - seen)


def judge(samples: Sequence[Sample], days: float, retention_real: float) -> Verdict:
    """The pass criteria over the first process's life after warm-up (restarts come late in the plan)."""
    warm = warmup_days(days)
    first = [s for s in samples if s.generation == 1]
    settled = [s for s in first if s.sim_days >= warm]
    problems: list[str] = []
    if len(settled) < 6:
        return Verdict(0.0, (0, 0), (0, 0), (0, 0), 0.0, 0.0, ["too few samples after warm-up"])
    n = max(3, len(settled) // 8)
    head, tail = settled[:n], settled[-n:]

    def pair(get: Callable[[Sample], float]) -> tuple[float, float]:
        return _median([get(s) for s in head]), _median([get(s) for s in tail])

    def floors(get: Callable[[Sample], float]) -> tuple[float, float]:
        # A count of tasks or descriptors is a floor (what the service always holds) plus what is in flight
        # at the moment of the sample (a delivery, a request, a pooled connection): the median of a window
        # moves with the traffic, the least value of a window moves only when something is kept for good.
        return min(get(s) for s in head), min(get(s) for s in tail)

    rss = pair(lambda s: s.rss_kb)
    growth = 100.0 * (rss[1] / rss[0] - 1.0) if rss[0] else 0.0
    # Growth is judged only after a warm-up of a whole day, which has seen every fault once: before that,
    # the first burst after a ServiceNow outage fills the HTTP pool (up to `concurrency` kept-alive sockets)
    # and the first samples say nothing about a leak. Shorter runs print the figures without judging them.
    judged = days >= 2
    if judged and growth >= 5.0:
        problems.append(f"RSS grew {growth:.1f} % after warm-up ({rss[0]:.0f} -> {rss[1]:.0f} kB)")
    fds, tasks, threads = floors(lambda s: s.fds), floors(lambda s: s.tasks), floors(lambda s: s.threads)
    for name, (before, after), slack in (("fds", fds, 1), ("tasks", tasks, 2), ("threads", threads, 0)):
        if judged and after > before + slack:
            problems.append(f"{name} grew from {before:g} to {after:g} (the least of {n} samples)")
    if judged and threads[1] > threads[0]:
        came = ", ".join(new_threads(head, tail)) or "none with a Python name"
        problems.append(f"threads that came: {came}")
    limit = retention_real + HOUSEKEEPING + 30.0
    ages = [s.oldest_delivered_age for s in samples if s.sim_days >= warm]
    worst = max(ages, default=0.0)
    if worst > limit:
        problems.append(f"a delivered row outlived the retention: {worst:.0f} s > {limit:.0f} s")
    return Verdict(growth, fds, tasks, threads, worst, limit, problems)


# --- the run ------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale: float = args.time_scale
        self.dir = Path(args.dir or tempfile.mkdtemp(prefix="gcbridge-soak-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.samples: list[Sample] = []
        self.events: list[tuple[float, str]] = []  # (sim days, what happened)
        self.changes: list[tuple[float, list[str]]] = []
        self.topic_sets = topic_sets(args.days)
        self.generation_of_topics = 0
        self.rng = random.Random(args.seed)
        self.t0 = 0.0

    def sim_now(self) -> float:
        return (time.monotonic() - self.t0) * self.scale

    def note(self, what: str) -> None:
        day = self.sim_now() / DAY
        self.events.append((round(day, 3), what))
        if self.args.verbose:
            print(f"  day {day:6.3f}  {what}", flush=True)

    async def gpost(self, path: str, body: dict[str, Any]) -> Any:
        async with self.http.post(f"{self.genesys_url}/_sim/{path}", json=body) as r:
            return await r.json(content_type=None)

    async def snpost(self, path: str, body: dict[str, Any]) -> Any:
        async with self.http.post(f"{self.sn_url}/_sim/{path}", json=body) as r:
            return await r.json(content_type=None)

    async def gget(self, path: str) -> Any:
        async with self.http.get(f"{self.genesys_url}/_sim/{path}") as r:
            return await r.json(content_type=None)

    def write_config(self) -> None:
        topics = self.topic_sets[self.generation_of_topics]
        retention_days = self.args.retention_hours * HOUR / self.scale / DAY
        self.config.write_text(
            service_config(self.genesys_url, self.sn_url, self.admin_port, topics, self.scale, retention_days)
        )
        self.changes.append((time.time(), list(topics)))

    async def run(self) -> dict[str, Any]:
        args = self.args
        scale = self.scale
        self.sims: list[asyncio.subprocess.Process] = []
        gproc, self.genesys_url = await start_sim(
            [
                "sim",
                "genesys",
                "--port",
                "0",
                "--time-scale",
                f"{scale:g}",
                "--heartbeat",
                f"{scale * args.heartbeat_real:g}",
                "--seed",
                str(args.seed),
                "--api-rate-limit",
                "0",
            ],
            self.dir / "genesys-sim.log",
        )
        self.sims.append(gproc)
        snproc, self.sn_url = await start_sim(
            ["sim", "servicenow", "--port", "0", "--concurrency", "6", "--queue", "4"],
            self.dir / "servicenow-sim.log",
        )
        self.sims.append(snproc)
        self.http = aiohttp.ClientSession()
        try:
            return await self._run()
        finally:
            if getattr(self, "service", None) is not None:
                await self.service.kill()
            await self.http.close()
            for proc in self.sims:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 20)

    async def _run(self) -> dict[str, Any]:
        args = self.args
        await self.snpost("tables", {"name": TARGET, "prefix": None})
        await self.snpost(
            "transform_maps",
            {
                "staging_table": STAGING,
                "name": "Soak events",
                "target_table": TARGET,
                "coalesce": ["u_seq"],
                "auto_map": "same",
            },
        )
        self.admin_port = free_port()
        self.config = self.dir / "gcbridge.toml"
        self.write_config()
        traced = Path(args.tracemalloc) if args.tracemalloc else None
        self.service = Service(
            self.config, self.dir / "gcbridge.log", f"http://127.0.0.1:{self.admin_port}", traced, args.frames
        )
        await self.service.start()
        await self.service.wait_live(self.http)
        await self.gpost("traffic", {"rate_per_s": args.rate})
        self.t0 = time.monotonic()
        end = args.days * DAY
        steps = plan(args.days, args.seed)
        next_sample = next_snapshot = 0.0
        sample_every = args.sample_hours * HOUR
        restarting = False
        while True:
            now = self.sim_now()
            if now >= end:
                break
            if steps and steps[0].at <= now:
                step = steps.pop(0)
                restarting = step.kind in ("sigterm", "sigkill")
                await self.act(step)
                restarting = False
                continue
            if now >= next_sample and not restarting:
                await self.sample()
                next_sample += sample_every
                if args.tracemalloc and now >= next_snapshot:
                    self.service.snapshot()
                    self.note(f"tracemalloc snapshot of pid {self.service.pid}")
                    next_snapshot += args.snapshot_days * DAY
                if self.args.progress:
                    s = self.samples[-1]
                    print(
                        f"day {s.sim_days:5.2f}  rss {s.rss_kb / 1024:6.1f} MB  fds {s.fds:3d}  threads "
                        f"{s.threads:2d}  tasks {s.tasks:3d}  outbox {s.outbox_bytes / 1e6:5.1f} MB "
                        f"{s.rows}  gaps {s.gaps}",
                        flush=True,
                    )
                continue
            wake = min(steps[0].at if steps else end, next_sample, end)
            await asyncio.sleep(max(0.02, (wake - now) / self.scale))
        await self.gpost("traffic", {"rate_per_s": 0})
        await self.snpost("reset", {})
        self.note("traffic stopped; waiting for the outbox to drain")
        await self.wait_drained()
        await self.sample()
        return await self.finish()

    async def act(self, step: Step) -> None:
        kind = step.kind
        if kind == "socket_closing":
            grace = self.args.closing_grace_real * self.scale
            await self.gpost("socket_closing", {"grace": grace})
        elif kind == "drop":
            channel = await self.random_channel()
            await self.gpost("drop_socket", {"channel_id": channel})
            self.note(f"drop {channel}")
        elif kind == "stall":
            channel = await self.random_channel()
            await self.gpost("stall_socket", {"channel_id": channel})
            self.note(f"stall {channel}")
            asyncio.get_running_loop().call_later(
                self.args.stall_real, lambda: asyncio.ensure_future(self.resume(channel))
            )
        elif kind == "sn_rate_limit":
            await self.snpost("rate_limit", {"per_hour": 20, "window_seconds": 15})
            self.note("ServiceNow rate limit (429s) on")
        elif kind == "sn_rate_limit_off":
            await self.snpost("rate_limit", {"per_hour": None})
            self.note("ServiceNow rate limit off")
        elif kind == "sn_5xx":
            await self.snpost("inject", step.params)
            self.note(f"ServiceNow {step.params['status']} x {step.params['count']}")
        elif kind == "sn_5xx_off":
            await self.snpost("reset", {})  # clears what is left of the injections (no other fault is on)
            self.note("ServiceNow 5xx storm over")
        elif kind == "sn_hibernate":
            await self.snpost("hibernate", {"on": True})
            self.note("ServiceNow hibernating")
        elif kind == "sn_hibernate_off":
            await self.snpost("hibernate", {"on": False})
            self.note("ServiceNow awake")
        elif kind == "sighup":
            self.generation_of_topics += 1
            self.write_config()
            assert self.service.proc is not None
            self.service.proc.send_signal(signal.SIGHUP)
            self.note(f"SIGHUP: topics generation {self.generation_of_topics}")
        elif kind in ("sigterm", "sigkill"):
            sig = signal.SIGTERM if kind == "sigterm" else signal.SIGKILL
            code = await self.service.stop(sig)
            self.note(f"{sig.name}: exit code {code}; restarting")
            await self.service.start()
            await self.service.wait_live(self.http)
            self.note("restarted and ready")

    async def resume(self, channel: str | None) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            await self.gpost("resume_socket", {"channel_id": channel})

    async def random_channel(self) -> str | None:
        doc = await self.gget("channels")
        connected = sorted(c["id"] for c in doc.get("entities", []) if c.get("connected"))
        return self.rng.choice(connected) if connected else None

    async def sample(self) -> None:
        now = time.time()
        rss, fds, threads = proc_stats(self.service.pid)
        doc = await self.service.status(self.http) or {}
        rows, oldest = outbox_rows(self.dir / "outbox.db", now)
        state = await self.gget("state")
        self.samples.append(
            Sample(
                sim_days=round(self.sim_now() / DAY, 4),
                generation=self.service.generation,
                rss_kb=rss,
                fds=fds,
                threads=threads,
                tasks=int(doc.get("process", {}).get("asyncio_tasks", 0)),
                thread_names=list(doc.get("process", {}).get("thread_names", [])),
                outbox_bytes=file_bytes(self.dir / "outbox.db"),
                rows=rows,
                oldest_delivered_age=round(oldest, 1),
                gaps=len(read_gaps(self.dir / "gcbridge-gaps.jsonl")),
                published=int(state.get("published", 0)),
            )
        )

    async def wait_drained(self, within: float = 180.0) -> None:
        deadline = time.monotonic() + within
        await asyncio.sleep(2.0)  # events in flight through the socket and the client's buffer
        while time.monotonic() < deadline:
            doc = await self.service.status(self.http) or {}
            outbox = doc.get("outbox", {})
            if outbox.get("pending", 1) == 0 and outbox.get("in_flight", 1) == 0:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the outbox did not drain within {within} s; see {self.service.log}")

    async def finish(self) -> dict[str, Any]:
        ledger = (await self.gget("ledger"))["records"]
        async with self.http.get(f"{self.sn_url}/_sim/records/{TARGET}") as r:
            records = (await r.json(content_type=None))["result"]
        async with self.http.get(f"{self.sn_url}/_sim/import_sets") as r:
            sets = (await r.json(content_type=None))["result"]
        import_rows = sum(len(s.get("rows", [])) for s in sets if s.get("staging_table") == STAGING)
        gaps = read_gaps(self.dir / "gcbridge-gaps.jsonl")
        books = balance(ledger, records, import_rows, gaps, self.changes)
        code = await self.service.stop(signal.SIGTERM)
        self.note(f"stopped: exit code {code}")
        retention_real = self.args.retention_hours * HOUR / self.scale
        verdict = judge(self.samples, self.args.days, retention_real)
        gap_reasons: dict[str, int] = {}
        for gap in gaps:
            gap_reasons[gap["reason"]] = gap_reasons.get(gap["reason"], 0) + 1
        return {
            "days": self.args.days,
            "time_scale": self.scale,
            "rate_per_s": self.args.rate,
            "retention_hours": self.args.retention_hours,
            "dir": str(self.dir),
            "published": len(ledger),
            "records": len(records),
            "books": {**asdict(books), "unexplained": books.unexplained[:20], "balanced": books.balanced},
            "unexplained_count": len(books.unexplained),
            # what the simulator knows of each (its topic, publish time, channels): to place it among the gaps
            "unexplained_events": [e for e in ledger if int(e["seq"]) in set(books.unexplained[:20])],
            "gaps": {"count": len(gaps), "by_reason": gap_reasons},
            "verdict": asdict(verdict),
            "passed": books.balanced and not verdict.problems,
            "events": self.events,
            "samples": [asdict(s) for s in self.samples],
            "service_exit": code,
        }


# --- reporting ----------------------------------------------------------------------------------------


def per_day(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last sample of every simulated day (and the final one)."""
    rows: dict[int, dict[str, Any]] = {}
    for s in samples:
        rows[int(s["sim_days"] - 1e-9)] = s
    return [rows[d] for d in sorted(rows)]


def print_report(result: dict[str, Any]) -> None:
    print(
        f"\nsoak: {result['days']:g} simulated days at time scale {result['time_scale']:g}, "
        f"{result['rate_per_s']:g} events/s, retention {result['retention_hours']:g} simulated hours"
    )
    print("| day | process | RSS MB | fds | threads | tasks | outbox MB | pending | delivered | gaps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in per_day(result["samples"]):
        print(
            f"| {s['sim_days']:.2f} | {s['generation']} | {s['rss_kb'] / 1024:.1f} | {s['fds']} | "
            f"{s['threads']} | {s['tasks']} | {s['outbox_bytes'] / 1e6:.2f} | {s['rows']['pending']} | "
            f"{s['rows']['delivered']} | {s['gaps']} |"
        )
    books, verdict = result["books"], result["verdict"]
    print(
        f"books: published {result['published']:,}, owed {books['owed']:,}, delivered once "
        f"{books['delivered_once']:,}, inside a gap {books['in_gap']:,} (and delivered all the same "
        f"{books['in_gap_and_delivered']:,}), unexplained {result['unexplained_count']}, duplicate records "
        f"{len(books['duplicate_records'])}, phantom records {len(books['phantom_records'])}, rows "
        f"redelivered (idempotent) {books['redelivered_rows']:,}"
    )
    print(f"gaps: {result['gaps']['count']} {result['gaps']['by_reason']}")
    print(
        f"after warm-up: RSS {verdict['rss_growth_pct']:+.1f} %, fds {verdict['fds'][0]:g} -> "
        f"{verdict['fds'][1]:g}, tasks {verdict['tasks'][0]:g} -> {verdict['tasks'][1]:g}, threads "
        f"{verdict['threads'][0]:g} -> {verdict['threads'][1]:g}; oldest delivered row "
        f"{verdict['max_delivered_age']:.0f} s (limit {verdict['retention_limit']:.0f} s)"
    )
    for problem in verdict["problems"]:
        print(f"PROBLEM: {problem}")
    print("PASSED" if result["passed"] else "FAILED")


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    days = [s["sim_days"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(days, [s["rss_kb"] / 1024 for s in samples], color="tab:blue")
    axes[0].set_ylabel("RSS (MB)")
    axes[1].plot(days, [s["tasks"] for s in samples], label="asyncio tasks")
    axes[1].plot(days, [s["fds"] for s in samples], label="open fds")
    axes[1].plot(days, [s["threads"] for s in samples], label="threads")
    axes[1].legend(loc="upper left")
    axes[1].set_ylabel("count")
    axes[2].plot(days, [s["rows"]["delivered"] for s in samples], label="delivered rows (retention)")
    axes[2].plot(days, [s["rows"]["pending"] for s in samples], label="pending rows")
    ax2 = axes[2].twinx()
    ax2.plot(days, [s["outbox_bytes"] / 1e6 for s in samples], color="tab:gray", linestyle=":")
    ax2.set_ylabel("outbox file (MB, dotted)")
    axes[2].legend(loc="upper left")
    axes[2].set_ylabel("outbox rows")
    axes[2].set_xlabel("simulated days")
    for day, what in result["events"]:
        if what.startswith(("SIGTERM", "SIGKILL")):
            for ax in axes:
                ax.axvline(day, color="tab:red", linewidth=0.8, linestyle="--")
    fig.suptitle(
        f"gcbridge soak: {result['days']:g} simulated days at time scale {result['time_scale']:g} "
        "(red: SIGTERM / SIGKILL restarts)"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    p.add_argument("--time-scale", type=float, default=400.0, help="simulated seconds per real second")
    p.add_argument("--rate", type=float, default=20.0, help="events per real second (default 20)")
    p.add_argument("--sample-hours", type=float, default=1.0, help="simulated hours between samples")
    p.add_argument("--retention-hours", type=float, default=6.0, help="outbox retention, simulated hours")
    p.add_argument("--heartbeat-real", type=float, default=1.0, help="heartbeat interval, real seconds")
    p.add_argument("--closing-grace-real", type=float, default=3.0, help="socket_closing grace, real s")
    p.add_argument("--stall-real", type=float, default=10.0, help="how long a stalled socket stays silent")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument(
        "--tracemalloc",
        metavar="DIR",
        help="run the service under tracemalloc (bench/tracemalloc_service.py) and dump snapshots into DIR "
        "(compare with bench/tracemalloc_diff.py DIR); RSS then includes tracemalloc's own memory",
    )
    p.add_argument("--snapshot-days", type=float, default=0.5, help="simulated days between snapshots")
    p.add_argument(
        "--frames",
        type=int,
        default=10,
        help="with --tracemalloc: frames per traceback; 0 records only RSS, SQLite's and malloc's memory "
        "(no tracemalloc, no cost to the service)",
    )
    p.add_argument("--dir", help="working directory (default: a new temporary one, kept)")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--plot", default="bench/soak.png", help="PNG to write (matplotlib)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--progress", action="store_true", help="print every sample")
    p.add_argument("--verbose", action="store_true", help="print every fault as it is applied")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    result = asyncio.run(Soak(args).run())
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print_report(result)
    print(f"wall time {result['wall_seconds']:.0f} s; files in {result['dir']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if not args.no_plot:
        plot(result, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
