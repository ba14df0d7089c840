"""Where no PostgreSQL answers, the tests bring their own: ``scripts/test-prereqs.sh`` checks that a throwaway
cluster can start here (and leaves none behind), and :class:`tests.pg_cluster.ThrowawayCluster` keeps its data
and port across a restart and deletes everything at the end."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.pg_cluster import ThrowawayCluster

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_prereqs_without_a_server_checks_a_throwaway_cluster_and_stops_it() -> None:
    # GCBRIDGE_TEST_PG_THROWAWAY makes the script act as if nothing answered on 127.0.0.1:5432
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        ["bash", str(ROOT / "scripts" / "test-prereqs.sh"), "postgresql"],  # noqa: S607 - bash from PATH
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GCBRIDGE_TEST_PG_THROWAWAY": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(
        r"cluster in (\S+) started on 127\.0\.0\.1:(\d+), answered and was stopped", done.stdout
    )
    assert found, done.stdout
    assert "the tests start a throwaway cluster and stop it after the run" in done.stdout
    directory, port = found.groups()
    leftover = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout  # noqa: S607
    assert f"-p {port}" not in leftover, "the checked cluster is still running"
    assert not Path(directory).exists(), "the checked cluster's directory is left over"


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_a_throwaway_cluster_survives_a_restart_and_is_deleted_at_the_end() -> None:
    with ThrowawayCluster() as cluster:
        base, port = cluster.base, cluster.port
        asyncio.run(_execute(cluster.dsn, "CREATE TABLE t AS SELECT 1 AS x"))
        cluster.restart(mode="immediate")
        assert cluster.port == port
        assert asyncio.run(_count(cluster.dsn, "SELECT count(*) FROM t")) == 1
    assert not base.exists()
    with pytest.raises(OSError, match="Connect call failed"):
        asyncio.run(_count(f"postgresql://postgres@127.0.0.1:{port}/postgres", "SELECT 1"))
