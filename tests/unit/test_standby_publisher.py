"""What a hot standby claims to have covered, from its client's paths (pure), and what it does with its own
gaps (ends its coverage there, says so at info, journals nothing)."""

from __future__ import annotations

import time
from typing import Any

from gcbridge.bridge.standby import StandbyPublisher, standby_cover
from gcbridge.genesys.client_types import PathStats
from gcbridge.genesys.events import Gap


def path(
    shard: int, state: str = "live", since: float | None = 100.0, frame: float | None = 150.0
) -> PathStats:
    return PathStats(f"{shard}/0", shard, 0, state, f"ch-{shard}", 3, since, frame, None)


def test_every_shard_live_covers_from_the_latest_start_to_the_earliest_last_frame() -> None:
    assert standby_cover([path(0, since=100.0, frame=150.0), path(1, since=120.0, frame=149.0)]) == (
        120.0,
        149.0,
    )


def test_a_shard_without_a_live_path_means_no_coverage() -> None:
    assert standby_cover([path(0), path(1, state="reconnecting")]) is None
    assert standby_cover([path(0), path(1, frame=None)]) is None
    assert standby_cover([]) is None


def test_a_second_path_of_a_shard_keeps_it_covered() -> None:
    paths = [path(0, state="reconnecting"), PathStats("0/1", 0, 1, "live", "ch-x", 3, 90.0, 151.0, None)]
    assert standby_cover(paths) == (90.0, 151.0)


class Store:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def publish(self, *args: Any) -> None:
        self.calls.append(("publish", *args))

    async def truncate(self, *args: Any) -> int:
        self.calls.append(("truncate", *args))
        return 1


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, event: str, **_: Any) -> None:
        self.lines.append(("info", event))

    def warning(self, event: str, **_: Any) -> None:
        self.lines.append(("warning", event))

    def debug(self, event: str, **_: Any) -> None:
        self.lines.append(("debug", event))


async def test_the_publisher_publishes_live_coverage_and_ends_it_at_its_own_gap() -> None:
    store, log = Store(), Log()
    stats = {"paths": [path(0), path(1)], "rejected_topics": ["v2.users.b.presence"]}
    publisher = StandbyPublisher(
        store,  # type: ignore[arg-type]
        ["v2.users.a.presence", "v2.users.b.presence"],
        lambda: stats,
        time.time,
        log,
    )
    assert await publisher.publish_once() == (100.0, 150.0)
    kind, since, seen, topics, _now = store.calls[0]
    assert (kind, since, seen, topics) == (
        "publish",
        100.0,
        150.0,
        ["v2.users.a.presence"],
    )  # not the rejected
    await publisher.own_gap(Gap(140.0, 160.0, ("v2.users.a.presence",), "socket_dropped"))
    assert store.calls[1][:3] == ("truncate", 140.0, 160.0)
    assert log.lines == [("info", "standby path missed an interval; the owning instances' paths cover it")]
