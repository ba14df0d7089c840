"""HealthMonitor's backlog: what a slow consumer leaves unread decides where a gap after a drop starts."""

from __future__ import annotations

from gcbridge.core.health import HealthMonitor, Verdict


def monitor() -> HealthMonitor:
    return HealthMonitor(0.0, heartbeat_timeout=65.0, ping_interval=20.0, pong_timeout=10.0)


def test_last_good_is_the_last_frame_while_the_reader_keeps_up() -> None:
    h = monitor()
    h.frame(3.0)
    assert h.last_good == 3.0


def test_back_pressure_holds_last_good_at_its_start_until_the_reader_caught_up() -> None:
    h = monitor()
    h.frame(10.0)
    h.hold(10.0)  # the consumer is slow: frames sent from now on may wait unread
    assert h.check(200.0).verdict is Verdict.OK  # our own pause is not a silent server ...
    h.resume()
    h.frame(210.0)
    h.hold(210.0)  # back-pressure again before catching up: the backlog keeps its start
    h.resume()
    h.frame(220.0)
    assert h.last_good == 10.0  # ... and reading late frames does not vouch for the ones still unread
    h.caught_up()
    assert h.last_good == 220.0
    h.hold(230.0)  # a new backlog starts afresh
    assert h.last_good == 220.0  # never later than the last frame read
    h.frame(231.0)
    assert h.last_good == 230.0
