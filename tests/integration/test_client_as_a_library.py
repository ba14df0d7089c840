"""The client as a new user meets it: silent unless the program configures logging, and a wrong address
fails within ``ClientOptions.start_timeout`` with an error naming the URL it tried."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcbridge.genesys import ClientOptions, GenesysError, NotificationClient, StartTimeoutError
from tests.integration.conftest import SimFactory

# A program using the client: subscribe, receive events, live through a dropped socket (with a refused
# handshake and failing REST calls on the way back), receive again, close. The simulator runs in the same
# process. It writes what it saw to the file named by argv[1]; argv[2] optionally configures logging.
PROGRAM = r"""
import asyncio, json, logging, sys

from gcbridge.genesys import Gap, NotificationClient
from gcbridge.sim.genesys import GenesysSim

if len(sys.argv) > 2:
    logging.basicConfig(level=sys.argv[2], format="%(levelname)s %(name)s %(message)s")

TOPIC = "v2.users.a9e70001-0000-4000-8000-000000000001.presence"


async def until(condition, what):
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


async def main():
    sim = GenesysSim()
    await sim.start("127.0.0.1", 0)
    got = []
    client = NotificationClient(
        base_url=sim.base_url, client_id=sim.config.client_id, client_secret=sim.config.client_secret
    )
    async with client:
        await client.subscribe([TOPIC])

        async def consume():
            async for item in client:
                got.append(item)

        consumer = asyncio.create_task(consume())

        async def publish_until(count):
            while sum(not isinstance(i, Gap) for i in got) < count:
                sim.publish(TOPIC)
                await asyncio.sleep(0.02)

        await asyncio.wait_for(publish_until(3), 30)
        sim.fail_next_rest(2, status=503)
        sim.refuse_handshakes(1)
        await sim.drop_socket()
        await until(lambda: any(isinstance(i, Gap) for i in got), "a gap")
        await asyncio.wait_for(publish_until(6), 30)
        stats = client.stats()
    await consumer
    await sim.stop()
    with open(sys.argv[1], "w") as out:
        json.dump(
            {
                "events": sum(not isinstance(i, Gap) for i in got),
                "gaps": sum(isinstance(i, Gap) for i in got),
                "reconnects": sum(stats.reconnects_by_reason.values()),
            },
            out,
        )


asyncio.run(main())
"""


def run_program(tmp_path: Path, *log_level: str) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    script, result = tmp_path / "program.py", tmp_path / "result.json"
    script.write_text(PROGRAM)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script), str(result), *log_level],
        capture_output=True,
        text=True,
        timeout=180,  # a hang guard only
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, int] = json.loads(result.read_text())
    assert seen["events"] >= 6
    assert seen["gaps"] >= 1
    assert seen["reconnects"] >= 1
    return done, seen


def test_with_logging_unconfigured_a_program_prints_nothing(tmp_path: Path) -> None:
    done, _ = run_program(tmp_path)
    assert done.stdout == ""
    assert done.stderr == ""


def test_configured_logging_shows_one_warning_per_lifecycle_change_and_leaves_stdout_alone(
    tmp_path: Path,
) -> None:
    done, seen = run_program(tmp_path, "INFO")
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if " gcbridge.genesys." in line]
    warnings = [line for line in lines if line.startswith("WARNING")]
    # one reconnect incident, one warning: the path lost its connection; retries are at debug, and the gap is
    # the Gap item the program received (the library does not say it again at warning)
    assert len(warnings) == seen["gaps"], warnings
    assert sum("notification path lost its connection" in w for w in warnings) == seen["gaps"]
    assert not any("gap in notifications" in line for line in lines)
    assert any("notification path reconnected" in line for line in lines)
    assert not any(line.startswith("DEBUG") for line in lines)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_a_base_url_where_nothing_listens_fails_within_start_timeout(closed_port: int) -> None:
    base_url = f"http://127.0.0.1:{closed_port}"
    client = NotificationClient(
        base_url=base_url, client_id="c", client_secret="s", options=ClientOptions(start_timeout=0.5)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(60):  # a hang guard: the bound under test is start_timeout
        with pytest.raises(StartTimeoutError) as info:
            async with client:
                pass
    waited = loop.time() - started
    error = info.value
    assert isinstance(error, GenesysError)
    assert isinstance(error, TimeoutError)
    assert error.url == f"{base_url}/oauth/token"
    assert f"no token from {base_url}/oauth/token within 0.5 s" in str(error)
    assert "ClientConnectorError" in error.last_failure
    assert error.last_failure in str(error)
    assert waited >= 0.5  # it kept trying for the whole window, not only once
    with pytest.raises(GenesysError, match="closed"):
        await client.subscribe(["v2.users.u1.presence"])  # and it is closed, nothing left running


async def test_a_token_endpoint_that_keeps_failing_is_named_with_its_last_answer(
    genesys_sim_factory: SimFactory,
) -> None:
    sim = await genesys_sim_factory()
    sim.fail_next_token(10_000, status=503)
    client = NotificationClient(
        base_url=sim.base_url,
        client_id=sim.config.client_id,
        client_secret=sim.config.client_secret,
        options=ClientOptions(start_timeout=0.5),
    )
    async with asyncio.timeout(60):
        with pytest.raises(StartTimeoutError, match="HTTP 503") as info:
            await client.start()
    assert sim.base_url in str(info.value)
    assert sim.config.client_secret not in str(info.value)
