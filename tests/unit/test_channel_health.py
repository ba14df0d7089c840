from __future__ import annotations

from gcbridge.core.health import HealthMonitor, Verdict


def monitor() -> HealthMonitor:
    return HealthMonitor(0.0, heartbeat_timeout=65.0, ping_interval=20.0, pong_timeout=10.0)


def test_quiet_socket_is_pinged_then_declared_dead_without_pong() -> None:
    h = monitor()
    d = h.check(5.0)
    assert d.verdict is Verdict.OK
    assert d.next_check == 20.0
    assert h.check(20.0).verdict is Verdict.SEND_PING
    assert h.check(25.0).verdict is Verdict.OK
    assert h.check(30.0).verdict is Verdict.DEAD_NO_PONG
    assert h.detection_bound == 30.0


def test_pong_keeps_it_alive() -> None:
    h = monitor()
    assert h.check(20.0).verdict is Verdict.SEND_PING
    h.pong(21.0)
    assert h.check(30.0).verdict is Verdict.OK
    assert h.check(41.0).verdict is Verdict.SEND_PING


def test_traffic_means_no_ping() -> None:
    h = monitor()
    for t in range(1, 100):
        h.frame(float(t))
        assert h.check(float(t) + 0.5).verdict is Verdict.OK


def test_heartbeat_timeout_wins_when_shorter() -> None:
    h = HealthMonitor(0.0, heartbeat_timeout=5.0, ping_interval=20.0, pong_timeout=10.0)
    assert h.check(4.0).next_check == 5.0
    assert h.check(5.0).verdict is Verdict.DEAD_SILENT


def test_paused_reader_is_not_a_dead_server() -> None:
    h = monitor()
    h.paused = True
    assert h.check(500.0).verdict is Verdict.OK
    h.paused = False
    assert h.check(501.0).verdict is Verdict.OK
