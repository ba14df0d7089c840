"""The whole client's decisions: topics over shards, shards over paths, budgets, gaps. Pure, like its parts.

:class:`ClientCore` owns the :class:`~gcbridge.core.topics.TopicPlanner`, one
:class:`~gcbridge.core.budget.ChannelBudget` per OAuth client (credential), one
:class:`~gcbridge.core.path.PathMachine` per (shard, credential) and one
:class:`~gcbridge.core.coverage.ShardCoverage` per shard. It routes each event to the path that owns the
connection, turns paths going down and up into gaps, and drops permission-rejected topics from the plan so
they are not requested again.

Coverage is by evidence (see :mod:`gcbridge.core.coverage`): the shell reports each live socket's last good
moment through :meth:`ClientCore.evidence`, and when one path of a shard fails the core asks the shell to
probe the shard's other live paths at once (:class:`~gcbridge.core.path.ProbeSocket`), so that a silent
sibling is found within ``pong_timeout`` and the gap both left is reported with its true start and end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gcbridge.core.backoff import Backoff
from gcbridge.core.budget import ChannelBudget
from gcbridge.core.coverage import ShardCoverage, Uncovered
from gcbridge.core.path import (
    Notify,
    PathAction,
    PathDown,
    PathEvent,
    PathMachine,
    PathState,
    PathTimings,
    PathUp,
    Phase,
    ProbeSocket,
    Shutdown,
    SocketClosed,
    Subscribed,
    Tick,
    TokenRefreshed,
    TopicsSet,
)
from gcbridge.core.topics import PlanChange, TopicPlanner, expand_topic

PathKey = tuple[int, int]  # (shard, credential)


@dataclass(frozen=True, slots=True)
class Routed:
    """An action for the shell, on behalf of one path."""

    path: PathKey
    action: PathAction


@dataclass(frozen=True, slots=True)
class GapFound:
    shard: int
    start: float
    end: float
    topics: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class TopicsRejected:
    rejected: tuple[tuple[str, str], ...]  # (topic, reason)


Output = Routed | GapFound | TopicsRejected


@dataclass(frozen=True, slots=True)
class PathSnapshot:
    """One path as the core sees it (times in the core's clock)."""

    shard: int
    credential: int
    state: str
    conn: int | None  # the current connection, whose socket the shell may know
    channel_id: str
    topics: int
    live_since: float | None
    deadline: float | None  # when its channel dies (expiry, or its token's expiry where bound to it)


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    """What the shell reports in ``stats()``: read from the core without reaching into its parts."""

    paths: tuple[PathSnapshot, ...]
    topics: int
    rejected: dict[str, str]
    reconnects_by_reason: dict[str, int]
    rotations_by_reason: dict[str, int]
    channels_created: int
    channels_held: int


@dataclass
class _Shard:
    coverage: ShardCoverage  # keyed by connection: a rotation's old and new sockets each prove their own
    serving: dict[PathKey, int] = field(default_factory=dict)  # each path's connection that serves it
    # the topics wanted since the oldest undecided moment: a gap found late names what was wanted then
    gap_topics: frozenset[str] = frozenset()


class ClientCore:
    def __init__(
        self,
        *,
        credentials: int = 1,
        channel_budget: int = 15,
        rotation_headroom: int = 3,
        max_topics_per_shard: int = 1000,
        combine_topics: bool = True,
        timings: PathTimings | None = None,
        backoff_factory: Callable[[], Backoff],
        token_rotation_stagger: float = 2.0,
    ) -> None:
        if credentials < 1:
            raise ValueError("at least one credential is needed")
        if not 1 <= rotation_headroom < channel_budget:
            raise ValueError("rotation_headroom must be >= 1 and below channel_budget")
        self.credentials = credentials
        self.timings = timings or PathTimings()
        self.planner = TopicPlanner(
            max_shards=channel_budget - rotation_headroom,
            max_topics_per_shard=max_topics_per_shard,
            combine=combine_topics,
        )
        self.budgets = [ChannelBudget(channel_budget) for _ in range(credentials)]
        self.paths: dict[PathKey, PathMachine] = {}
        self.shards: dict[int, _Shard] = {}
        self.rejected: dict[str, str] = {}
        self._backoff_factory = backoff_factory
        self._stagger = token_rotation_stagger
        self._owner: dict[int, tuple[PathKey, PathMachine]] = {}
        self.retired: list[PathMachine] = []  # closed paths whose sockets are still closing
        self._next_id = 0
        self.closed = False

    # -- topic changes -----------------------------------------------------------------------------------
    def subscribe(self, now: float, topics: Iterable[str]) -> list[Output]:
        """Plan new topics; on bad input raises InvalidTopicError / TopicCapacityError and changes nothing."""
        change = self.planner.add(topics)
        for t in change.added:
            self.rejected.pop(t, None)
        return self._apply(now, change)

    def unsubscribe(self, now: float, topics: Iterable[str]) -> list[Output]:
        return self._apply(now, self.planner.remove(topics))

    def version_of(self, shard: int) -> int:
        return max((p.version for (s, _), p in self.paths.items() if s == shard), default=0)

    def confirmed(self, shard: int, version: int) -> bool:
        """Whether any path of the shard has a live subscription at ``version`` or later."""
        for (s, _), p in self.paths.items():
            c = p.current
            if (
                s == shard
                and c is not None
                and c.acked_version >= version
                and p.state
                in (
                    PathState.LIVE,
                    PathState.ROTATING,
                )
            ):
                return True
        return False

    # -- events ------------------------------------------------------------------------------------------
    def handle(self, event: PathEvent) -> list[Output]:
        conn = getattr(event, "conn", None)
        if conn is None:
            if isinstance(event, Tick):
                return self.tick(event.now)
            raise TypeError(f"route {type(event).__name__} through its own method")
        owner = self._owner.get(conn)
        if owner is None:
            return []
        key, machine = owner
        if machine is not self.paths.get(key):
            out = self._run_retired(machine, event)
        else:
            out = self._run(key, event)
        if isinstance(event, SocketClosed):
            out += self._socket_gone(key[0], event)
        if all(c.id != conn for _, c in machine.conns()):
            self._forget_conns(machine)  # the event ended the connection (closed, failed, never opened)
        if isinstance(event, Subscribed) and event.rejected:
            out += self._reject(event.now, event.rejected)
        return out

    def _socket_gone(self, shard_no: int, event: SocketClosed) -> list[Output]:
        """A socket closed: whatever it covered ends at its last good moment (a failed current connection
        was reported down already; this ends the coverage of one rotated away, whatever its state)."""
        shard = self.shards.get(shard_no)
        if shard is None:
            return []
        # a socket we closed after draining it was read to its end: nothing of it was in flight
        abrupt = event.reason != "rotated"
        # what an abrupt end lost was sent from where the reads had got to, which a late loop puts earlier
        since = event.read_through if abrupt else event.last_frame_at
        ended = shard.coverage.down(event.conn, since, event.reason, abrupt=abrupt)
        return self._gaps(shard_no, shard, ended)

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        for key in list(self.paths):
            wake = self.paths[key].next_wakeup()
            if wake is not None and wake <= now:
                out += self._run(key, Tick(now))
        return out

    def token_refreshed(self, now: float, credential: int, generation: int) -> list[Output]:
        out: list[Output] = []
        keys = sorted(k for k in self.paths if k[1] == credential)
        for i, key in enumerate(keys):
            delay = self.timings.token_rotation_delay + i * self._stagger
            out += self._run(key, TokenRefreshed(now, generation, delay))
        return out

    def shutdown(self, now: float, drained_at: float | None = None) -> list[Output]:
        """Close every path. Gaps that the last evidence decides are reported first (feed fresh
        :meth:`evidence` for every open socket before): a sibling's outage that a silent socket seemed to
        cover is not lost because the client closed before the silence was found. ``drained_at``: the shell
        pinged every open socket then and read until each answered or its time ran out (a drain); what no
        path proved up to it is reported as a gap too (see :meth:`ShardCoverage.close`)."""
        self.closed = True
        out: list[Output] = []
        for number, shard in self.shards.items():
            out += self._gaps(number, shard, shard.coverage.close(drained_at))
        for key in list(self.paths):
            out += self._run(key, Shutdown(now))
        return out

    def next_wakeup(self) -> float | None:
        return min((w for p in self.paths.values() if (w := p.next_wakeup()) is not None), default=None)

    def evidence(self, conn: int, last_good: float) -> list[Output]:
        """The shell's report that socket ``conn`` delivered everything sent until ``last_good`` (its health
        monitor's ``last_good``). Call it regularly for every open socket (each health check does): it is
        what lets a shard's gaps be decided, and its bookkeeping be forgotten."""
        owner = self._owner.get(conn)
        if owner is None:
            return []
        shard = self.shards.get(owner[0][0])
        if shard is None:
            return []
        return self._gaps(owner[0][0], shard, shard.coverage.seen(conn, last_good))

    def compare_copies_until(self, open_sockets: int, now: float, *, opened: bool) -> float:
        """Until when events of a shard whose sockets just changed (one ``opened``, or one closed;
        ``open_sockets`` are open now) may also arrive on another socket, so that the receive path must
        compare them by their canonical key rather than take each frame as new. Ask on every socket open and
        close; keep the later of the answer and the current window.

        With several credentials every shard has several paths: always. With several sockets open (a
        rotation's overlap): until further notice. Back to one after a close: a little longer, as copies of
        the overlap's events may still be in flight on the survivor. A lone socket just opened: no need."""
        if self.credentials > 1 or open_sockets > 1:
            return float("inf")
        if opened or open_sockets == 0:
            return now
        return now + max(5.0, 2 * self.timings.drain_period)

    def snapshot(self) -> CoreSnapshot:
        """The state and counters of every path, for statistics."""
        paths = []
        for (shard, cred), p in sorted(self.paths.items()):
            cur = p.current
            ch = cur.channel if cur else None
            paths.append(
                PathSnapshot(
                    shard=shard,
                    credential=cred,
                    state=p.state.value,
                    conn=cur.id if cur else None,
                    channel_id=ch.id if ch else "",
                    topics=len(self.planner.topics(shard)),
                    live_since=cur.live_since if cur else None,
                    deadline=ch.deadline(self.timings.channel_dies_with_token) if ch else None,
                )
            )
        reconnects: dict[str, int] = {}
        rotations: dict[str, int] = {}
        for p in self.all_paths():
            for k, v in p.counters.reconnects.items():
                reconnects[k] = reconnects.get(k, 0) + v
            for k, v in p.counters.rotations.items():
                rotations[k] = rotations.get(k, 0) + v
        return CoreSnapshot(
            paths=tuple(paths),
            topics=len(self.planner),
            rejected=dict(self.rejected),
            reconnects_by_reason=reconnects,
            rotations_by_reason=rotations,
            channels_created=sum(p.counters.channels_created for p in self.all_paths()),
            channels_held=sum(b.held for b in self.budgets),
        )

    def owner_of(self, conn: int) -> PathKey | None:
        owner = self._owner.get(conn)
        return owner[0] if owner else None

    def all_paths(self) -> list[PathMachine]:
        return [*self.paths.values(), *self.retired]

    # -- internals ---------------------------------------------------------------------------------------
    def _new_path(self, key: PathKey) -> PathMachine:
        def new_id() -> int:
            self._next_id += 1
            self._owner[self._next_id] = (key, machine)
            return self._next_id

        machine: PathMachine = PathMachine(
            budget=self.budgets[key[1]],
            backoff=self._backoff_factory(),
            rotation_backoff=self._backoff_factory(),
            timings=self.timings,
            new_conn_id=new_id,
        )
        self.paths[key] = machine
        if key[0] not in self.shards:
            self.shards[key[0]] = _Shard(ShardCoverage(self.timings.gap_margin))
        return machine

    def _apply(self, now: float, change: PlanChange) -> list[Output]:
        out: list[Output] = []
        for shard, topics in change.changed.items():
            for cred in range(self.credentials):
                key = (shard, cred)
                if not topics:
                    if key in self.paths:
                        out += self._run(key, Shutdown(now))
                    continue
                if key not in self.paths:
                    self._new_path(key)
                wire = tuple(self.planner.wire_topics(shard))
                out += self._run(key, TopicsSet(now, wire))
            if not topics and shard in self.shards:
                state = self.shards.pop(shard)
                out += self._gaps(shard, state, state.coverage.end(now))
        return out

    def _gaps(self, shard: int, state: _Shard, found: list[Uncovered]) -> list[Output]:
        topics = state.gap_topics | self.planner.topics(shard)
        if state.coverage.live_paths:
            state.gap_topics = frozenset()  # decided up to a live path: what it missed is wanted now
        else:
            state.gap_topics = topics
        return [GapFound(shard, g.start, g.end, tuple(sorted(topics)), g.reason) for g in found]

    def _probe_siblings(self, key: PathKey) -> list[Output]:
        """One path of the shard failed: ask whether its live siblings still deliver (they may be silent)."""
        out: list[Output] = []
        for other, machine in self.paths.items():
            cur = machine.current
            live = cur is not None and cur.phase is Phase.LIVE and cur.socket_open
            if other[0] == key[0] and other != key and live and cur is not None:
                out.append(Routed(other, ProbeSocket(cur.id)))
        return out

    def _run(self, key: PathKey, event: PathEvent) -> list[Output]:
        machine = self.paths[key]
        out: list[Output] = []
        for action in machine.handle(event):
            shard = self.shards.get(key[0])
            if isinstance(action, PathDown) and shard is not None:
                shard.gap_topics |= self.planner.topics(key[0])
                if shard.serving.get(key) == action.conn:
                    del shard.serving[key]
                # the path's ``since`` is its gap's start; the coverage takes the last good moment itself
                last_good = action.since + self.timings.gap_margin
                ended = shard.coverage.down(action.conn, last_good, action.reason)
                out += self._gaps(key[0], shard, ended)
                out += self._probe_siblings(key)
            elif isinstance(action, PathUp) and shard is not None:
                before = shard.serving.get(key)
                shard.serving[key] = action.conn
                if before is not None and before != action.conn:
                    # rotated away: was it still delivering? a pong says so, silence says since when not
                    out += self._gaps(key[0], shard, shard.coverage.cap(before, action.at))
                    out.append(Routed(key, ProbeSocket(before)))
                out += self._gaps(key[0], shard, shard.coverage.up(action.conn, action.at))
            out.append(Routed(key, action))
        if machine.state is PathState.CLOSED and not self.closed:
            del self.paths[key]
            self._retire(machine)
        return out

    def _retire(self, machine: PathMachine) -> None:
        if machine.conns():
            if machine not in self.retired:
                self.retired.append(machine)
            return
        if machine in self.retired:
            self.retired.remove(machine)
        self._forget_conns(machine)  # it holds none: every entry of its goes

    def _forget_conns(self, machine: PathMachine) -> None:
        """Drop the owner entries of ``machine``'s connections that it no longer holds (closed, or never
        opened). A shard's path lives as long as its topics, and each reconnect or rotation gives it a new
        connection id: without this, a bridge running for months kept one entry per connection it ever
        made. A retired path's entries go when it does (:meth:`_retire`)."""
        held = {c.id for _, c in machine.conns()}
        for conn, (_, owner) in list(self._owner.items()):
            if owner is machine and conn not in held:
                del self._owner[conn]

    def _run_retired(self, machine: PathMachine, event: PathEvent) -> list[Output]:
        key = next(k for c, (k, m) in self._owner.items() if m is machine)
        out: list[Output] = [
            Routed(key, a) for a in machine.handle(event) if not isinstance(a, PathUp | PathDown)
        ]
        self._retire(machine)
        return out

    def _reject(self, now: float, rejected: tuple[tuple[str, str], ...]) -> list[Output]:
        gone: list[tuple[str, str]] = []
        for wire, reason in rejected:
            for topic in expand_topic(wire):
                if topic in self.planner:
                    self.rejected[topic] = reason
                    gone.append((topic, reason))
        if not gone:
            return []
        out: list[Output] = [TopicsRejected(tuple(gone))]
        out += self._apply(now, self.planner.remove(t for t, _ in gone))
        return out


__all__ = [
    "ClientCore",
    "CoreSnapshot",
    "GapFound",
    "Notify",
    "Output",
    "PathKey",
    "PathSnapshot",
    "Routed",
    "TopicsRejected",
]
