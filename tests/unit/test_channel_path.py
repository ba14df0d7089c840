"""Scenario tests of one path's lifecycle (the pure core), with the fake world of ``_path_world``."""

from __future__ import annotations

import pytest

from gcbridge.core.path import (
    SOCKET_CLOSING_GRACE_EXCEEDED,
    ChannelChecked,
    CheckChannel,
    CloseSocket,
    CreateChannel,
    IllegalTransition,
    Notice,
    Notify,
    OpenSocket,
    PathMachine,
    PathState,
    PutSubscriptions,
    SocketClosed,
    SystemNotice,
)
from gcbridge.core.supervisor import Routed

from ._path_world import World

TOPICS = ["v2.users.u1.presence", "v2.users.u2.presence"]


def live_world(**kw: object) -> World:
    w = World(**kw)  # type: ignore[arg-type]
    w.take(w.core.subscribe(0.0, TOPICS))
    w.settle()
    return w


def path(w: World) -> PathMachine:
    return w.core.paths[(0, 0)]


def test_first_connect_creates_connects_then_subscribes_without_gap() -> None:
    w = World()
    w.take(w.core.subscribe(0.0, TOPICS))
    kinds = []
    for _ in range(3):
        kinds.append(type(w.ops[0].action))
        w.complete(0, True)
    assert kinds == [CreateChannel, OpenSocket, PutSubscriptions]
    assert path(w).state is PathState.LIVE
    assert w.gaps == []


def test_socket_closing_rotation_is_make_before_break() -> None:
    w = live_world()
    old = next(iter(w.sockets))
    w.feed(SystemNotice(w.now, old, Notice.SOCKET_CLOSING))
    order = []
    while w.ops:
        a = w.ops[0].action
        order.append((type(a).__name__, getattr(a, "conn", None) == old))
        w.complete(0, True)
        if not w.ops:
            w.advance(1.5)  # past drain_period: the old socket is closed now
    assert order == [
        ("CreateChannel", False),
        ("OpenSocket", False),
        ("PutSubscriptions", False),
        ("CloseSocket", True),
    ]
    assert path(w).counters.rotations == {"socket_closing": 1}
    assert w.gaps == []
    assert w.core.budgets[0].held == 1


def test_drop_reuses_live_channel_and_reports_gap_from_last_frame() -> None:
    w = live_world()
    conn = next(iter(w.sockets))
    w.sockets.pop(conn)
    w.now = 5.0
    w.feed(SocketClosed(5.0, conn, "closed_1006", last_frame_at=4.0))
    assert path(w).state is PathState.BACKOFF
    w.advance(1.0)  # backoff starts at <= 0.5 s
    assert isinstance(w.ops[0].action, CheckChannel)
    w.settle()
    assert len(w.gaps) == 1
    gap = w.gaps[0]
    assert gap.start == pytest.approx(4.0 - 0.5)  # last frame minus gap_margin
    assert gap.end == pytest.approx(6.0)
    assert set(gap.topics) == set(TOPICS)
    assert w.n_channels == 1  # the channel still existed: reused


def test_a_drop_after_late_reads_starts_its_gap_as_much_earlier_as_the_loop_ran_late() -> None:
    """A starved event loop read the last frame at 4.0, 1.5 s after the server sent it (at 2.5); what came
    behind it, unread when the socket dropped, was sent from 2.5 on. A gap from the read less gap_margin
    (3.5) left the events sent from 2.5 to 3.5 neither delivered nor in a gap."""
    w = live_world()
    conn = next(iter(w.sockets))
    w.sockets.pop(conn)
    w.now = 5.0
    w.feed(SocketClosed(5.0, conn, "closed_1006", last_frame_at=4.0, read_lag=1.5))
    w.advance(1.0)
    w.settle()
    assert [g.reason for g in w.gaps] == ["closed_1006"]
    sent_after_the_last_read = 2.5
    assert w.gaps[0].start == pytest.approx(sent_after_the_last_read - 0.5)  # and gap_margin before it


def test_a_no_longer_subscribed_read_late_starts_its_gap_from_when_it_may_have_been_sent() -> None:
    """Another client took the topics: events stop reaching this channel from the moment the server sent
    the notice, which a loop running 1.5 s late read 1.5 s after."""
    w = live_world()
    conn = next(iter(w.sockets))
    w.now = 10.0
    w.feed(SystemNotice(w.now, conn, Notice.NO_LONGER_SUBSCRIBED, read_lag=1.5))
    w.settle()
    assert [g.reason for g in w.gaps] == ["no_longer_subscribed"]
    assert w.gaps[0].start == pytest.approx(10.0 - 1.5 - 0.5)  # sent from 8.5, less gap_margin


