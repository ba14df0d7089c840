"""Which outbox store the service opens: SQLite at ``[outbox] path`` (the default) or PostgreSQL at
``[outbox] url``."""

from __future__ import annotations

from gcbridge.bridge.config import OutboxConfig
from gcbridge.outbox.postgres import OutboxConnectError, PostgresOutbox, redact_url
from gcbridge.outbox.sqlite import SqliteOutbox

__all__ = ["OpenOutbox", "describe_outbox", "open_outbox"]

OpenOutbox = SqliteOutbox | PostgresOutbox
"""The stores the service can run on (both have ``recovered_on_open``)."""


def describe_outbox(cfg: OutboxConfig) -> str:
    """Where the outbox lives, for logs: the path, or the URL without its password."""
    if cfg.url is None:
        return str(cfg.path)
    return redact_url(cfg.url.get_secret_value())


async def open_outbox(cfg: OutboxConfig, *, owner: str | None = None) -> OpenOutbox:
    """Open the configured store. A PostgreSQL failure is one line naming ``[outbox] url`` (no password).

    ``owner`` (PostgreSQL): the name its delivery claims are leased under. A stable one lets a restarted
    process take its own in-flight rows back at once instead of after the claim lease (5 minutes)."""
    retention = cfg.retention_days * 86400.0
    if cfg.url is None:
        cfg.path.parent.mkdir(parents=True, exist_ok=True)
        return await SqliteOutbox.open(cfg.path, synchronous=cfg.synchronous, retention=retention)
    try:
        return await PostgresOutbox.open(cfg.url.get_secret_value(), retention=retention, owner=owner)
    except OutboxConnectError as exc:
        raise OutboxConnectError(f"[outbox] url: {exc}") from None
