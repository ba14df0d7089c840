"""A deterministic fake of Genesys + the shell, driving :class:`ClientCore` for unit and Hypothesis tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gcbridge.core.backoff import Backoff, BackoffPolicy
from gcbridge.core.path import (
    ChannelChecked,
    ChannelCreated,
    ChannelCreateFailed,
    ChannelRef,
    CheckChannel,
    CloseSocket,
    CreateChannel,
    InvalidateToken,
    Notice,
    OpenSocket,
    PathTimings,
    PutSubscriptions,
    SocketClosed,
    SocketOpened,
    SocketOpenFailed,
    Subscribed,
    SubscribeFailed,
    SystemNotice,
)
from gcbridge.core.supervisor import ClientCore, GapFound, Output, Routed

TIMINGS = PathTimings(
    rotation_lead=5.0,
    rotation_lead_fraction=0.1,
    token_rotation_delay=1.0,
    drain_period=1.0,
    healthy_period=10.0,
    gap_margin=0.5,
    budget_retry=1.0,
)


@dataclass
class Sock:
    conn: int
    path: tuple[int, int]
    channel: str
    subscribed: bool = False


@dataclass
class Chan:
    id: str
    credential: int
    deadline: float
    alive: bool = True


@dataclass
class World:
    credentials: int = 1
    exclusive: bool = False
    budget: int = 4
    headroom: int = 1
    token_ttl: float = 60.0
    channel_ttl: float = 80.0
    now: float = 0.0
    core: ClientCore = field(init=False)
    ops: list[Routed] = field(default_factory=list)
    sockets: dict[int, Sock] = field(default_factory=dict)
    opening: dict[int, str] = field(default_factory=dict)
    channels: dict[str, Chan] = field(default_factory=dict)
    gaps: list[GapFound] = field(default_factory=list)
    token_gen: list[int] = field(default_factory=list)
    token_exp: list[float] = field(default_factory=list)
    served_log: list[tuple[float, int, bool | None]] = field(default_factory=list)
    _recorded: set[int] = field(default_factory=set)
    notices: list[tuple[int, Notice]] = field(default_factory=list)
    n_channels: int = 0
    token_requests: int = 0
    read_lag: float = 0.0  # how late the shell's loop runs: every SocketClosed carries it

    def __post_init__(self) -> None:
        rng = random.Random(1)
        self.core = ClientCore(
            credentials=self.credentials,
            channel_budget=self.budget,
            rotation_headroom=self.headroom,
            max_topics_per_shard=3,
            combine_topics=False,
            timings=TIMINGS,
            backoff_factory=lambda: Backoff(BackoffPolicy(initial=0.5, factor=2.0, cap=8.0), rng=rng),
        )
        self.token_gen = [1] * self.credentials
        self.token_exp = [self.token_ttl] * self.credentials

    # -- plumbing ------------------------------------------------------------------------------------------
    def take(self, outs: list[Output]) -> None:
        for o in outs:
            if isinstance(o, GapFound):
                self.gaps.append(o)
            elif isinstance(o, Routed):
                a = o.action
                if isinstance(a, OpenSocket):
                    assert a.channel.id not in self.opening.values(), "second socket on a channel"
                    assert all(s.channel != a.channel.id for s in self.sockets.values()), "second socket"
                    self.opening[a.conn] = a.channel.id
                if isinstance(a, InvalidateToken):
                    cred = o.path[1]
                    if a.generation == self.token_gen[cred]:
                        self.refresh_token(cred)
                if isinstance(a, CreateChannel | CheckChannel | OpenSocket | PutSubscriptions | CloseSocket):
                    self.ops.append(o)

    def feed(self, event: object) -> None:
        self.take(self.core.handle(event))  # type: ignore[arg-type]

    def refresh_token(self, cred: int) -> None:
        self.token_requests += 1
        self.token_gen[cred] += 1
        self.token_exp[cred] = self.now + self.token_ttl
        self.take(self.core.token_refreshed(self.now, cred, self.token_gen[cred]))

    def served(self, shard: int) -> bool:
        live = set(map(id, self.core.paths.values()))  # a retired path's closing socket serves nobody
        return any(
            s.subscribed and s.path[0] == shard and id(self.core._owner[s.conn][1]) in live
            for s in self.sockets.values()
        )

    def record(self) -> None:
        shards = set(self.core.planner.shards())
        for shard in self._recorded - shards:
            self.served_log.append((self.now, shard, None))  # emptied: a later shard of this number is new
        self._recorded = shards
        for shard in shards:
            self.served_log.append((self.now, shard, self.served(shard)))

    # -- completing operations -----------------------------------------------------------------------------
    def complete(self, index: int, ok: bool) -> None:
        if not self.ops:
            return
        routed = self.ops.pop(index % len(self.ops))
        a, cred = routed.action, routed.path[1]
        now = self.now
        if isinstance(a, CreateChannel):
            if not ok:
                self.feed(ChannelCreateFailed(now, a.conn, "500"))
                return
            if self.token_exp[cred] < a.min_token_expiry or self.token_exp[cred] <= now:
                self.refresh_token(cred)
            self.n_channels += 1
            cid = f"ch{self.n_channels}"
            deadline = min(now + self.channel_ttl, self.token_exp[cred])
            self.channels[cid] = Chan(cid, cred, deadline)
            ref = ChannelRef(
                cid, f"ws://x/{cid}", now, now + self.channel_ttl, self.token_gen[cred], self.token_exp[cred]
            )
            self.feed(ChannelCreated(now, a.conn, ref))
        elif isinstance(a, CheckChannel):
            ch = self.channels.get(a.channel_id)
            self.feed(ChannelChecked(now, a.conn, exists=bool(ch and ch.alive)))
        elif isinstance(a, OpenSocket):
            self.opening.pop(a.conn, None)
            ch = self.channels.get(a.channel.id)
            if not ok or ch is None or not ch.alive:
                self.feed(SocketOpenFailed(now, a.conn, "404", channel_gone=bool(ch is None or not ch.alive)))
                return
            owner = self.core.owner_of(a.conn)
            self.sockets[a.conn] = Sock(a.conn, owner if owner else routed.path, a.channel.id)
            self.feed(SocketOpened(now, a.conn))
        elif isinstance(a, PutSubscriptions):
            sock = self.sockets.get(a.conn)
            if not ok or sock is None:
                self.feed(SubscribeFailed(now, a.conn, a.version, "500"))
                return
            sock.subscribed = True
            if self.exclusive:
                for other in self.sockets.values():
                    if other is not sock and other.path == sock.path and other.subscribed:
                        other.subscribed = False
                        self.notices.append((other.conn, Notice.NO_LONGER_SUBSCRIBED))
            self.feed(Subscribed(now, a.conn, a.version))
        elif isinstance(a, CloseSocket):
            if self.opening.pop(a.conn, None) is not None:
                return
            if self.sockets.pop(a.conn, None) is not None:
                self.feed(SocketClosed(now, a.conn, "closed_by_client", now, read_lag=self.read_lag))

    def deliver_notice(self, index: int) -> None:
        if not self.notices:
            return
        conn, notice = self.notices.pop(index % len(self.notices))
        if conn in self.sockets:
            self.feed(SystemNotice(self.now, conn, notice))

    # -- faults ----------------------------------------------------------------------------------------------
    def drop(self, index: int, gone: bool = False) -> None:
        if not self.sockets:
            return
        conn = sorted(self.sockets)[index % len(self.sockets)]
        sock = self.sockets.pop(conn)
        if gone:
            self.channels[sock.channel].alive = False
        self.feed(SocketClosed(self.now, conn, "abrupt", self.now, channel_gone=gone, read_lag=self.read_lag))

    def notify(self, index: int, notice: Notice) -> None:
        if self.sockets:
            conn = sorted(self.sockets)[index % len(self.sockets)]
            self.feed(SystemNotice(self.now, conn, notice))

    def advance(self, dt: float) -> None:
        self.now += dt
        for cred in range(self.credentials):
            if self.now >= self.token_exp[cred] - self.token_ttl * 0.2:
                self.refresh_token(cred)
        for ch in self.channels.values():
            if ch.alive and ch.deadline <= self.now:
                ch.alive = False
                for conn, sock in list(self.sockets.items()):
                    if sock.channel == ch.id:
                        del self.sockets[conn]
                        self.feed(
                            SocketClosed(
                                self.now, conn, "expired", self.now, channel_gone=True, read_lag=self.read_lag
                            )
                        )
        for conn in sorted(self.sockets):  # every open socket here delivers: the shell's health evidence
            self.take(self.core.evidence(conn, self.now))
        wake = self.core.next_wakeup()
        if wake is not None and wake <= self.now:
            self.take(self.core.tick(self.now))

    def settle(self, rounds: int = 400) -> None:
        """Let every operation succeed and time pass until nothing is pending."""
        for _ in range(rounds):
            if self.ops:
                self.complete(0, True)
            elif self.notices:
                self.deliver_notice(0)
            else:
                return
            self.record()

    # -- invariants ------------------------------------------------------------------------------------------
    def check(self) -> None:
        for budget in self.core.budgets:
            assert budget.held <= budget.limit
            held = sum(
                c.holds_slot for p in self.core.all_paths() if p.budget is budget for _, c in p.conns()
            )
            assert held == budget.held, (held, budget.held)
        per_channel: dict[str, int] = {}
        for s in self.sockets.values():
            per_channel[s.channel] = per_channel.get(s.channel, 0) + 1
        for ch in self.opening.values():
            per_channel[ch] = per_channel.get(ch, 0) + 1
        assert all(n <= 1 for n in per_channel.values()), per_channel
        # Seen from the fake server, not from the core's own books: the channels each credential is using
        # (an open or opening socket not being closed, or a create in flight whose result the core still
        # awaits) never exceed its budget. A create abandoned in flight (its shard was removed) is not
        # counted: its channel is born unconnected, and Genesys evicts unconnected channels first.
        closing = {o.action.conn for o in self.ops if isinstance(o.action, CloseSocket)}
        awaited = {c.id for p in self.core.all_paths() for _, c in p.conns()}
        for cred, budget in enumerate(self.core.budgets):
            in_use = {
                ch
                for conn, ch in [*self.opening.items(), *((c, s.channel) for c, s in self.sockets.items())]
                if conn not in closing and self.channels[ch].credential == cred
            }
            creating = sum(
                isinstance(o.action, CreateChannel) and o.path[1] == cred and o.action.conn in awaited
                for o in self.ops
            )
            assert len(in_use) + creating <= budget.limit, (cred, in_use, creating, budget.limit)

    def uncovered(self) -> list[tuple[float, int]]:
        """Instants at which a shard that had been served was not, and no reported gap covers them."""
        missing = []
        ever: set[int] = set()
        for t, shard, served in self.served_log:
            if served is None:
                ever.discard(shard)
                continue
            if served:
                ever.add(shard)
                continue
            if shard not in ever:
                continue
            if not any(g.shard == shard and g.start <= t <= g.end for g in self.gaps):
                missing.append((t, shard))
        return missing