@pytest.mark.parametrize("read_lag", [0.0, 2.0])
def test_planned_rotations_stay_gap_free_however_late_the_loop_reads(read_lag: float) -> None:
    """Lateness moves only a failure's gap: a rotation's old socket is closed after its successor serves
    and after it proved it delivered up to then, so reading late loses nothing there."""
    w = live_world(read_lag=read_lag)
    for _ in range(4):  # socket_closing rotations
        w.feed(SystemNotice(w.now, next(iter(w.sockets)), Notice.SOCKET_CLOSING))
        for _ in range(5):
            w.settle()
            w.advance(1.0)
    for _ in range(300):  # two days of the fake world's 80 s channels and 60 s tokens: expiry rotations
        w.settle()
        w.advance(1.0)
    rotations = path(w).counters.rotations
    assert rotations["socket_closing"] == 4
    assert sum(rotations.values()) > 4
    assert w.gaps == []


def test_accept_and_close_server_gets_growing_delays() -> None:
    w = live_world()
    delays = []
    for _ in range(8):
        conn = next(iter(w.sockets))
        w.sockets.pop(conn)
        w.feed(SocketClosed(w.now, conn, "closed_1011", w.now))
        retry_at = path(w).retry_at
        assert retry_at is not None
        delays.append(retry_at - w.now)
        w.now = retry_at
        w.take(w.core.tick(w.now))
        w.settle()
    ceilings = [0.5 * 2**i for i in range(8)]
    assert all(d <= min(8.0, c) for d, c in zip(delays, ceilings, strict=True))
    assert sum(delays) > 4.0  # not a tight loop: full jitter, but the ceiling keeps doubling to the cap


def test_channel_budget_blocks_rotation_until_a_slot_frees() -> None:
    w = World(budget=2, headroom=1)
    w.take(w.core.subscribe(0.0, TOPICS))
    w.settle()
    first = next(iter(w.sockets))
    w.feed(SystemNotice(w.now, first, Notice.SOCKET_CLOSING))
    w.settle()  # rotation done, old socket draining (holds the second slot)
    second = max(w.sockets)
    w.feed(SystemNotice(w.now, second, Notice.SOCKET_CLOSING))
    assert w.core.budgets[0].held == 2
    assert path(w).pending is None  # no slot: waits instead of exceeding the budget
    w.advance(1.5)
    w.settle()
    w.advance(1.5)
    w.settle()
    assert path(w).counters.rotations.get("socket_closing") == 2
    assert w.core.budgets[0].held <= 2


def test_event_outside_the_table_is_refused() -> None:
    w = live_world()
    old = next(iter(w.sockets))
    w.feed(SystemNotice(w.now, old, Notice.SOCKET_CLOSING))
    pending = path(w).pending
    assert pending is not None
    with pytest.raises(IllegalTransition, match="ChannelChecked for a pending"):
        path(w).handle(ChannelChecked(w.now, pending.id, exists=True))  # pending channels are never HEADed


def test_close_socket_action_names_the_old_connection_only() -> None:
    w = live_world()
    old = next(iter(w.sockets))
    w.feed(SystemNotice(w.now, old, Notice.NO_LONGER_SUBSCRIBED))
    w.settle()
    w.advance(1.5)
    closes = [o.action for o in w.ops if isinstance(o.action, CloseSocket)]
    assert [c.conn for c in closes] == [old]


def _complete_until(w: World, kind: type) -> None:
    """Complete operations in order until the next one is of ``kind`` (it is left pending)."""
    while w.ops and not isinstance(w.ops[0].action, kind):
        w.complete(0, True)
    assert w.ops, f"no {kind.__name__} came"


def test_socket_closing_on_the_replacement_rotates_again_once_it_serves() -> None:
    # Genesys announces maintenance to every socket, a rotation's half-built replacement included. It used to
    # be ignored there: the replacement went live and the server closed it at the grace's end (a gap).
    w = live_world()
    old = next(iter(w.sockets))
    w.feed(SystemNotice(w.now, old, Notice.SOCKET_CLOSING))
    _complete_until(w, PutSubscriptions)  # the replacement's socket is open, its PUT in flight
    replacement = path(w).pending
    assert replacement is not None
    w.feed(SystemNotice(w.now, replacement.id, Notice.SOCKET_CLOSING))
    w.complete(0, True)  # the PUT lands: the first rotation is done
    assert path(w).current is replacement
    w.advance(0.0)
    assert path(w).pending is not None, "the announced replacement is replaced at once"
    w.settle()
    w.advance(1.5)  # both announced sockets drained and closed by us
    w.settle()
    # the server's close at the grace's end finds nothing of ours open
    assert old not in w.sockets
    assert replacement.id not in w.sockets
    assert path(w).counters.rotations == {"socket_closing": 2}
    assert w.gaps == []


