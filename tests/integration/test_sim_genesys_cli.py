"""``gcbridge sim genesys`` runs the simulator until interrupted and prints what a client needs."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

from gcbridge.sim.processes import simulator_process


async def test_cli_serves_and_stops_on_ctrl_c() -> None:
    async with simulator_process(
        "genesys",
        "--port",
        "0",
        "--client-id",
        "cli-client",
        "--client-secret",
        "cli-secret",
        "--time-scale",
        "10",
        "--traffic",
        "50",
    ) as command:
        base_url = command.base_url
        banner = command.first_line + await command.readline() + await command.readline()
        assert "cli-client" in banner
        assert "cli-secret" in banner
        async with aiohttp.ClientSession() as session:
            async with session.post(
                base_url + "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=None,
                headers={"Authorization": "Basic Y2xpLWNsaWVudDpjbGktc2VjcmV0"},  # cli-client:cli-secret
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["expires_in"] == 8640  # 86399 / 10, rounded
            async with session.get(base_url + "/_sim/state") as resp:
                assert (await resp.json())["baseUrl"] == base_url
    assert command.returncode == 0, command.stderr


async def test_cli_rejects_bad_options() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gcbridge.cli import main; main()",
        "sim",
        "genesys",
        "--time-scale",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"time_scale" in err


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_cli_stops_on_a_signal_even_when_started_with_sigint_ignored(stop_with: signal.Signals) -> None:
    async with (
        simulator_process("genesys", "--port", "0", stop_with=stop_with, ignore_sigint=True) as command,
        aiohttp.ClientSession() as session,
        session.get(command.base_url + "/_sim/state") as resp,
    ):
        assert resp.status == 200
    assert command.returncode == 0, command.stderr
    assert "Traceback" not in command.stderr
