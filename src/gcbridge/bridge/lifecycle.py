"""The service's own lifecycle as a transition table (pure: no asyncio, no clock).

``starting -> running -> draining -> stopped``, with ``failed`` reachable from anywhere but ``stopped`` (a
fatal client error such as ``invalid_client``). Anything not in the table is a bug and raises.
"""

from __future__ import annotations

from typing import Final, Literal

State = Literal["starting", "running", "draining", "stopped", "failed"]
Trigger = Literal["started", "stop", "drained", "fatal"]

TRANSITIONS: Final[dict[tuple[State, Trigger], State]] = {
    ("starting", "started"): "running",
    ("starting", "stop"): "draining",
    ("starting", "fatal"): "failed",
    ("running", "stop"): "draining",
    ("running", "fatal"): "failed",
    ("draining", "stop"): "draining",
    ("draining", "drained"): "stopped",
    ("draining", "fatal"): "failed",
    ("failed", "stop"): "failed",
    ("failed", "fatal"): "failed",
    ("failed", "drained"): "failed",
    ("stopped", "stop"): "stopped",
}


class IllegalTransition(RuntimeError):
    pass


class Lifecycle:
    def __init__(self) -> None:
        self.state: State = "starting"

    def fire(self, trigger: Trigger) -> State:
        try:
            self.state = TRANSITIONS[(self.state, trigger)]
        except KeyError:
            raise IllegalTransition(f"{trigger!r} is not allowed in state {self.state!r}") from None
        return self.state

    @property
    def alive(self) -> bool:
        return self.state != "failed"
