"""Fencing of ingest writes by shard leases (several instances on one PostgreSQL outbox).

An instance writes a batch with a :class:`Fence`: the shards the batch's events belong to and the lease epoch
it holds for each. The store checks, in the same transaction as the insert and with the lease rows locked
against a concurrent takeover, that every one of them is still this owner's at that epoch and unexpired by
the database clock. If one is not, nothing is inserted and :class:`LeaseLost` names the shards lost, so the
caller drops those shards (their events are another instance's now) and writes the rest again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Fence", "LeaseLost"]


@dataclass(frozen=True, slots=True)
class Fence:
    """``owner`` must hold each shard of ``epochs`` at the given epoch when the batch commits."""

    owner: str
    epochs: Mapping[int, int]


class LeaseLost(Exception):
    """A fenced write found shards whose lease this instance no longer holds; nothing was written."""

    def __init__(self, owner: str, shards: frozenset[int]) -> None:
        self.owner = owner
        self.shards = shards
        super().__init__(f"instance {owner!r} no longer holds the lease of shard(s) {sorted(shards)}")
