"""Stop signals: the phase table, the events it sets, and cutting a graceful stop short on a second SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gcbridge.stopsignals import STOP_SIGNALS, TRANSITIONS, StopSignals, next_phase, unless_set


def test_the_table_covers_every_phase_and_stop_signal() -> None:
    phases = {"running", "stopping", "hurrying"}
    assert set(TRANSITIONS) == {(p, s) for p in phases for s in STOP_SIGNALS}


@pytest.mark.parametrize(
    ("signals", "phase", "actions"),
    [
        ([signal.SIGINT], "stopping", ["stop"]),
        ([signal.SIGTERM], "stopping", ["stop"]),
        ([signal.SIGINT, signal.SIGINT], "hurrying", ["stop", "hurry"]),
        ([signal.SIGTERM, signal.SIGINT], "hurrying", ["stop", "hurry"]),
        # supervisors repeat SIGTERM and still want the graceful stop they asked for
        ([signal.SIGTERM, signal.SIGTERM], "stopping", ["stop", "none"]),
        ([signal.SIGINT, signal.SIGINT, signal.SIGINT], "hurrying", ["stop", "hurry", "none"]),
    ],
)
async def test_signals_move_through_the_phases(
    signals: list[signal.Signals], phase: str, actions: list[str]
) -> None:
    seen: list[tuple[signal.Signals, str]] = []
    stop_signals = StopSignals(on_signal=lambda sig, action: seen.append((sig, action)))
    for sig in signals:
        stop_signals.deliver(sig)
    assert stop_signals.phase == phase
    assert seen == list(zip(signals, actions, strict=True))
    assert stop_signals.stop.is_set()
    assert stop_signals.hurry.is_set() == ("hurry" in actions)


def test_a_signal_that_is_not_a_stop_signal_is_refused() -> None:
    with pytest.raises(ValueError, match="SIGHUP is not a stop signal"):
        next_phase("running", signal.SIGHUP)


async def test_a_real_sigint_sets_stop_even_when_sigint_was_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job
    try:
        with StopSignals() as stop_signals:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(stop_signals.stop.wait(), 30)
            assert stop_signals.received == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # leaving the block restores the ignore
    finally:
        signal.signal(signal.SIGINT, previous)


async def test_unless_set_returns_the_result_of_work_that_finishes() -> None:
    event = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await unless_set(event, work()) == (True, "done")


async def test_unless_set_cancels_work_when_the_event_comes_first() -> None:
    event = asyncio.Event()
    cancelled = asyncio.Event()

    async def endless() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def hurry_soon() -> None:
        await asyncio.sleep(0)
        event.set()

    hurrying = asyncio.create_task(hurry_soon())
    assert await unless_set(event, endless()) == (False, None)
    assert cancelled.is_set()
    await hurrying


async def test_unless_set_with_the_event_already_set_does_not_wait() -> None:
    event = asyncio.Event()
    event.set()
    assert await unless_set(event, asyncio.Event().wait()) == (False, None)


async def test_unless_set_lets_errors_of_the_work_through() -> None:
    async def failing() -> None:
        raise OSError("port closed twice")

    with pytest.raises(OSError, match="port closed twice"):
        await unless_set(asyncio.Event(), failing())


async def test_cancelling_the_caller_cancels_the_work() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def endless() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    caller = asyncio.create_task(unless_set(asyncio.Event(), endless()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cancelled.is_set()
