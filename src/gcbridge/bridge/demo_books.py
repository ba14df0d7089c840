"""The demo's books, decided without I/O: where did each event the simulated org published go?

The bridge keys an event by its topic and body (:func:`gcbridge.core.dedup.dedup_key`): two notifications
with the same topic and the same body are one notification to it, stored once, whichever socket brought
them. The simulator stamps its bodies with the publishing millisecond, so when it publishes twice on one
topic within a millisecond (a high rate, or the catch-up burst after the event loop stalled, as under a
profiler on a slow machine) with the same random state, the second event is identical to the first and is
not a row of its own. Its content is in the outbox: it is counted as such, never as lost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gcbridge.core.dedup import dedup_key


class Published(Protocol):
    """What the books read of a simulator ledger record."""

    @property
    def seq(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def published_at(self) -> float: ...
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def deliveries(self) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class Books:
    stored: int = 0
    """Published to a channel of the bridge and in the outbox under its own sequence number."""
    identical: int = 0
    """Identical (topic and body) to an event in the outbox, so stored once as that event."""
    missed_in_gaps: int = 0
    """Not in the outbox, published inside a gap the bridge reported."""
    lost: int = 0
    """Not in the outbox, not identical to an event in it, and in no reported gap."""


def balance(
    published: Iterable[Published],
    stored_seqs: Collection[int],
    stored_keys: Collection[str],
    gaps: Iterable[tuple[float, float]],
) -> Books:
    """Sort every event published to a channel of the bridge (whether or not a socket was there to take it:
    an event published while the socket was down is exactly what a gap must cover) into stored, identical to
    a stored one, missed inside a reported gap (``(start, end)``, wall-clock), or lost."""
    windows = list(gaps)
    stored = identical = missed = lost = 0
    for record in published:
        if not record.deliveries:
            continue
        if record.seq in stored_seqs:
            stored += 1
        elif dedup_key(record.topic, record.body) in stored_keys:
            identical += 1
        elif any(start <= record.published_at <= end for start, end in windows):
            missed += 1
        else:
            lost += 1
    return Books(stored=stored, identical=identical, missed_in_gaps=missed, lost=lost)
