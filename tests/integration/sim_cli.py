"""Run ``gcbridge sim …`` as a user does: a real process, its printed base URL, then Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.commands import gcbridge_argv


@dataclass
class SimCommand:
    """A running ``gcbridge sim`` process; ``stderr`` and ``returncode`` are filled in once it has ended."""

    proc: asyncio.subprocess.Process
    first_line: str
    base_url: str
    stderr: str = ""
    returncode: int | None = None

    async def readline(self, within: float = 10.0) -> str:
        """The next line the simulator prints."""
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), within)).decode()


@asynccontextmanager
async def sim_command(
    *args: str, stop_with: signal.Signals = signal.SIGINT, ignore_sigint: bool = False
) -> AsyncIterator[SimCommand]:
    """``python -m gcbridge sim *args``, once its first line names the URL it serves; on exit it is sent
    ``stop_with`` and awaited (generous timeouts: the machine is shared), and the caller checks
    ``returncode``. ``ignore_sigint`` starts it with SIGINT ignored (see ``tests.commands``)."""
    proc = await asyncio.create_subprocess_exec(
        *gcbridge_argv("sim", *args, ignore_sigint=ignore_sigint),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},  # the banner line must not wrap
    )
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first)
        assert match, first
        command = SimCommand(proc, first, match.group(1))
        yield command
    finally:
        proc.send_signal(stop_with)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()  # never leave a simulator behind
            await proc.wait()
            raise AssertionError(f"the simulator did not stop within 60 s of {stop_with.name}") from None
    command.stderr = err.decode(errors="replace")
    command.returncode = proc.returncode
