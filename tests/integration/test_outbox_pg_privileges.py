"""The PostgreSQL privileges docs/running-for-real.md gives the bridge are enough, and no more is needed:

* a migrating role: ``CONNECT`` on the database and a schema it owns (or ``CREATE`` on it);
* a service role on a pre-migrated schema: ``CONNECT``, ``USAGE`` on the schema, and ``SELECT, INSERT, UPDATE,
  DELETE`` on its tables (granted once by default privileges, so tables of later migrations are covered);
* a service role without ``CREATE`` on a schema that is not migrated yet fails with one line naming the
  privilege.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from gcbridge.outbox import OutboxItem
from gcbridge.outbox.postgres import OutboxConnectError, PostgresOutbox

from .pg_fixtures import _admin, pg_database, with_database

__all__ = ["pg_database"]  # a fixture: imported so that pytest finds it

PASSWORD = "pw-9c1e-not-a-secret"


@dataclass
class Roles:
    migrator: str  # URL of the role that owns the schema and migrates it
    service: str  # URL of the role the bridge runs as
    bare: str  # URL of the service role on a schema nobody migrated


def role_url(database_url: str, role: str, schema: str) -> str:
    parts = urlsplit(database_url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    base = f"postgresql://{role}:{PASSWORD}@{host}/{parts.path.lstrip('/')}"
    return with_database(base, parts.path.lstrip("/"), search_path=schema)


@pytest.fixture
async def roles(pg_database: str) -> AsyncIterator[Roles]:
    tag = uuid.uuid4().hex[:10]
    migrator, service, schema, empty = f"gcb_mig_{tag}", f"gcb_svc_{tag}", f"gcb_{tag}", f"gcb_empty_{tag}"
    database = urlsplit(pg_database).path.lstrip("/")
    # as in docs/running-for-real.md, "PostgreSQL privileges"
    await _admin(
        pg_database,
        f"""
        CREATE ROLE {migrator} LOGIN PASSWORD '{PASSWORD}';
        CREATE ROLE {service} LOGIN PASSWORD '{PASSWORD}';
        GRANT CONNECT ON DATABASE "{database}" TO {migrator}, {service};
        CREATE SCHEMA {schema} AUTHORIZATION {migrator};
        GRANT USAGE ON SCHEMA {schema} TO {service};
        ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA {schema}
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {service};
        ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA {schema}
            GRANT USAGE, SELECT ON SEQUENCES TO {service};
        CREATE SCHEMA {empty};
        GRANT USAGE ON SCHEMA {empty} TO {service};
        """,
    )
    try:
        yield Roles(
            migrator=role_url(pg_database, migrator, schema),
            service=role_url(pg_database, service, schema),
            bare=role_url(pg_database, service, empty),
        )
    finally:
        await _admin(
            pg_database,
            f"DROP SCHEMA {schema} CASCADE; DROP SCHEMA {empty} CASCADE; "
            f"DROP OWNED BY {migrator}, {service}; DROP ROLE {migrator}; DROP ROLE {service}",
        )


async def test_the_documented_privileges_run_the_bridge_on_a_pre_migrated_schema(roles: Roles) -> None:
    migrating = await PostgresOutbox.open(roles.migrator)
    assert migrating.migrations_applied  # the owner migrated
    await migrating.close()

    store = await PostgresOutbox.open(roles.service, lease_ttl=30.0)
    try:
        assert store.migrations_applied == []
        assert await store.put_many([OutboxItem("e1", "k", "t", b"{}", 1.0)]) == 1
        rows = await store.claim(10, now=5.0)
        assert [r.dedup_key for r in rows] == ["e1"]
        assert await store.ack([rows[0].id], now=6.0) == 1
        assert await store.expire_delivered(now=10.0**9) == 1
        assert (await store.stats(now=7.0)).delivered == 0
    finally:
        await store.close()


async def test_a_role_that_may_not_create_tables_cannot_migrate_and_says_so(roles: Roles) -> None:
    with pytest.raises(OutboxConnectError) as failure:
        await PostgresOutbox.open(roles.bare)
    message = str(failure.value)
    assert "permission denied" in message
    assert "\n" not in message
    assert PASSWORD not in message
