"""What ``bench_latency.py`` and ``bench_cost.py`` share: ``gcbridge run`` as a real process against the
simulators (started, watched and stopped by ``gcbridge.sim.processes``), its configuration, and what
``/proc`` says about a process.

The ServiceNow simulator runs in a child process (``bench_delivery.simulator``, so it does not share an event
loop with anything measured); the Genesys simulator runs in the benchmark's own process, where its ledger
(what it published, and when) can be read directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from gcbridge.sim.genesys import GenesysSim, SimConfig
from gcbridge.sim.processes import ServiceProcess

GENESYS_CLIENT = "gcbridge-bench"
GENESYS_SECRET = "bench-genesys-secret"
SN_USER, SN_PASSWORD = "admin", "admin-pass"  # what bench_delivery.simulator() configures
SEQ_FIELD = "u_sim_seq"  # staging column that carries the Genesys simulator's sequence number

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def queue_topics(count: int) -> list[str]:
    return [f"v2.routing.queues.{i:08x}-5e1f-4000-8000-{i:012x}.conversations" for i in range(count)]


def presence_topics(count: int) -> list[str]:
    return [f"v2.users.{i:08x}-a9e7-4000-8000-{i:012x}.presence" for i in range(count)]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def genesys_sim(seed: int = 7) -> GenesysSim:
    # heartbeats as Genesys sends them; a ledger large enough for the longest run
    sim = GenesysSim(SimConfig(seed=seed, ledger_max=2_000_000))
    sim.add_oauth_client(GENESYS_CLIENT, GENESYS_SECRET)
    await sim.start("127.0.0.1", 0)
    return sim


def mapping_toml(with_sequence: bool) -> str:
    """The built-in mapping as ``[servicenow.mapping]`` of a config file; ``with_sequence`` adds one column to
    every rule, the Genesys simulator's ``metadata.simSequence``, so a staging row names the event it came
    from (the benchmark's only change to what the bridge writes)."""
    text = resources.files("gcbridge.bridge").joinpath("default_mapping.toml").read_text()
    out = []
    for line in text.splitlines():
        if line.startswith("[[rules]]"):
            line = "[[servicenow.mapping.rules]]"
        elif line.startswith("[rules."):
            line = "[servicenow.mapping.rules." + line[len("[rules.") :]
        out.append(line)
        if with_sequence and line == "[servicenow.mapping.rules.fields]":
            out.append(f'{SEQ_FIELD} = "{{metadata.simSequence}}"')
    return "\n".join(out) + "\n"


def write_config(
    directory: Path,
    genesys_url: str,
    servicenow_url: str,
    topics: list[str],
    *,
    dispatcher: Mapping[str, Any] | None = None,
    servicenow: Mapping[str, Any] | None = None,
    outbox: Mapping[str, Any] | None = None,
    with_sequence: bool = True,
) -> Path:
    """A ``gcbridge.toml`` for the two simulators: product defaults except what the arguments name."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sn_password").write_text(SN_PASSWORD + "\n")
    (directory / "topics.txt").write_text("\n".join(topics) + "\n")

    def table(values: Mapping[str, Any] | None) -> str:
        return "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in (values or {}).items())

    path = directory / "gcbridge.toml"
    path.write_text(
        f"""
[genesys]
base_url = "{genesys_url}"
client_id = "{GENESYS_CLIENT}"
topics = {orjson.dumps(topics).decode()}

[servicenow]
instance_url = "{servicenow_url}"
{table(servicenow)}
[servicenow.auth]
kind = "basic"
username = "{SN_USER}"
password_file = "sn_password"

[outbox]
path = "state/outbox.db"
{table(outbox)}
[outbox.dispatcher]
{table(dispatcher)}
[admin]
port = 0

[logging]
level = "info"

{mapping_toml(with_sequence)}"""
    )
    return path


def bridge_process(config: Path) -> ServiceProcess:
    """``gcbridge run`` on ``config``, its logs in ``gcbridge.log`` beside it. ``BENCH_PROFILE=FILE`` runs the
    service under cProfile (its event loop thread), stats to ``FILE.<pid>.<n>``."""
    profile = os.environ.get("BENCH_PROFILE")
    profiler = ["-m", "cProfile", "-o", f"{profile}.{os.getpid()}.{next(_profiles)}"] if profile else []
    return ServiceProcess(
        config,
        config.with_name("gcbridge.log"),
        env={"GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET},
        python_options=profiler,
    )


_profiles = itertools.count()


@contextlib.asynccontextmanager
async def running_bridge(config: Path) -> AsyncIterator[ServiceProcess]:
    """:func:`bridge_process` started and ready; stopped (SIGTERM, SIGKILL after 60 s) however it ends."""
    bridge = bridge_process(config)
    await bridge.start()
    try:
        await bridge.wait_ready()
        yield bridge
    finally:
        await bridge.stop(within=60.0)


@dataclass(frozen=True, slots=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_seconds: float  # user + system, this process and its threads
    rss_bytes: int
    switches: int  # context switches of all its threads: how often it woke up (a timer that spins shows)


def proc_sample(pid: int) -> ProcSample:
    """CPU time and resident set size of ``pid`` from ``/proc`` (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end between listing and reading
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    switches += int(line.split()[1])
    return ProcSample(time.monotonic(), (utime + stime) / CLOCK_TICKS, rss_pages * PAGE_SIZE, switches)


@dataclass(frozen=True, slots=True)
class Cost:
    cpu_percent: float  # of one core, averaged over the window
    rss_mib: float  # at the end of the window
    rss_max_mib: float  # largest sample in the window
    wakeups: float  # context switches per second, all threads


async def measure_cost(pid: int, window: float, every: float = 1.0) -> Cost:
    """CPU share and RSS of ``pid`` over ``window`` seconds (sampled every ``every`` s)."""
    first = proc_sample(pid)
    samples = [first]
    while samples[-1].at - first.at < window:
        await asyncio.sleep(min(every, window - (samples[-1].at - first.at)))
        samples.append(proc_sample(pid))
    last = samples[-1]
    cpu = 100.0 * (last.cpu_seconds - first.cpu_seconds) / (last.at - first.at)
    seconds = last.at - first.at
    return Cost(
        cpu,
        last.rss_bytes / 2**20,
        max(s.rss_bytes for s in samples) / 2**20,
        (last.switches - first.switches) / seconds,
    )
