"""``gcbridge run`` and ``gcbridge check`` with a Genesys address where nothing listens: each says so in one
line naming the URL, without a traceback, and exits non-zero (``run`` within the configured start_timeout)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from .conftest import run_gcbridge


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "gcbridge.toml"
    path.write_text(f"""
[genesys]
base_url = "http://127.0.0.1:{port}"
client_id = "wrong-address-client"
client_secret = "WRONGADDR-SECRET-1"
topics = ["v2.users.a9e70001-0000-4000-8000-000000000001.presence"]
[genesys.client]
start_timeout = 1.0

[servicenow]
instance_url = "http://127.0.0.1:{port}"
[servicenow.auth]
kind = "basic"
username = "u"
password = "WRONGADDR-PASSWORD-2"

[outbox]
path = "{tmp_path / "outbox.db"}"

[admin]
port = 0
""")
    return path


async def test_run_gives_up_within_start_timeout_in_one_line(tmp_path: Path, closed_port: int) -> None:
    config = write_config(tmp_path, closed_port)
    code, out, err = await run_gcbridge("run", "--config", str(config), within=120)
    assert code == 1, err[-3000:]
    assert "Traceback" not in out + err
    assert "WRONGADDR-SECRET-1" not in out + err
    failures = [
        line for line in (orjson.loads(x) for x in err.splitlines()) if line["event"] == "start-up failed"
    ]
    assert len(failures) == 1, err[-3000:]
    error = failures[0]["error"]
    assert error.startswith(f"could not start: no token from http://127.0.0.1:{closed_port}/oauth/token")
    assert "within 1 s (ClientOptions.start_timeout)" in error
    assert "ClientConnectorError" in error
    assert failures[0]["error_type"] == "StartTimeoutError"


async def test_check_names_the_unreachable_token_url_in_one_line(tmp_path: Path, closed_port: int) -> None:
    config = write_config(tmp_path, closed_port)
    code, out, err = await run_gcbridge("check", "--config", str(config), "--skip-servicenow", within=120)
    assert code == 1
    assert "Traceback" not in out + err
    token_lines = [line for line in out.splitlines() if "genesys token" in line]
    assert len(token_lines) == 1, out
    line = token_lines[0]
    assert line.startswith("fail")
    assert f"no token from http://127.0.0.1:{closed_port}/oauth/token: ClientConnectorError" in line
    assert "Check base_url or region" in line
