"""Shard ownership across instances, decided without I/O: which topic is in which shard, and what one
instance should do about the leases it sees.

Several ``gcbridge run`` processes share one PostgreSQL outbox. The configured topics are split into
``shards`` groups by a stable hash (:func:`shard_of`); each shard is owned by at most one instance at a time,
through a lease row in the database (owner, epoch, expiry set by the database clock). Every instance reads
the same rows and computes the same balanced target (:func:`targets`), then acts only on its own part
(:func:`plan`):

* a shard nobody holds (never owned, released, or its owner's lease expired) goes to the member with the
  fewest shards (ties by id), so that every shard is owned again while any instance lives;
* an instance holding more than its target offers the excess, one handoff per shard, to members below their
  target; the taker subscribes first and takes the lease once live (make-before-break), so a planned move
  leaves no gap;
* an offer nobody took within ``handoff_timeout`` is withdrawn (and made again next round if still useful);
* an instance that leaves (SIGTERM) is no member: its target is 0, so it offers everything.

Targets: ``n`` members share ``N`` shards as ``N // n`` each, plus one for ``N % n`` of them; the extra
ones go to the members already holding the most, so a balanced state never moves anything (no thrashing)
and a change of membership moves only the shards above the new targets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gcbridge.core.topics import expand_topic

__all__ = [
    "Lease",
    "LeasePlan",
    "ShardMap",
    "free_shard_assignment",
    "plan",
    "shard_of",
    "targets",
    "topics_digest",
]


def shard_of(topic: str, shards: int) -> int:
    """The shard of a configured topic: the first 8 bytes of its BLAKE2b digest, modulo ``shards``.

    Stable across processes, Python versions and restarts (unlike ``hash``), so every instance agrees.
    """
    if shards < 1:
        raise ValueError("shards must be >= 1")
    digest = hashlib.blake2b(topic.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def topics_digest(topics: Sequence[str]) -> str:
    """A short stable digest of a topic list (order and repeats do not matter), to tell whether instances
    sharing an outbox were configured with the same topics."""
    text = "\n".join(sorted(set(topics)))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


class ShardMap:
    """The configured topics by shard, and the shard of each topic an event can arrive on.

    A combined topic (``v2.users.X?presence&routingStatus``) is one configured topic, so its single topics
    (``v2.users.X.presence``...) are in its shard.
    """

    def __init__(self, topics: Sequence[str], shards: int) -> None:
        self.shards = shards
        self._by_shard: dict[int, list[str]] = {}
        self._event_shard: dict[str, int] = {}
        for topic in topics:
            shard = shard_of(topic, shards)
            self._by_shard.setdefault(shard, []).append(topic)
            self._event_shard[topic] = shard
            for single in expand_topic(topic):
                self._event_shard[single] = shard

    def topics(self, shard: int) -> list[str]:
        """The configured topics of ``shard`` (empty for a shard no topic hashes to)."""
        return list(self._by_shard.get(shard, ()))

    def single_topics(self, shard: int) -> list[str]:
        """The single topics of ``shard`` (combined topics expanded), as gaps name them."""
        return list(dict.fromkeys(t for raw in self.topics(shard) for t in expand_topic(raw)))

    def shard_for_event(self, topic: str) -> int:
        """The shard an event on ``topic`` belongs to (a topic outside the configuration hashes as itself)."""
        found = self._event_shard.get(topic)
        return found if found is not None else shard_of(topic, self.shards)


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease row as read from the database. Times are database-clock UNIX seconds."""

    shard: int
    owner: str | None = None
    epoch: int = 0
    expires_at: float = 0.0
    handoff_to: str | None = None
    handoff_at: float | None = None

    def held(self, now: float) -> bool:
        """Owned by someone whose lease still runs."""
        return self.owner is not None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class LeasePlan:
    """What one instance should do now. Each list is sorted by shard.

    * ``take``: shards nobody holds that are this instance's to take (subscribe, then take the lease);
    * ``accept``: shards offered to this instance by a live owner (subscribe, then take: make-before-break);
    * ``offer``: ``(shard, to)`` pairs: shards this instance owns above its target, to hand to ``to``;
    * ``withdraw``: shards this instance offered whose taker did not come in time (or is gone).
    """

    take: list[int] = field(default_factory=list)
    accept: list[int] = field(default_factory=list)
    offer: list[tuple[int, str]] = field(default_factory=list)
    withdraw: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.take or self.accept or self.offer or self.withdraw)


