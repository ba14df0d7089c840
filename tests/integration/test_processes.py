"""``gcbridge.sim.processes``: how tests and benchmarks start, watch and stop ``gcbridge`` child processes.

The service's side is played by small scripts run in its place (``python -c SCRIPT -m gcbridge run ...``:
the interpreter option comes first, so the script runs and the rest is its argv): each says what the
service would say in its log, then does what the test needs (ignore SIGTERM, exit early, wait)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from gcbridge.sim.processes import ProcessError, ServiceProcess, kill_children, simulator_process
from tests.integration.conftest import wait_for

ANNOUNCE = (
    "import json, os, signal, sys; "
    "print(json.dumps({'event': 'admin endpoint listening', 'url': os.environ['URL']}), flush=True); "
)


def service(tmp_path: Path, script: str, url: str = "http://127.0.0.1:1") -> ServiceProcess:
    config = tmp_path / "gcbridge.toml"
    config.touch()
    return ServiceProcess(config, tmp_path / "service.log", env={"URL": url}, python_options=["-c", script])


async def test_a_service_that_outlives_its_stop_limit_is_killed_and_the_error_shows_its_log(
    tmp_path: Path,
) -> None:
    stubborn = service(
        tmp_path,
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + ANNOUNCE + "signal.pause()",
    )
    await stubborn.start()
    await wait_for(lambda: stubborn.url is not None)  # SIGTERM is ignored from here on
    with pytest.raises(ProcessError, match=r"did not stop within 0\.5 s of SIGTERM") as failure:
        await stubborn.terminate(within=0.5)
    assert "admin endpoint listening" in str(failure.value)  # the tail of its log
    assert stubborn.proc is not None
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert not stubborn.running


async def test_a_restart_reads_the_admin_url_the_new_run_announces(tmp_path: Path) -> None:
    bridge = service(tmp_path, ANNOUNCE)
    for url in ("http://127.0.0.1:1111", "http://127.0.0.1:2222"):  # a restart that got another port
        bridge.env["URL"] = url
        await bridge.start()
        assert bridge.proc is not None
        assert await asyncio.wait_for(bridge.proc.wait(), 60) == 0  # it ends by itself
        assert bridge.url == url  # the second time not the first run's line, still in the same log
    assert bridge.log.read_text().count("admin endpoint listening") == 2


async def test_waiting_for_readiness_ends_when_the_service_exits(tmp_path: Path) -> None:
    failing = service(tmp_path, "import sys; print('config problem', flush=True); sys.exit(3)")
    await failing.start()
    with pytest.raises(ProcessError, match="exited with 3") as failure:
        await failing.wait_ready()
    assert "config problem" in str(failure.value)


async def test_kill_children_ends_whatever_a_failed_test_left_running(tmp_path: Path) -> None:
    left = service(tmp_path, ANNOUNCE + "signal.pause()")
    await left.start()
    await wait_for(lambda: left.url is not None)
    assert kill_children() >= 1
    assert left.proc is not None
    assert await asyncio.wait_for(left.proc.wait(), 60) == -signal.SIGKILL
    assert kill_children() == 0  # nothing is left to kill


async def test_a_simulator_that_ends_without_naming_its_url_is_an_error() -> None:
    with pytest.raises(ProcessError, match=r"ended before naming its URL \(exit 2\)"):
        async with simulator_process("genesys", "--time-scale", "0"):
            pass  # pragma: no cover - never entered


async def test_a_simulators_later_output_can_go_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "sim.out"
    async with simulator_process("servicenow", "--port", "0", stdout_to=out) as command:
        assert command.base_url.startswith("http://127.0.0.1:")
        assert "listening on" in command.first_line
    assert command.returncode == 0, command.stderr
    printed = out.read_text()
    assert printed.startswith(command.first_line)
    assert "Press Ctrl-C to stop." in printed  # the banner's last line, printed after the URL
