"""``gcbridge run`` as a real subprocess, as the service end-to-end tests start, watch and stop it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.commands import gcbridge_argv

from .conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER


def write_service_config(
    directory: Path,
    genesys_url: str,
    client_id: str,
    topics: list[str],
    sn_url: str,
    *,
    admin_port: int = 0,
    extra: str = "",
) -> Path:
    """``directory/gcbridge.toml`` for a service between two simulators (the ServiceNow password in a file
    beside it, the Genesys secret from the environment :class:`Bridge` sets), debug logs; ``extra`` is TOML
    appended (more sections). The admin endpoint takes any free port unless ``admin_port`` is given."""
    (directory / "sn_password").write_text(SN_PASSWORD + "\n")
    path = directory / "gcbridge.toml"
    listed = ", ".join(f'"{t}"' for t in topics)
    path.write_text(f"""
[genesys]
base_url = "{genesys_url}"
client_id = "{client_id}"
topics = [{listed}]

[servicenow]
instance_url = "{sn_url}"
[servicenow.auth]
kind = "basic"
username = "{SN_USER}"
password_file = "sn_password"

[outbox]
path = "state/outbox.db"
drain_timeout = 20.0
[outbox.dispatcher]
backoff_initial = 0.1
backoff_max = 1.0
idle_poll = 1.0

[admin]
port = {admin_port}

[logging]
level = "debug"
{extra}""")
    return path


class Bridge:
    """One ``gcbridge run`` subprocess; its stderr (the JSON logs) goes to a file. ``url`` is its admin
    endpoint, read from the log line that announces it (so a restart may move it)."""

    def __init__(self, config: Path, log: Path, *, ignore_sigint: bool = False) -> None:
        self.config, self.log, self.ignore_sigint = config, log, ignore_sigint
        self.proc: asyncio.subprocess.Process | None = None
        self._url: str | None = None
        self._log_offset = 0

    @property
    def url(self) -> str | None:
        """The admin endpoint this run announced, once it has."""
        if self._url is None and self.log.exists():
            with self.log.open("rb") as log:
                log.seek(self._log_offset)
                for line in log:
                    if b'"admin endpoint listening"' in line:
                        self._url = orjson.loads(line)["url"]
                        break
        return self._url

    async def start(self) -> None:
        env = {**os.environ, "GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET, "PYTHONUNBUFFERED": "1"}
        self._url, self._log_offset = None, self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *gcbridge_argv("run", "--config", str(self.config), ignore_sigint=self.ignore_sigint),
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
                http.get(f"{self.url}/status") as r,
            ):
                doc: dict[str, Any] = await r.json()
                return doc
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def fetch(self, path: str) -> str:
        assert self.url is not None, "the bridge has not announced its admin endpoint"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(f"{self.url}{path}") as r,
        ):
            return await r.text()

    async def wait_settled(self) -> None:
        """Until the outbox is empty (everything received was delivered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:
            doc = await self.status()
            outbox = (doc or {}).get("outbox", {})
            if doc is not None and outbox.get("pending", 1) == 0 and outbox.get("in_flight", 1) == 0:
                return
            assert loop.time() < deadline, f"outbox never emptied:\n{self.tail()}"
            await asyncio.sleep(0.3)

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while loop.time() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"bridge exited with {self.proc.returncode}:\n{self.tail()}")
            doc = await self.status()
            if doc is not None and doc.get("readiness", {}).get("ready"):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"bridge not ready after 90 s:\n{self.tail()}")

    async def terminate(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), 90)
        except TimeoutError:
            self.proc.kill()
            raise AssertionError(f"bridge did not drain within 90 s:\n{self.tail()}") from None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
