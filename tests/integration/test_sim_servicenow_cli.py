"""``gcbridge sim servicenow`` as a user starts it: a real process that serves the options it was given and
stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal

import aiohttp
import pytest

from gcbridge.sim.processes import simulator_process


async def test_the_command_serves_its_users_and_stops_on_ctrl_c() -> None:
    async with simulator_process(
        "servicenow", "--port", "0", "--user", "bob:bob-pass", "--inject", "503:1"
    ) as command:
        assert "listening on " + command.base_url in command.first_line
        url = command.base_url
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
    assert command.returncode == 0, command.stderr[-2000:]
    assert "Traceback" not in command.stderr


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_the_command_stops_on_a_signal_even_when_started_with_sigint_ignored(
    stop_with: signal.Signals,
) -> None:
    async with simulator_process(
        "servicenow", "--port", "0", stop_with=stop_with, ignore_sigint=True
    ) as command:
        admin = {"Authorization": aiohttp.encode_basic_auth("admin", "admin")}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{command.base_url}/api/now/table/incident", headers=admin) as r,
        ):
            assert r.status == 200
    assert command.returncode == 0, command.stderr[-2000:]
    assert "Traceback" not in command.stderr
