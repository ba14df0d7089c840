"""``gcbridge`` commands as child processes, started, watched and stopped the way tests and benchmarks run
them against the simulators.

* :class:`ServiceProcess`: ``gcbridge run`` with its output in a log file. The service binds its admin
  endpoint to port 0 and announces it in the log, so :attr:`ServiceProcess.url` is read from there (from the
  current run's part of the log: a restart may move it); readiness and the outbox come from ``/status``.
* :func:`simulator_process`: ``gcbridge sim genesys|servicenow`` (given ``--port 0``), ready once it prints
  the URL it serves; stopped when the block ends.
* :func:`gcbridge_argv`: the command line of either, optionally started as a script's background job
  (``cmd &``) starts it: with SIGINT ignored, a disposition the commands must not rely on.

Every wait is on a signal from the process (a printed line, ``/status``), with a generous limit for a busy
machine, never a fixed sleep. A process that outlives its stop limit is killed (SIGKILL) before the error is
raised, and anything still running when the interpreter exits is killed then: a failed test or benchmark
leaves no process behind.

It ships next to the simulators so that the test suite and the benchmarks (run as ``python bench/x.py``,
with the installed package and nothing else on their path) share one implementation. It imports nothing of
the project: the commands are separate processes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

__all__ = [
    "ProcessError",
    "ServiceProcess",
    "SimulatorProcess",
    "gcbridge_argv",
    "is_ready",
    "kill_children",
    "sigint_ignored",
    "simulator_process",
]

_EXEC_WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
_ANNOUNCED = b'"admin endpoint listening"'  # the service's log line that carries its admin URL
_SIM_URL = re.compile(r"(http://127\.0\.0\.1:\d+)")
_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A child exited before it was ready, was not ready in time, or did not stop in time (it was killed
    then); the message ends with the tail of its log where there is one."""


def sigint_ignored(*argv: str) -> list[str]:
    """``argv`` (a program and its arguments) run with SIGINT ignored: the ignore survives ``exec``, as it
    does for a POSIX shell's background job."""
    return [sys.executable, "-c", _EXEC_WITH_SIGINT_IGNORED, *argv]


def gcbridge_argv(*args: str, ignore_sigint: bool = False, python_options: Sequence[str] = ()) -> list[str]:
    """``python [python_options] -m gcbridge *args`` with this interpreter, optionally with SIGINT ignored.
    ``python_options`` go before ``-m gcbridge`` (``["-m", "cProfile", "-o", FILE]`` profiles the command)."""
    argv = [sys.executable, *python_options, "-m", "gcbridge", *args]
    return sigint_ignored(*argv) if ignore_sigint else argv


def _die_with_parent() -> None:
    """In the child before ``exec``: SIGTERM it when its parent dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``; elsewhere nothing). Only a ``prctl`` call: no locks or threads in the child."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Children still running at interpreter exit are killed: a test interrupted where no ``finally`` runs (a
# timeout signal) or a benchmark stopped by an exception must not leave them behind.
_children: set[asyncio.subprocess.Process] = set()


@atexit.register
def kill_children() -> int:
    """SIGKILL every child started here that still runs, without waiting (the event loop's child watcher
    reaps them); returns how many. For a test's teardown, and run at interpreter exit."""
    killed = 0
    for proc in list(_children):
        _children.discard(proc)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
    return killed


async def _spawn(argv: Sequence[str], *, die_with_parent: bool, **options: Any) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *argv, preexec_fn=_die_with_parent if die_with_parent else None, **options
    )
    _children.add(proc)
    return proc


async def _wait(proc: asyncio.subprocess.Process, within: float) -> int | None:
    """The exit code once ``proc`` ends, or None if it is still running after ``within`` seconds."""
    try:
        code = await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        return None
    _children.discard(proc)
    return code


async def _kill(proc: asyncio.subprocess.Process) -> int:
    """SIGKILL (it also ends a process stopped with SIGSTOP) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    code = await proc.wait()
    _children.discard(proc)
    return code


def is_ready(status: Mapping[str, Any]) -> bool:
    """The service's own verdict in ``/status``: every shard live and ServiceNow reachable."""
    readiness = status.get("readiness") or {}
    return bool(readiness.get("ready"))


