"""``gcbridge sim genesys`` runs the simulator until interrupted and prints what a client needs."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp


async def test_cli_serves_and_stops_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gcbridge.cli import main; main()",
        "sim",
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
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first)
        assert match, first
        base_url = match.group(1)
        banner = first + (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        banner += (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
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
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0, (await proc.stderr.read()).decode() if proc.stderr else code


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
