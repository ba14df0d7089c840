"""A real PostgreSQL for the outbox tests: a fresh database per test run, a fresh schema per test.

The server is the one at ``GCBRIDGE_TEST_PG_DSN`` when that is set (a role allowed to create databases on
127.0.0.1). Otherwise the one on 127.0.0.1:5432 when it answers, else a throwaway cluster started for this run
(``tests/pg_cluster.py``: Debian's ``initdb``/``pg_ctl`` in a temporary directory, on a free port) and stopped
after it; ``GCBRIDGE_TEST_PG_THROWAWAY=1`` takes that path even where a server answers.
``scripts/test-prereqs.sh`` installs Debian's PostgreSQL where it is missing. Without any server these tests
FAIL with a message saying what to run: a skipped store test would hide a broken store.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.pg_cluster import ClusterUnavailable, ThrowawayCluster

PG_DSN_ENV = "GCBRIDGE_TEST_PG_DSN"
THROWAWAY_ENV = "GCBRIDGE_TEST_PG_THROWAWAY"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
NO_SERVER_ADVICE = (
    "run scripts/test-prereqs.sh (it installs Debian's PostgreSQL; the tests then start a throwaway cluster "
    f"of their own), or set {PG_DSN_ENV} to a server on 127.0.0.1 where this role may CREATE DATABASE"
)


def admin_dsn() -> str:
    dsn = os.environ.get(PG_DSN_ENV, DEFAULT_ADMIN_DSN)
    if urlsplit(dsn).hostname != "127.0.0.1":
        pytest.fail(
            f"{PG_DSN_ENV} must point at 127.0.0.1 (tests talk to nothing else): {dsn!r}", pytrace=False
        )
    return dsn


def _listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def server_dsn(request: pytest.FixtureRequest) -> str:
    """The admin URL of the server this run uses: ``GCBRIDGE_TEST_PG_DSN``, the machine's on 5432, or a
    throwaway cluster started now and stopped when ``request``'s scope ends."""
    if os.environ.get(PG_DSN_ENV) or (
        not os.environ.get(THROWAWAY_ENV) and _listens(urlsplit(DEFAULT_ADMIN_DSN).port or 5432)
    ):
        return admin_dsn()
    try:
        cluster = ThrowawayCluster()
        cluster.start()
    except ClusterUnavailable as exc:
        pytest.fail(
            f"PostgreSQL is needed for these tests: none answers on 127.0.0.1:5432 and {exc}", pytrace=False
        )
    request.addfinalizer(cluster.destroy)
    return cluster.dsn


@pytest.fixture
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """A cluster of this test's own, which it may stop and start (the machine's server is never touched)."""
    try:
        cluster = ThrowawayCluster()
        cluster.start()
    except ClusterUnavailable as exc:
        pytest.fail(f"this test needs a PostgreSQL cluster of its own: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.destroy()


def with_database(dsn: str, database: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", query, ""))


def _admin_blocking(dsn: str, sql: str) -> None:
    """``_admin`` on a thread of its own: the session fixture may be first requested inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _admin(dsn, sql)).result()


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a database created for this test run and dropped after it (on a throwaway cluster where
    no server answers, see :func:`server_dsn`)."""
    dsn = server_dsn(request)
    name = f"gcbridge_test_{uuid.uuid4().hex[:12]}"
    try:
        _admin_blocking(dsn, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is needed for the outbox store tests and is not usable at {dsn} "
            f"({type(exc).__name__}: {exc}): {NO_SERVER_ADVICE}.",
            pytrace=False,
        )
    yield with_database(dsn, name)
    _admin_blocking(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def create_schema(database_url: str, schema: str) -> str:
    """Create ``schema`` in the run's database; returns a URL whose connections see only that schema."""
    await _admin(database_url, f'CREATE SCHEMA "{schema}"')
    return with_database(database_url, urlsplit(database_url).path.lstrip("/"), search_path=schema)


async def drop_schema(database_url: str, schema: str) -> None:
    await _admin(database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
