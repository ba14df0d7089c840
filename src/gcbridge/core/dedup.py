"""De-duplication of events that arrive on more than one channel (rotation overlap, redundant paths).

The key is a hash of the topic name and the canonical event body (keys sorted), so the same notification has
the same key whichever channel, path or process received it; downstream stores reuse it for idempotency.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from hashlib import blake2b
from typing import Any

import orjson

_SORTED = orjson.OPT_SORT_KEYS


def dedup_key(topic: str, body: Any) -> str:
    """A 32-hex-digit key for (topic, canonical body)."""
    h = blake2b(topic.encode(), digest_size=16)
    h.update(b"\x00")
    h.update(orjson.dumps(body, option=_SORTED))
    return h.hexdigest()


class DedupWindow:
    """Remembers keys for ``window`` seconds, and at most ``max_entries`` keys (oldest go first).

    ``first(key, now)`` (a str or int key) is True the first time a key is seen within the window and
    records it; repeats return False. ``now`` is any monotonic clock, passed in.
    """

    __slots__ = ("_seen", "evicted_early", "max_entries", "window")

    def __init__(self, window: float = 120.0, max_entries: int = 100_000) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError("window must be > 0 and max_entries >= 1")
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str | int, float] = OrderedDict()
        self.evicted_early = 0  # keys dropped by the size bound before their time was up

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def first(self, key: str | int, now: float) -> bool:
        seen = self._seen
        if key in seen:
            return False
        seen[key] = now
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
            self.evicted_early += 1
        elif not len(seen) & 63:
            self.expire(
                now
            )  # every 64 inserts: keys live at least ``window`` seconds, a little longer at most
        return True

    def expire(self, now: float) -> None:
        seen = self._seen
        horizon = now - self.window
        while seen:
            key, at = next(iter(seen.items()))
            if at > horizon:
                return
            del seen[key]


class _Copies:
    """What one canonical key has done: arrival times of the delivered copies still within the window
    (``times``, oldest first; ``base`` older ones forgotten), how many of them each source has matched, and
    when the key was last seen."""

    __slots__ = ("base", "last", "matched", "times")

    def __init__(self, last: float, times: list[float], matched: dict[int, int]) -> None:
        self.times = times
        self.base = 0
        self.matched = matched
        self.last = last


# The commonest histories as tuples (cheaper than a _Copies): (last, delivered_at, by) after one copy,
# (last, delivered_at, by, matched_by) after its copy from another source.
_One = tuple[float, float, int]
_Pair = tuple[float, float, int, int]


class CopyMatcher:
    """De-duplication across sockets that may each deliver the same events, without merging distinct events
    whose topic and body are identical (an ``IDLE`` status set twice, for example).

    Each source (a socket) delivers a key's events in order, so copies are matched in order: the *n*-th copy
    of a key from a source is the copy of the *n*-th delivered one, and a copy is new (``first`` is True) when
    its source has already matched every delivered copy. Three identical events that arrive on two sockets are
    therefore delivered three times, not once. Two refinements keep a source's count meaningful:

    * delivered copies older than ``window`` seconds are not matched (a copy is never that late), so a source
      that missed events (it was reconnecting) is not held back by them;
    * copies delivered before a source :meth:`joined` are not its copies (it was not there to receive them).

    What remains ambiguous: an event a new source receives *before* the other sources deliver it, while an
    identical one was delivered between the new source's join and its subscription going live, is taken for
    a copy of that one; the other sources still deliver it, so it is lost only if they all fail first.

    Memory is bounded: keys not seen for ``window`` seconds are forgotten whole, and at most ``max_entries``
    keys are kept (the oldest go first). ``now`` is any monotonic clock, passed in.
    """

    __slots__ = ("_joined", "_keys", "_since_expiry", "evicted_early", "max_entries", "window")

    def __init__(self, window: float = 120.0, max_entries: int = 100_000) -> None:
        if window <= 0 or max_entries < 1:
            raise ValueError("window must be > 0 and max_entries >= 1")
        self.window = window
        self.max_entries = max_entries
        self._keys: OrderedDict[str, _Copies | _One | _Pair] = OrderedDict()
        self._joined: dict[int, float] = {}
        self._since_expiry = 0
        self.evicted_early = 0  # keys dropped by the size bound before their time was up

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def joined(self, source: int, now: float) -> None:
        """``source`` starts receiving at ``now``: copies delivered before then are not its copies. The first
        call counts (the shell calls it when the handshake starts, and again when its reader starts)."""
        self._joined.setdefault(source, now)

    def left(self, source: int) -> None:
        """``source`` delivers no more (its counts stay with the keys until they expire)."""
        self._joined.pop(source, None)

    def first(self, key: str, source: int, now: float) -> bool:
        """True when this copy of ``key`` from ``source`` is a new event (deliver it), False for a copy."""
        keys = self._keys
        entry = keys.get(key)
        if entry is None:
            keys[key] = (now, now, source)
            if len(keys) > self.max_entries:
                keys.popitem(last=False)
                self.evicted_early += 1
            else:
                self._since_expiry += 1
                if self._since_expiry >= 64:  # keys live at least ``window`` seconds, a little longer at most
                    self._since_expiry = 0
                    self.expire(now)
            return True
        keys.move_to_end(key)
        horizon = now - self.window
        if type(entry) is tuple:
            if len(entry) == 3:
                at, by = entry[1], entry[2]
                if source != by and at >= horizon and self._joined.get(source, horizon) <= at:
                    keys[key] = (now, at, by, source)  # the copy from a second source: the usual case
                    return False
            entry = keys[key] = _expand(entry)
        assert type(entry) is _Copies
        entry.last = now
        times = entry.times
        if times and times[0] < horizon:  # no copy is this late: forget the delivered copies that old
            stale = bisect_left(times, horizon)
            del times[:stale]
            entry.base += stale
        matched = entry.matched
        done = matched.get(source)
        if done is None:  # this source's first copy of the key: skip what was delivered before it joined
            done = entry.base + bisect_left(times, self._joined.get(source, horizon))
        elif done < entry.base:
            done = entry.base
        end = entry.base + len(times)
        if done < end:
            matched[source] = done + 1
            return False
        times.append(now)
        matched[source] = end + 1
        return True

    def expire(self, now: float) -> None:
        keys = self._keys
        horizon = now - self.window
        while keys:
            entry = next(iter(keys.values()))
            if (entry[0] if type(entry) is tuple else entry.last) > horizon:  # type: ignore[union-attr]
                return
            keys.popitem(last=False)


def _expand(entry: _One | _Pair) -> _Copies:
    matched = {source: 1 for source in entry[2:]}
    return _Copies(entry[0], [entry[1]], matched)
