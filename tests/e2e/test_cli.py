"""The command line as a user runs it: bad configs, the example, the outbox commands and the demo."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from gcbridge.bridge.admin import AdminServer
from gcbridge.bridge.metrics import BridgeMetrics
from gcbridge.outbox.base import OutboxItem
from gcbridge.outbox.sqlite import SqliteOutbox
from gcbridge.sim.processes import gcbridge_argv
from tests.ports import refused_port

from .conftest import run_gcbridge

REPO = Path(__file__).resolve().parents[2]


def gcbridge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GCBRIDGE_")}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gcbridge", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {}), "COLUMNS": "120"},
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = gcbridge("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "check", "status", "outbox", "config", "sim", "backfill"):
        assert f" {command} " in result.stdout


def test_bad_config_names_the_key_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[genesys]\nregion = "eu-west-9"\nclient_id = "x"\nclient_secret = "BADCFG-SECRET-1"\n'
        'topics = ["v2.users.u1.presence"]\n'
        '[servicenow]\ninstance_url = "https://acme.service-now.com"\n'
        '[servicenow.auth]\nkind = "basic"\nusername = "u"\n'
        "[admin]\nport = 99999\n"
    )
    result = gcbridge("run", "--config", str(bad))
    assert result.returncode == 2
    assert "genesys.region: unknown region 'eu-west-9'; valid: us_east_1" in result.stderr
    assert (
        "servicenow.auth.password: missing; set GCBRIDGE_SERVICENOW__AUTH__PASSWORD or give password_file"
    ) in result.stderr
    assert "admin.port: Input should be less than or equal to 65535" in result.stderr
    assert "BADCFG-SECRET-1" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = gcbridge("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_config_example_is_valid_once_secrets_are_given(tmp_path: Path) -> None:
    example = gcbridge("config", "example")
    assert example.returncode == 0
    path = tmp_path / "gcbridge.toml"
    path.write_text(example.stdout)
    env = {
        "GCBRIDGE_GENESYS__CLIENT_SECRET": "EXAMPLE-S1",
        "GCBRIDGE_SERVICENOW__AUTH__CLIENT_SECRET": "EXAMPLE-S2",
    }
    shown = gcbridge("config", "validate", "--config", str(path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert '"region": "eu_west_1"' in shown.stdout
    assert "EXAMPLE-S1" not in shown.stdout
    assert "EXAMPLE-S2" not in shown.stdout


async def test_outbox_list_inspect_replay_purge(tmp_path: Path) -> None:
    config = outbox_config(tmp_path)
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    await store.put_many(
        [
            OutboxItem(
                dedup_key=f"k{i}",
                order_key=f"o{i}",
                topic="v2.users.u1.presence",
                payload=b'{"topicName":"v2.users.u1.presence","eventBody":{}}',
                received_at=time.time(),
            )
            for i in range(3)
        ]
    )
    rows = await store.claim(3, time.time())
    for row in rows:
        await store.dead_letter(row.id, f"HTTP 400: Invalid table row{row.id}", time.time())
    await store.close()

    listed = gcbridge("outbox", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "Invalid table row1" in listed.stdout
    assert "dead 3" in listed.stdout
    inspected = gcbridge("outbox", "inspect", str(rows[0].id), "--config", str(config))
    assert inspected.returncode == 0, inspected.stderr
    # readable: one field a line, indented, the payload parsed and nested
    assert '\n  "state": "dead",\n' in inspected.stdout
    assert '\n    "topicName": "v2.users.u1.presence",\n' in inspected.stdout
    assert orjson.loads(inspected.stdout)["state"] == "dead"
    replayed = gcbridge("outbox", "replay", str(rows[0].id), "--config", str(config))
    assert "replayed 1 rows" in replayed.stdout
    purged = gcbridge("outbox", "purge", "--all", "--yes", "--config", str(config))
    assert "purged 2 rows" in purged.stdout
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    stats = await store.stats(time.time())
    await store.close()
    assert (stats.pending, stats.dead) == (1, 0)


def outbox_config(tmp_path: Path) -> Path:
    (tmp_path / "s").write_text("x")
    config = tmp_path / "gcbridge.toml"
    config.write_text(
        '[genesys]\nbase_url = "http://127.0.0.1:9"\nclient_id = "x"\nclient_secret_file = "s"\n'
        'topics = ["v2.users.u1.presence"]\n'
        '[servicenow]\ninstance_url = "http://127.0.0.1:9"\n'
        '[servicenow.auth]\nkind = "basic"\nusername = "u"\npassword_file = "s"\n'
        '[outbox]\npath = "outbox.db"\n'
    )
    return config


async def dead_outbox(path: Path, rows: int) -> list[int]:
    """An outbox file holding ``rows`` dead letters; returns their ids."""
    store = await SqliteOutbox.open(path)
    item = b'{"topicName":"v2.users.u1.presence","eventBody":{}}'
    await store.put_many(
        [OutboxItem(f"k{i}", f"o{i}", "v2.users.u1.presence", item, time.time()) for i in range(rows)]
    )
    claimed = await store.claim(rows, time.time())
    for row in claimed:
        await store.dead_letter(row.id, "HTTP 400: Invalid table x", time.time())
    await store.close()
    return [row.id for row in claimed]


async def test_outbox_commands_explain_what_they_cannot_do(tmp_path: Path) -> None:
    config = outbox_config(tmp_path)
    missing = gcbridge("outbox", "list", "--config", str(config))
    assert (missing.returncode, missing.stderr.strip()) == (1, f"no outbox at {tmp_path / 'outbox.db'}")

    ids = await dead_outbox(tmp_path / "outbox.db", 2)
    neither = gcbridge("outbox", "replay", "--config", str(config))
    assert neither.returncode == 2
    assert "give row ids or --all" in neither.stderr
    both = gcbridge("outbox", "purge", str(ids[0]), "--all", "--yes", "--config", str(config))
    assert both.returncode == 2

    typo = gcbridge("outbox", "replay", str(ids[0]), "999", "--config", str(config))
    assert typo.returncode == 1
    assert "replayed 1 rows" in typo.stdout
    assert "1 of the given ids are not dead letters" in typo.stderr
    unknown = gcbridge("outbox", "inspect", "999", "--config", str(config))
    assert unknown.returncode == 1
    assert "no row 999" in unknown.stderr

    declined = gcbridge("outbox", "purge", "--all", "--config", str(config), stdin="n\n")
    assert declined.returncode == 1
    store = await SqliteOutbox.open(tmp_path / "outbox.db")
    try:
        stats = await store.stats(time.time())
        assert (stats.pending, stats.dead) == (1, 1)  # nothing purged without the confirmation
        # While another process holds the outbox, the commands never write under its feet: they ask the
        # service's admin endpoint (see test_service_e2e), and say so when it does not answer or is off.
        text = config.read_text()
        with refused_port() as closed_port:
            config.write_text(text + f"[admin]\nport = {closed_port}\n")
            silent = gcbridge("outbox", "list", "--config", str(config))
        config.write_text(text + "[admin]\nenabled = false\n")
        off = gcbridge("outbox", "replay", "--all", "--config", str(config))
    finally:
        await store.close()
    assert silent.returncode == 1
    assert (
        "the outbox is in use by a running service, and its admin endpoint at "
        f"http://127.0.0.1:{closed_port} did not answer"
    ) in " ".join(silent.stderr.split())
    assert off.returncode == 1
    assert "whose admin endpoint is off ([admin] enabled = false): stop the service first" in " ".join(
        off.stderr.split()
    )


class _Source:
    def __init__(self, doc: dict[str, object]) -> None:
        self.doc = doc

    async def status(self) -> dict[str, object]:
        return self.doc

    def is_alive(self) -> bool:
        return True


async def test_status_exits_1_when_the_service_is_not_ready_or_not_there(tmp_path: Path) -> None:
    doc: dict[str, object] = {
        "state": "running",
        "readiness": {"ready": False, "reasons": ["ServiceNow is not reachable"]},
        "events": {"received": 7},
        "outbox": {"pending": 3, "oldest_pending_age": 12.0},
        "backfill": {"jobs": {"pending": 1, "running": 1, "done": 4, "partial": 2, "failed": 0}},
    }
    server = AdminServer(_Source(doc), BridgeMetrics(), host="127.0.0.1", port=0)
    await server.start()
    try:
        code, out, _ = await run_gcbridge("status", "--url", server.url)
        assert code == 1
        assert "ready False" in out
        assert "not ready: ServiceNow is not reachable" in out
        assert "events in 7" in out
        assert "outbox pending 3" in out
        assert "back-fill jobs waiting 2   done 4   partial 2   failed 0" in out
        code, out, _ = await run_gcbridge("status", "--url", server.url, "--json")
        assert code == 0
        assert orjson.loads(out) == doc
    finally:
        await server.stop()
    with refused_port() as port:
        code, _, err = await run_gcbridge("status", "--url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert f"cannot reach the service at http://127.0.0.1:{port}" in err


@pytest.mark.slow
def test_demo_runs_non_interactively_and_delivers(tmp_path: Path) -> None:
    result = gcbridge(
        "demo", "--duration", "8", "--rate", "30", "--keep", str(tmp_path / "demo"), timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "gcbridge demo summary" in out
    delivered = next(line for line in out.splitlines() if "events delivered to ServiceNow" in line)
    assert int(delivered.split()[-2 if delivered.split()[-1] == "│" else -1]) > 0
    assert "OK: events delivered, none lost, nothing pending, no dead letters" in out
    lost = next(line for line in out.splitlines() if "events lost outside any gap" in line)
    assert lost.split()[-2 if lost.split()[-1] == "│" else -1] == "0"
    assert (tmp_path / "demo" / "outbox.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_demo_stops_early_on_a_signal_even_when_started_with_sigint_ignored(
    tmp_path: Path, stop_with: signal.Signals
) -> None:
    """``gcbridge demo &`` from a script starts with SIGINT ignored; Ctrl-C (or SIGTERM) still ends the run
    early with its summary, and exit code 0 once events were delivered."""
    proc = await asyncio.create_subprocess_exec(
        *gcbridge_argv("demo", "--duration", "3600", "--no-faults", "--rate", "30", ignore_sigint=True),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while True:  # until a progress line says events were written to ServiceNow
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            assert line, "the demo ended before writing anything:\n" + "".join(seen)
            seen.append(line)
            written = re.search(r"\bwritten (\d+)", line)
            if written and int(written.group(1)) > 0:
                break
        proc.send_signal(stop_with)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = "".join(seen) + out.decode(errors="replace")
    assert proc.returncode == 0, output[-3000:] + err.decode(errors="replace")[-3000:]
    assert "gcbridge demo summary" in output
    assert "OK: events delivered, none lost, nothing pending, no dead letters" in output