def test_socket_closing_while_subscribing_rotates_as_soon_as_live() -> None:
    w = live_world()
    first = next(iter(w.sockets))
    w.sockets.pop(first)
    w.feed(SocketClosed(w.now, first, "closed_1006", w.now))  # an unplanned drop: a gap of its own
    w.advance(1.0)
    _complete_until(w, PutSubscriptions)  # reconnected on the same channel, subscribing
    again = path(w).current
    assert again is not None
    assert path(w).state is PathState.SUBSCRIBING
    w.feed(SystemNotice(w.now, again.id, Notice.SOCKET_CLOSING))
    w.complete(0, True)
    assert path(w).state is PathState.LIVE
    w.advance(0.0)
    assert path(w).state is PathState.ROTATING
    w.settle()
    assert path(w).counters.rotations == {"socket_closing": 1}
    assert [g.reason for g in w.gaps] == ["closed_1006"]  # the drop's only


def test_a_grace_too_short_for_the_rotation_is_named_in_the_gap_and_the_log() -> None:
    w = live_world()
    old = next(iter(w.sockets))
    w.now = 10.0
    w.feed(SystemNotice(w.now, old, Notice.SOCKET_CLOSING))
    w.complete(0, True)  # channel created; the replacement's socket is still opening
    w.now = 13.0
    w.sockets.pop(old)
    outs = w.core.handle(SocketClosed(w.now, old, "closed_1001", last_frame_at=12.9))
    w.take(outs)
    notices = [o.action for o in outs if isinstance(o, Routed) and isinstance(o.action, Notify)]
    down = [n for n in notices if n.kind == "reconnecting"]
    assert [n.reason for n in down] == [SOCKET_CLOSING_GRACE_EXCEEDED]
    assert "(closed_1001) 3.000s after socket_closing" in down[0].detail
    assert "replacement: opening" in down[0].detail
    w.settle()
    assert [g.reason for g in w.gaps] == [SOCKET_CLOSING_GRACE_EXCEEDED]
    assert w.gaps[0].start == pytest.approx(10.0 - 0.5)  # from the notice (see the next test)


def test_a_grace_exceeded_gap_starts_before_the_server_stopped_sending_even_when_reads_lag() -> None:
    """The soak's 17 unexplained events: a loaded bridge read each frame ~1 s after the server sent it (more
    than gap_margin). The server announced the close at 10 with a grace of 3 s, so it sent nothing after 13;
    the replacement was not live by then, and the last frame (sent before 13) was read at 14.2. A gap from
    that read, less gap_margin (13.7), left the events published from 13 to 13.7 neither delivered nor in a
    gap. What the bridge knows for sure is that the server kept sending until at least the notice."""
    w = live_world()
    old = next(iter(w.sockets))
    w.now = 10.0
    w.feed(SystemNotice(w.now, old, Notice.SOCKET_CLOSING))
    w.complete(0, True)  # channel created; the replacement's socket is still opening
    stopped_sending = 13.0  # the server's grace ends: nothing more is written to the old socket
    w.now = 14.3  # the close is read 1.3 s after it was sent; the last frame before it at 14.2
    w.sockets.pop(old)
    w.take(w.core.handle(SocketClosed(w.now, old, "closed_1001", last_frame_at=14.2)))
    w.settle()
    assert [g.reason for g in w.gaps] == [SOCKET_CLOSING_GRACE_EXCEEDED]
    assert w.gaps[0].start <= stopped_sending
    assert w.gaps[0].end >= w.now  # until the replacement served (the fake world takes no time)


def test_a_long_lived_path_forgets_the_connections_it_closed() -> None:
    """Each reconnect or rotation gives the shard's path a new connection id; the supervisor kept the owner
    entry of every one it ever made (one per reconnect, for the life of the process)."""
    w = live_world()
    closed: list[int] = []
    for i in range(30):
        w.advance(0.1)
        if i % 2:
            conn = next(iter(w.sockets))
            w.feed(SystemNotice(w.now, conn, Notice.SOCKET_CLOSING))  # a planned rotation
        else:
            conn = sorted(w.sockets)[0]
            w.drop(0)  # an abrupt drop: reconnect with backoff
        closed.append(conn)
        for _ in range(40):
            w.advance(1.0)
            w.settle()
        assert path(w).state is PathState.LIVE
    gone = [c for c in closed if c not in w.sockets]
    assert len(gone) >= 25
    assert [c for c in gone if w.core.owner_of(c) is not None] == []
    live = [c for c in w.sockets if w.core.owner_of(c) is not None]
    assert live == list(w.sockets)
