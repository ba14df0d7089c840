"""Everything the simulator knows, in one place that handlers and controls share."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

from .config import SnSimConfig, table_schema
from .faults import FaultPlan
from .importsets import ImportSetRegistry
from .oauth import TokenIssuer
from .ratelimit import RateLimiter, RateLimitRule
from .store import RecordStore
from .transform import TransformMap


@dataclass(frozen=True, slots=True)
class AclDenial:
    table: str
    operation: str  # "read" | "write"
    user: str | None  # None: every user


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, key: Hashable) -> None:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        await lock.acquire()

    def release(self, key: Hashable) -> None:
        lock, users = self._locks[key]
        lock.release()
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class SimState:
    def __init__(self, config: SnSimConfig) -> None:
        self.config = config
        self.store = RecordStore()
        for name, prefix in config.tables.items():
            self.store.add_table(
                table_schema(name, prefix, config.table_columns.get(name), strict=config.strict_columns)
            )
        self.transform_maps: dict[str, list[TransformMap]] = {
            staging: list(maps) if isinstance(maps, list) else [maps]
            for staging, maps in config.transform_maps.items()
        }
        self.imports = ImportSetRegistry(config.max_import_rows)
        self.faults = FaultPlan()
        self.limiter = RateLimiter(config.rate_limit_commit_interval)
        if config.rate_limit_per_hour is not None:
            self.limiter.set_rules([RateLimitRule(config.rate_limit_per_hour)])
        self.issuer = TokenIssuer(
            users=config.users,
            clients=config.oauth_clients,
            client_credentials_enabled=config.client_credentials_enabled,
            access_token_ttl=config.access_token_ttl,
            refresh_token_ttl=config.refresh_token_ttl,
            client_users=config.oauth_client_users,
        )
        self.denials: set[AclDenial] = set()
        self.coalesce_locks = KeyedLocks()
        self.background: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background (asynchronous imports); :meth:`ServiceNowSim.stop` cancels it."""
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def now(self) -> float:
        return self.config.clock()

    def add_table(self, name: str, prefix: str | None = None) -> None:
        if not self.store.has_table(name):
            self.store.add_table(table_schema(name, prefix, strict=self.config.strict_columns))

    def denied(self, table: str, operation: str, user: str) -> bool:
        return (
            AclDenial(table, operation, None) in self.denials
            or AclDenial(table, operation, user) in self.denials
        )