class ServiceProcess:
    """One ``gcbridge run --config CONFIG`` child at a time, its stdout and stderr appended to ``log``, run in
    the config file's folder (relative paths in the config resolve there) with ``env`` laid over this
    process's environment. :meth:`start` again after it ended is a restart on the same log.

    ``ignore_sigint`` starts it with SIGINT ignored (see :func:`sigint_ignored`); ``python_options`` go to
    the interpreter (see :func:`gcbridge_argv`); ``die_with_parent`` has the kernel SIGTERM it should this
    process die without stopping it (Linux).
    """

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        ignore_sigint: bool = False,
        python_options: Sequence[str] = (),
        die_with_parent: bool = False,
    ) -> None:
        self.config, self.log = config, log
        self.env = dict(env or {})
        self.ignore_sigint = ignore_sigint
        self.python_options = list(python_options)
        self.die_with_parent = die_with_parent
        self.proc: asyncio.subprocess.Process | None = None
        self._url: str | None = None
        self._log_offset = 0  # where the current run's part of the log starts

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def url(self) -> str | None:
        """The admin endpoint the current run announced in its log, once it has."""
        if self._url is None and self.log.exists():
            with self.log.open("rb") as log:
                log.seek(self._log_offset)
                for line in log:
                    if _ANNOUNCED in line:
                        self._url = orjson.loads(line)["url"]
                        break
        return self._url

    async def start(self) -> None:
        # unbuffered: the log is read while the service runs
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._url, self._log_offset = None, self.log.stat().st_size if self.log.exists() else 0
        argv = gcbridge_argv(
            "run",
            "--config",
            str(self.config),
            ignore_sigint=self.ignore_sigint,
            python_options=self.python_options,
        )
        with self.log.open("ab") as log:
            self.proc = await _spawn(
                argv,
                die_with_parent=self.die_with_parent,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(self.config.parent),
            )

    async def status(
        self, http: aiohttp.ClientSession | None = None, within: float = 5.0
    ) -> dict[str, Any] | None:
        """``/status``, or None while there is no answer (not announced yet, not listening, gone, busy).
        ``http``: a session to reuse (a sampler asking often), else a new one; ``within``: seconds for the
        answer."""
        if self.url is None:
            return None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if http is None:
                    http = await stack.enter_async_context(aiohttp.ClientSession())
                response = await stack.enter_async_context(
                    http.get(f"{self.url}/status", timeout=aiohttp.ClientTimeout(total=within))
                )
                if response.status != 200:
                    return None
                doc: dict[str, Any] = await response.json()
                return doc
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def fetch(self, path: str, within: float = 5.0) -> str:
        """The text of ``path`` on the admin endpoint (``/metrics``, ``/``)."""
        assert self.url is not None, "the service has not announced its admin endpoint"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as http,
            http.get(f"{self.url}{path}") as response,
        ):
            return await response.text()

    async def wait_ready(
        self, limit: float = 90.0, ready: Callable[[Mapping[str, Any]], bool] = is_ready
    ) -> None:
        """Until ``/status`` satisfies ``ready`` (by default the service's own readiness); raises
        :class:`ProcessError` when the process exits first or ``limit`` seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            assert self.proc is not None, "not started"
            if self.proc.returncode is not None:
                raise ProcessError(f"gcbridge run exited with {self.proc.returncode}:\n{self.tail()}")
            doc = await self.status()
            if doc is not None and ready(doc):
                return
            await asyncio.sleep(0.2)
        raise ProcessError(f"gcbridge run not ready after {limit:g} s:\n{self.tail()}")

    async def wait_drained(self, limit: float = 120.0) -> bool:
        """Until the outbox holds nothing pending or in flight; False if ``limit`` seconds passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            outbox = ((await self.status()) or {}).get("outbox", {})
            if outbox.get("pending", 1) == 0 and outbox.get("in_flight", 1) == 0:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.25)

    async def wait_settled(self, limit: float = 90.0) -> None:
        """:meth:`wait_drained`, raising :class:`ProcessError` when the outbox does not empty in time."""
        if not await self.wait_drained(limit):
            raise ProcessError(f"the outbox never emptied in {limit:g} s:\n{self.tail()}")

    async def terminate(self, sig: signal.Signals = signal.SIGTERM, within: float = 90.0) -> int:
        """Send ``sig`` and return the exit code (negative: the signal that ended it). When it is still
        running after ``within`` seconds it is killed and :class:`ProcessError` raised."""
        assert self.proc is not None, "not started"
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        code = await _wait(self.proc, within)
        if code is None:
            await _kill(self.proc)
            raise ProcessError(f"gcbridge run did not stop within {within:g} s of {sig.name}:\n{self.tail()}")
        return code

    async def kill(self) -> int:
        """SIGKILL: no drain, no clean mark (a crash); also ends a process stopped with SIGSTOP."""
        assert self.proc is not None, "not started"
        return await _kill(self.proc)

    async def stop(self, within: float = 60.0) -> None:
        """Clean-up that never raises: SIGTERM when it runs, SIGKILL after ``within`` seconds."""
        if self.running:
            with contextlib.suppress(ProcessError):
                await self.terminate(signal.SIGTERM, within)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (for a failure message)."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class SimulatorProcess:
    """A running ``gcbridge sim`` command. ``first_line`` is the line that named ``base_url``; ``stderr``
    (when captured) and ``returncode`` are filled in once it has ended."""

    proc: asyncio.subprocess.Process
    first_line: str
    base_url: str
    stderr: str = ""
    returncode: int | None = None
    # the task copying its later output to a file (``stdout_to``), when it goes there
    output_copy: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def readline(self, within: float = 10.0) -> str:
        """The next line the simulator prints (not when its output goes to a file)."""
        assert self.output_copy is None, "its output goes to a file"
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), within)).decode()


