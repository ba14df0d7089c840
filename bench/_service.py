"""What ``bench_latency.py`` and ``bench_cost.py`` share: ``gcbridge run`` as a real process against the
simulators, its configuration, and what ``/proc`` says about a process.

The ServiceNow simulator runs in a child process (``bench_delivery.simulator``, so it does not share an event
loop with anything measured); the Genesys simulator runs in the benchmark's own process, where its ledger
(what it published, and when) can be read directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gcbridge.sim.genesys import GenesysSim, SimConfig

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


class BridgeProcess:
    """One ``python -m gcbridge run`` child; its logs go to ``log``; ``url`` is the admin endpoint it
    announces in its log."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.with_name("gcbridge.log")
        self.proc: asyncio.subprocess.Process | None = None
        self._url: str | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str | None:
        if self._url is None and self.log.exists():
            with self.log.open("rb") as log:
                for line in log:
                    if b'"admin endpoint listening"' in line:
                        self._url = orjson.loads(line)["url"]
                        break
        return self._url

    async def start(self) -> None:
        env = {**os.environ, "GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET}
        # BENCH_PROFILE=FILE: run the service under cProfile (its event loop thread), stats to FILE.<pid>
        profile = os.environ.get("BENCH_PROFILE")
        profiler = ["-m", "cProfile", "-o", f"{profile}.{os.getpid()}.{id(self)}"] if profile else []
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *profiler,
                "-m",
                "gcbridge",
                "run",
                "--config",
                str(self.config),
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(self.config.parent),
            )

    async def status(self) -> dict[str, Any] | None:
        if self.url is None:
            return None
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
                http.get(f"{self.url}/status") as response,
            ):
                doc: dict[str, Any] = await response.json()
                return doc
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_ready(self, limit: float = 90.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"gcbridge run exited with {self.proc.returncode}:\n{self.tail()}")
            doc = await self.status()
            if doc is not None and doc.get("readiness", {}).get("ready"):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gcbridge run not ready after {limit:.0f} s:\n{self.tail()}")

    async def wait_drained(self, limit: float = 120.0) -> bool:
        """Until the outbox holds nothing pending or in flight; False if ``limit`` passed first."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            outbox = ((await self.status()) or {}).get("outbox", {})
            if outbox.get("pending", 1) == 0 and outbox.get("in_flight", 1) == 0:
                return True
            await asyncio.sleep(0.25)
        return False

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


@contextlib.asynccontextmanager
async def running_bridge(config: Path) -> AsyncIterator[BridgeProcess]:
    bridge = BridgeProcess(config)
    await bridge.start()
    try:
        await bridge.wait_ready()
        yield bridge
    finally:
        await bridge.stop()


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
