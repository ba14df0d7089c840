"""A real PostgreSQL for the outbox tests: a fresh database per test run, a fresh schema per test.

The server is the one at ``GCBRIDGE_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
a role allowed to create databases); ``scripts/test-prereqs.sh`` installs and starts one where none runs.
Without a server these tests FAIL with a message saying so: a skipped store test would hide a broken store.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

PG_DSN_ENV = "GCBRIDGE_TEST_PG_DSN"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_dsn() -> str:
    dsn = os.environ.get(PG_DSN_ENV, DEFAULT_ADMIN_DSN)
    if urlsplit(dsn).hostname != "127.0.0.1":
        pytest.fail(
            f"{PG_DSN_ENV} must point at 127.0.0.1 (tests talk to nothing else): {dsn!r}", pytrace=False
        )
    return dsn


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
def pg_database() -> Iterator[str]:
    """The URL of a database created for this test run and dropped after it."""
    dsn = admin_dsn()
    name = f"gcbridge_test_{uuid.uuid4().hex[:12]}"
    try:
        _admin_blocking(dsn, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is needed for the outbox store tests and is not usable at {dsn} "
            f"({type(exc).__name__}: {exc}). Run scripts/test-prereqs.sh, or set {PG_DSN_ENV} to a server on "
            "127.0.0.1 where this role may CREATE DATABASE.",
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
