"""``gcbridge sim servicenow`` as a user starts it: a real process that serves the options it was given and
stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp


async def test_the_command_serves_its_users_and_stops_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gcbridge",
        "sim",
        "servicenow",
        "--port",
        "0",
        "--user",
        "bob:bob-pass",
        "--inject",
        "503:1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first.decode())
        assert match, first
        url = match.group(1)
        bob = {"Authorization": aiohttp.encode_basic_auth("bob", "bob-pass")}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/now/table/incident", headers=bob) as r:
                assert r.status == 503  # the injected fault comes first
            body = {"short_description": "from the command line"}
            async with http.post(f"{url}/api/now/table/incident", json=body, headers=bob) as r:
                assert r.status == 201
                created = (await r.json())["result"]
            assert created["number"].startswith("INC")
            async with http.get(
                f"{url}/api/now/table/incident",
                headers={"Authorization": aiohttp.encode_basic_auth("admin", "admin")},
            ) as r:
                assert r.status == 401  # only the users given on the command line exist
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
