"""Versioned schema migrations for the PostgreSQL outbox, applied when a store opens.

Migrations are the ordered ``pg_migrations/NNNN_*.sql`` files shipped in this package. The table
``schema_version`` records which ones a database has; :func:`migrate` applies the missing ones in order, each
in its own transaction together with its ``schema_version`` row, so a failed migration leaves the previous
version intact. Several processes starting at once are serialised by a session advisory lock: the first
applies, the others then find nothing to do.

A database already at the latest version needs no privilege beyond reading ``schema_version``: an operator
can run the migrations once with a privileged role and give the service a role without ``CREATE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["MIGRATION_LOCK", "Migration", "SchemaTooNewError", "migrate", "migrations"]

MIGRATION_LOCK = 0x6763_6272_6964_6765  # "gcbridge" in ASCII: the advisory lock id that serialises migrations

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer gcbridge than this one; running against it could corrupt it."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The shipped migrations in version order; versions are 1, 2, 3... without gaps."""
    found: list[Migration] = []
    for entry in resources.files("gcbridge.outbox").joinpath("pg_migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"outbox migrations are not numbered 1..n: {[m.name for m in found]}")
    return found


async def migrate(conn: Any) -> list[int]:
    """Bring the database behind ``conn`` (an asyncpg connection) to the latest schema.

    Returns the versions applied now (empty when the schema was current). Raises
    :class:`SchemaTooNewError` when the database is ahead of this code.
    """
    wanted = migrations()
    current = await _current_version(conn)
    if current == len(wanted):
        return []  # the common case needs no lock and no CREATE privilege
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await _current_version(conn)  # again: another starter may have migrated while we waited
        if current > len(wanted):
            raise SchemaTooNewError(
                f"the outbox schema is at version {current} but this gcbridge knows only {len(wanted)}; "
                "upgrade gcbridge"
            )
        applied: list[int] = []
        for migration in wanted[current:]:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_version(version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def _current_version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(version)
