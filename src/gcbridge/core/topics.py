"""Topic names and their assignment to shards (one shard = the topics of one channel).

Pure planning, no I/O. The planner keeps an assignment *stable*: adding a topic never moves another one, so
a subscription change touches only the shard that gains or loses topics (one PUT on one channel). Topics that
share a prefix are sent as one combined topic (``v2.users.X?presence&routingStatus``, at most 200 characters),
which Genesys counts as one of the 1,000 topics a channel may hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gcbridge.core.errors import GenesysError, GenesysUsageError

MAX_TOPICS_PER_CHANNEL: Final = 1000
MAX_COMBINED_LENGTH: Final = 200

_SEGMENT = r"[A-Za-z0-9_\-:+@]+"
_TOPIC_RE: Final = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})+$")
_IMPLICIT_PREFIXES: Final = ("v2.system.", "channel.metadata")


class InvalidTopicError(GenesysUsageError):
    """A topic name that cannot be subscribed (malformed, or one of the implicit system topics)."""


class TopicCapacityError(GenesysError, RuntimeError):
    """More topics than the channel budget can hold (``max_shards`` x ``max_topics_per_shard``); nothing was
    changed. Also a :class:`RuntimeError`, as it was before :class:`GenesysError` covered it."""

    def __init__(self, overflow: tuple[str, ...], capacity: int) -> None:
        super().__init__(
            f"{len(overflow)} topic(s) do not fit: the channel budget holds at most {capacity} subscription "
            f"entries (first not placed: {overflow[0]!r}); raise ClientOptions.channel_budget"
        )
        self.overflow = overflow


def expand_topic(topic: str) -> tuple[str, ...]:
    """``prefix?a&b`` -> (``prefix.a``, ``prefix.b``); a plain topic expands to itself."""
    if "?" not in topic:
        return (topic,)
    prefix, _, leaves = topic.partition("?")
    return tuple(f"{prefix}.{leaf}" for leaf in leaves.split("&") if leaf)


def validate_topic(topic: str) -> str:
    """Return ``topic`` if it is a subscribable single topic name, else raise :class:`InvalidTopicError`."""
    if not isinstance(topic, str) or not topic:
        raise InvalidTopicError(f"topic must be a non-empty string, got {topic!r}")
    if topic.startswith(_IMPLICIT_PREFIXES):
        raise InvalidTopicError(
            f"{topic!r} is delivered implicitly on every channel and must not be subscribed"
        )
    if len(topic) > MAX_COMBINED_LENGTH:
        raise InvalidTopicError(f"topic is longer than {MAX_COMBINED_LENGTH} characters: {topic[:60]!r}...")
    if not _TOPIC_RE.match(topic):
        raise InvalidTopicError(f"malformed topic name {topic!r} (expected dot-separated segments)")
    return topic


def normalise_topics(topics: Iterable[str]) -> list[str]:
    """Expand combined topics, validate each name, and drop repeats (order kept)."""
    if isinstance(topics, str):
        raise InvalidTopicError("pass a list of topics, not a single string")
    out: dict[str, None] = {}
    for raw in topics:
        if not isinstance(raw, str):
            raise InvalidTopicError(f"topic must be a string, got {raw!r}")
        for topic in expand_topic(raw):
            out[validate_topic(topic)] = None
    return list(out)


def _split(topic: str) -> tuple[str, str]:
    prefix, _, leaf = topic.rpartition(".")
    return prefix, leaf


def combine_group(prefix: str, leaves: Iterable[str]) -> list[str]:
    """Pack the leaves of one prefix into as few combined topics (<= 200 characters) as possible."""
    ordered = sorted(set(leaves))
    if len(ordered) == 1:
        return [f"{prefix}.{ordered[0]}"]
    out: list[str] = []
    chunk: list[str] = []
    length = len(prefix) + 1
    for leaf in ordered:
        extra = len(leaf) + (1 if chunk else 0)
        if chunk and length + extra > MAX_COMBINED_LENGTH:
            out.append(_render(prefix, chunk))
            chunk, length = [], len(prefix) + 1
            extra = len(leaf)
        chunk.append(leaf)
        length += extra
    out.append(_render(prefix, chunk))
    return out


def _render(prefix: str, leaves: list[str]) -> str:
    return f"{prefix}.{leaves[0]}" if len(leaves) == 1 else f"{prefix}?{'&'.join(leaves)}"


@dataclass
class _Shard:
    groups: dict[str, set[str]] = field(default_factory=dict)
    entries: int = 0  # subscription entries (combined topics count once)

    def topics(self) -> frozenset[str]:
        return frozenset(f"{p}.{leaf}" for p, leaves in self.groups.items() for leaf in leaves)


@dataclass(frozen=True)
class PlanChange:
    """Shards whose topic set changed (shard index -> the full new set; an empty set means: close it)."""

    changed: dict[int, frozenset[str]]
    added: tuple[str, ...]
    removed: tuple[str, ...]


class TopicPlanner:
    """Assigns topics to at most ``max_shards`` shards of at most ``max_topics_per_shard`` entries each.

    A new topic goes to the shard that already holds its prefix (so it can join a combined topic), else to the
    lowest-numbered shard with room, else to a new shard. Removing a topic never moves the others.
    """

    def __init__(
        self, *, max_shards: int, max_topics_per_shard: int = MAX_TOPICS_PER_CHANNEL, combine: bool = True
    ) -> None:
        if max_shards < 1 or not 1 <= max_topics_per_shard <= MAX_TOPICS_PER_CHANNEL:
            raise ValueError("max_shards must be >= 1 and max_topics_per_shard in 1..1000")
        self.max_shards = max_shards
        self.max_topics_per_shard = max_topics_per_shard
        self.combine = combine
        self._shards: dict[int, _Shard] = {}
        self._where: dict[str, int] = {}

    # -- queries ---------------------------------------------------------------------------------------
    def __contains__(self, topic: object) -> bool:
        return topic in self._where

    def __len__(self) -> int:
        return len(self._where)

    def shard_of(self, topic: str) -> int | None:
        return self._where.get(topic)

    @property
    def shard_index(self) -> dict[str, int]:
        """Topic -> shard, live: the receive path looks every event's topic up in it. Read it, never write
        it (a plain dict, not a read-only view, because the compiled receive path takes a dict)."""
        return self._where

    def shards(self) -> dict[int, frozenset[str]]:
        return {i: s.topics() for i, s in sorted(self._shards.items())}

    def topics(self, shard: int) -> frozenset[str]:
        s = self._shards.get(shard)
        return s.topics() if s else frozenset()

    def wire_topics(self, shard: int) -> list[str]:
        """The subscription list to PUT on the shard's channel (combined where that saves entries)."""
        s = self._shards.get(shard)
        if s is None:
            return []
        out: list[str] = []
        for prefix in sorted(s.groups):
            out.extend(self._entries_of(prefix, s.groups[prefix]))
        return out

    def entries(self, shard: int) -> int:
        s = self._shards.get(shard)
        return s.entries if s else 0

    # -- changes ---------------------------------------------------------------------------------------
    def add(self, topics: Iterable[str]) -> PlanChange:
        """Place new topics. All or nothing: raises :class:`TopicCapacityError` and changes nothing if any
        topic does not fit."""
        new = [t for t in normalise_topics(topics) if t not in self._where]
        snapshot = {
            i: _Shard({p: set(v) for p, v in s.groups.items()}, s.entries) for i, s in self._shards.items()
        }
        where_before = dict(self._where)
        changed: set[int] = set()
        overflow: list[str] = []
        for topic in new:
            idx = self._place(topic)
            if idx is None:
                overflow.append(topic)
            else:
                changed.add(idx)
        if overflow:
            # restored in place: readers hold this dict (the client's frame intake looks topics up in it)
            self._shards = snapshot
            self._where.clear()
            self._where.update(where_before)
            raise TopicCapacityError(tuple(overflow), self.max_shards * self.max_topics_per_shard)
        return PlanChange({i: self.topics(i) for i in sorted(changed)}, tuple(new), ())

    def remove(self, topics: Iterable[str]) -> PlanChange:
        gone = [t for t in normalise_topics(topics) if t in self._where]
        changed: set[int] = set()
        for topic in gone:
            idx = self._where.pop(topic)
            shard = self._shards[idx]
            prefix, leaf = _split(topic)
            leaves = shard.groups[prefix]
            shard.entries -= self._count(prefix, leaves)
            leaves.discard(leaf)
            if leaves:
                shard.entries += self._count(prefix, leaves)
            else:
                del shard.groups[prefix]
            changed.add(idx)
        result = {i: self.topics(i) for i in sorted(changed)}
        for i in changed:
            if not self._shards[i].groups:
                del self._shards[i]
        return PlanChange(result, (), tuple(gone))

    # -- internals -------------------------------------------------------------------------------------
    def _entries_of(self, prefix: str, leaves: set[str]) -> list[str]:
        if self.combine:
            return combine_group(prefix, leaves)
        return [f"{prefix}.{leaf}" for leaf in sorted(leaves)]

    def _count(self, prefix: str, leaves: set[str]) -> int:
        if not leaves:
            return 0
        return len(combine_group(prefix, leaves)) if self.combine else len(leaves)

    def _cost(self, shard: _Shard, prefix: str, leaf: str) -> int:
        leaves = shard.groups.get(prefix, set())
        return self._count(prefix, leaves | {leaf}) - self._count(prefix, leaves)

    def _place(self, topic: str) -> int | None:
        prefix, leaf = _split(topic)
        order = [i for i, s in sorted(self._shards.items()) if prefix in s.groups]
        order += [i for i in sorted(self._shards) if i not in order]
        for idx in order:
            shard = self._shards[idx]
            cost = self._cost(shard, prefix, leaf)
            if shard.entries + cost <= self.max_topics_per_shard:
                self._put(idx, prefix, leaf, cost, topic)
                return idx
        free = next((i for i in range(self.max_shards) if i not in self._shards), None)
        if free is None:
            return None
        self._shards[free] = _Shard()
        self._put(free, prefix, leaf, self._cost(self._shards[free], prefix, leaf), topic)
        return free

    def _put(self, idx: int, prefix: str, leaf: str, cost: int, topic: str) -> None:
        shard = self._shards[idx]
        shard.groups.setdefault(prefix, set()).add(leaf)
        shard.entries += cost
        self._where[topic] = idx


def topic_matches(pattern: str, topic: str) -> bool:
    """``*`` matches one dot-separated segment, a final ``#`` matches the rest (``v2.users.*.presence``)."""
    return segments_match(pattern.split("."), topic.split("."))


def segments_match(p_parts: Sequence[str], t_parts: Sequence[str]) -> bool:
    """:func:`topic_matches` on topics already split at the dots (for callers that match one topic against
    many patterns)."""
    for i, part in enumerate(p_parts):
        if part == "#" and i == len(p_parts) - 1:
            return True
        if i >= len(t_parts) or (part != "*" and part != t_parts[i]):
            return False
    return len(p_parts) == len(t_parts)