def _held_counts(members: Sequence[str], leases: Iterable[Lease], now: float) -> dict[str, int]:
    counts = dict.fromkeys(members, 0)
    for lease in leases:
        if lease.held(now) and lease.owner in counts:
            counts[lease.owner] += 1
    return counts


def targets(members: Sequence[str], counts: Mapping[str, int], shards: int) -> dict[str, int]:
    """Fair share per member: ``shards // n`` each, one more for the ``shards % n`` members that hold the
    most now (ties by id), so a balanced assignment is already on target."""
    ordered = sorted(members)
    if not ordered:
        return {}
    base, extra = divmod(shards, len(ordered))
    richest = sorted(ordered, key=lambda m: (-counts.get(m, 0), m))
    return {m: base + (1 if i < extra else 0) for i, m in enumerate(richest)}


def free_shard_assignment(
    free: Sequence[int], members: Sequence[str], counts: Mapping[str, int]
) -> dict[int, str]:
    """Who takes each free shard: in shard order, the member with the fewest shards (counting those just
    assigned; ties by id). Every instance computes the same answer from the same rows."""
    load = {m: counts.get(m, 0) for m in members}
    out: dict[int, str] = {}
    for shard in sorted(free):
        if not load:
            break
        taker = min(load, key=lambda m: (load[m], m))
        out[shard] = taker
        load[taker] += 1
    return out


def plan(
    me: str,
    members: Sequence[str],
    leases: Mapping[int, Lease],
    shards: int,
    now: float,
    *,
    handoff_timeout: float,
) -> LeasePlan:
    """What ``me`` should do, given the live ``members`` (instances with a fresh heartbeat that are not
    leaving; ``me`` is absent while leaving), the lease rows (missing shards count as never owned) and the
    database time ``now``. Pure: the same inputs give the same plan on every instance."""
    rows = [leases.get(s, Lease(s)) for s in range(shards)]
    member_set = set(members)
    counts = _held_counts(members, rows, now)
    free = [r.shard for r in rows if not r.held(now)]
    out = LeasePlan()
    if me in member_set:
        assignment = free_shard_assignment(free, members, counts)
        out.take.extend(s for s, m in assignment.items() if m == me)
        for taker in assignment.values():
            counts[taker] += 1  # free shards count toward their taker's load from now on
    goal = targets(members, counts, shards)
    # offers already on the way count on both sides
    incoming = dict.fromkeys(members, 0)
    for r in rows:
        if r.held(now) and r.handoff_to in incoming:
            incoming[r.handoff_to] += 1
    for r in rows:
        if r.held(now) and r.handoff_to == me and r.owner != me and me in member_set:
            out.accept.append(r.shard)
    mine = [r for r in rows if r.held(now) and r.owner == me]
    for r in mine:
        if r.handoff_to is None:
            continue
        stale = r.handoff_at is None or now - r.handoff_at > handoff_timeout
        if stale or r.handoff_to not in member_set:
            out.withdraw.append(r.shard)
    withdrawn = set(out.withdraw)
    pending_out = sum(1 for r in mine if r.handoff_to is not None and r.shard not in withdrawn)
    excess = len(mine) - goal.get(me, 0) - pending_out
    if excess > 0:
        deficit = {
            m: goal[m] - counts[m] - incoming[m] for m in sorted(members) if m != me and goal[m] > counts[m]
        }
        # the highest shards first, so that who gives what is predictable in logs and tests
        candidates = sorted((r.shard for r in mine if r.handoff_to is None), reverse=True)
        for shard in candidates:
            if excess <= 0:
                break
            receivers = [m for m, d in deficit.items() if d > 0]
            if not receivers:
                break
            to = min(receivers, key=lambda m: (counts[m] + incoming[m], m))
            out.offer.append((shard, to))
            deficit[to] -= 1
            incoming[to] += 1
            excess -= 1
    out.take.sort()
    out.accept.sort()
    out.offer.sort()
    out.withdraw.sort()
    return out