@contextlib.asynccontextmanager
async def simulator_process(
    *args: str,
    stop_with: signal.Signals = signal.SIGINT,
    ignore_sigint: bool = False,
    stderr: int | Path = asyncio.subprocess.PIPE,
    stdout_to: Path | None = None,
    ready_within: float = 60.0,
    stop_within: float = 60.0,
    die_with_parent: bool = False,
) -> AsyncIterator[SimulatorProcess]:
    """``python -m gcbridge sim *args``, entered once it prints the URL it serves (on 127.0.0.1: give it
    ``--port 0`` and it picks a free port, so no other process can take it between choosing and binding).

    On exit it is sent ``stop_with`` and awaited; after ``stop_within`` seconds it is killed and
    :class:`ProcessError` raised, so the caller may check :attr:`SimulatorProcess.returncode`.
    ``stderr``: ``PIPE`` (kept in :attr:`SimulatorProcess.stderr` at the end), ``DEVNULL``, or a file to
    append to. ``stdout_to``: a file that gets every later line it prints (else read them with
    :meth:`SimulatorProcess.readline`; one that prints much must be read, or it blocks on a full pipe).
    """
    with contextlib.ExitStack() as files:
        err: int | IO[bytes] = stderr if isinstance(stderr, int) else files.enter_context(stderr.open("ab"))
        proc = await _spawn(
            gcbridge_argv("sim", *args, ignore_sigint=ignore_sigint),
            die_with_parent=die_with_parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env={**os.environ, "COLUMNS": "200"},  # the banner line must not wrap
        )
        assert proc.stdout is not None
        command: SimulatorProcess | None = None
        try:
            command = await _announced(proc, proc.stdout, ready_within)
            if stdout_to is not None:
                out = files.enter_context(stdout_to.open("ab"))
                out.write(command.first_line.encode())
                command.output_copy = asyncio.create_task(_copy(proc.stdout, out))
            yield command
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(stop_with)
            try:
                captured = await asyncio.wait_for(_ended(proc, command), stop_within)
            except TimeoutError:
                await _kill(proc)
                raise ProcessError(
                    f"the simulator did not stop within {stop_within:g} s of {stop_with.name}"
                ) from None
            finally:
                if command is not None and command.output_copy is not None:
                    command.output_copy.cancel()
            _children.discard(proc)
    if command is not None:
        command.stderr = captured.decode(errors="replace")
        command.returncode = proc.returncode


async def _announced(
    proc: asyncio.subprocess.Process, stdout: asyncio.StreamReader, within: float
) -> SimulatorProcess:
    """The first line that names the simulator's URL; raises :class:`ProcessError` when it ends or stays
    silent first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen: list[str] = []
    while True:
        try:
            line = (await asyncio.wait_for(stdout.readline(), max(0.0, deadline - loop.time()))).decode()
        except TimeoutError:
            raise ProcessError(f"the simulator named no URL within {within:g} s: {seen!r}") from None
        if not line:  # its output closed: it is ending
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), max(0.0, deadline - loop.time()))
            raise ProcessError(
                f"the simulator ended before naming its URL (exit {proc.returncode}): {seen!r}"
            )
        match = _SIM_URL.search(line)
        if match:
            return SimulatorProcess(proc, line, match.group(1))
        seen.append(line)


async def _ended(proc: asyncio.subprocess.Process, command: SimulatorProcess | None) -> bytes:
    """Its captured stderr once it has ended; its output is read meanwhile, so a full pipe cannot keep it
    from ending."""
    copier = command.output_copy if command is not None else None
    if copier is None:
        _, err = await proc.communicate()
        return err or b""
    reads = await asyncio.gather(copier, proc.stderr.read() if proc.stderr else _nothing(), proc.wait())
    return bytes(reads[1])


async def _nothing() -> bytes:
    return b""


async def _copy(stream: asyncio.StreamReader, out: IO[bytes]) -> None:
    while line := await stream.readline():
        out.write(line)
        out.flush()
