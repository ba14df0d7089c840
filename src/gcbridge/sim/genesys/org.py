"""A coherent simulated org (pure): users, queues and voice conversations that live in simulated time.

:class:`OrgWorld` is seeded and advanced with :meth:`OrgWorld.advance` (``now`` in simulated epoch seconds);
it returns what changed, as immutable snapshots, so that the notifications the simulator publishes and the
REST answers it gives are both *derived* from one state (:mod:`.org_bodies` renders them). Nothing here
touches a clock, a socket or asyncio: a test runs a simulated day in milliseconds.

Conversations follow :data:`CONVERSATION_TRANSITIONS` and each agent's part of one follows
:data:`LEG_TRANSITIONS`; anything not in those tables raises :class:`IllegalTransition`. The world's
randomness is drawn only while processing its own scheduled events, in time order, so the result of a seed
does not depend on how the caller slices time into ``advance`` calls.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace

__all__ = [
    "CONVERSATION_TRANSITIONS",
    "LEG_TRANSITIONS",
    "Change",
    "Conversation",
    "ConversationChanged",
    "IllegalTransition",
    "Leg",
    "ObservationMetric",
    "OrgSettings",
    "OrgWorld",
    "Participant",
    "Phase",
    "PresenceChanged",
    "Queue",
    "QueueObserved",
    "RoutingStatusChanged",
    "Segment",
    "User",
    "Wrapup",
]


class Phase(enum.StrEnum):
    """Where a conversation is, from the customer's side."""

    QUEUED = "queued"
    ALERTING = "alerting"
    CONNECTED = "connected"
    HELD = "held"
    WRAPUP = "wrapup"
    """The customer has left; agents finish their after-call work."""
    ENDED = "ended"


class Leg(enum.StrEnum):
    """Where one agent's participation in a conversation is."""

    ALERTING = "alerting"
    CONNECTED = "connected"
    HELD = "held"
    WRAPUP = "wrapup"
    DONE = "done"
    MISSED = "missed"
    """The agent did not answer in time (routing status ``NOT_RESPONDING``)."""


#: (phase, event) -> next phase. Every conversation change goes through this table.
CONVERSATION_TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.QUEUED, "offer"): Phase.ALERTING,
    (Phase.QUEUED, "abandon"): Phase.WRAPUP,
    (Phase.ALERTING, "answer"): Phase.CONNECTED,
    (Phase.ALERTING, "no_answer"): Phase.QUEUED,
    (Phase.ALERTING, "abandon"): Phase.WRAPUP,
    (Phase.CONNECTED, "hold"): Phase.HELD,
    (Phase.HELD, "resume"): Phase.CONNECTED,
    (Phase.CONNECTED, "transfer"): Phase.QUEUED,
    (Phase.CONNECTED, "hang_up"): Phase.WRAPUP,
    (Phase.HELD, "hang_up"): Phase.WRAPUP,
    (Phase.WRAPUP, "end"): Phase.ENDED,
}

#: (leg, event) -> next leg state, for an agent's participant.
LEG_TRANSITIONS: dict[tuple[Leg, str], Leg] = {
    (Leg.ALERTING, "answer"): Leg.CONNECTED,
    (Leg.ALERTING, "no_answer"): Leg.MISSED,
    (Leg.ALERTING, "abandon"): Leg.DONE,
    (Leg.CONNECTED, "hold"): Leg.HELD,
    (Leg.HELD, "resume"): Leg.CONNECTED,
    (Leg.CONNECTED, "transfer"): Leg.WRAPUP,
    (Leg.CONNECTED, "hang_up"): Leg.WRAPUP,
    (Leg.HELD, "hang_up"): Leg.WRAPUP,
    (Leg.WRAPUP, "wrap_up"): Leg.DONE,
}

#: A user's next presence is drawn from these (canonical analytics spelling, e.g. ``ON_QUEUE``).
PRESENCE_NEXT: dict[str, tuple[str, ...]] = {
    "OFFLINE": ("AVAILABLE",),
    "AVAILABLE": ("ON_QUEUE", "ON_QUEUE", "AWAY", "OFFLINE"),
    "ON_QUEUE": ("BREAK", "MEAL", "AVAILABLE", "AWAY", "MEETING"),
    "BREAK": ("ON_QUEUE",),
    "MEAL": ("ON_QUEUE",),
    "AWAY": ("ON_QUEUE", "AVAILABLE"),
    "MEETING": ("ON_QUEUE", "AVAILABLE"),
}

#: Share of held customers who hang up before the agent resumes.
HANG_UP_ON_HOLD = 0.1

WRAPUP_CODES: tuple[tuple[str, str], ...] = (
    ("Resolved", "Customer issue resolved on the call"),
    ("Callback", "Customer asked to be called back"),
    ("Escalated", "Escalated to second line"),
    ("Sale", "Order placed"),
)


class IllegalTransition(ValueError):
    """An event that the transition table does not allow in the current state."""


def step(phase: Phase, event: str) -> Phase:
    """The conversation phase after ``event``; raises :class:`IllegalTransition` if not in the table."""
    try:
        return CONVERSATION_TRANSITIONS[(phase, event)]
    except KeyError:
        raise IllegalTransition(f"conversation cannot {event!r} while {phase.value}") from None


def step_leg(leg: Leg, event: str) -> Leg:
    """The agent leg state after ``event``; raises :class:`IllegalTransition` if not in the table."""
    try:
        return LEG_TRANSITIONS[(leg, event)]
    except KeyError:
        raise IllegalTransition(f"agent leg cannot {event!r} while {leg.value}") from None


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """The shape and pace of the simulated org. Durations are simulated seconds."""

    seed: int = 1
    users: int = 12
    queues: int = 3
    calls_per_hour: float = 60.0
    """Arrivals over the whole org (Poisson, spread evenly over the queues)."""
    mean_talk: float = 240.0
    mean_hold: float = 40.0
    mean_patience: float = 150.0
    """How long a waiting customer stays before abandoning (exponential)."""
    mean_wrapup: float = 45.0
    mean_presence: float = 2400.0
    """Mean time between presence changes of an agent who is free."""
    alert_timeout: float = 8.0
    not_responding: float = 60.0
    """How long an agent who missed an alert stays ``NOT_RESPONDING``."""
    p_no_answer: float = 0.08
    p_hold: float = 0.3
    p_transfer: float = 0.1
    time_scale: float = 1.0
    """Simulated seconds of the org per real second when the simulator runs it (independent of
    ``SimConfig.time_scale``, which paces channel and token lifetimes); 0 stops the org's clock, so that only
    ``OrgService.advance_by`` moves it (deterministic tests)."""
    start: float | None = None
    """Epoch seconds of the world's start; ``None``: the simulator's wall clock when it starts."""
    max_page_size: int = 100
    """Largest ``paging.pageSize`` of the analytics details query."""

    def __post_init__(self) -> None:
        if self.users < 1 or self.queues < 1:
            raise ValueError(f"an org needs users >= 1 and queues >= 1, got {self.users} and {self.queues}")
        for name in ("mean_talk", "mean_hold", "mean_patience", "mean_wrapup", "mean_presence"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("alert_timeout", "not_responding", "calls_per_hour"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("p_no_answer", "p_hold", "p_transfer"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if self.time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {self.time_scale}")
        if self.max_page_size < 1:
            raise ValueError("max_page_size must be >= 1")


# == snapshots (immutable; what renderers and tests see) =====================================================
@dataclass(frozen=True, slots=True)
class Segment:
    """An analytics segment; ``kind`` is its ``segmentType``: interact, alert, hold or wrapup."""

    kind: str
    start: float
    end: float | None = None
    queue_id: str | None = None
    disconnect_type: str | None = None
    wrapup_code: str | None = None
    wrapup_note: str | None = None


@dataclass(frozen=True, slots=True)
class Wrapup:
    code: str
    name: str
    notes: str
    duration: float
    end: float


@dataclass(frozen=True, slots=True)
class Participant:
    """One participant; ``disconnect_type`` uses the analytics spelling (``endpoint``, ``peer``,
    ``transfer``, ``noAnswerTransfer``); renderers translate it per model."""

    id: str
    purpose: str
    """``customer``, ``acd`` (the queue's own participant) or ``agent``."""
    name: str
    session_id: str
    start: float
    connected: float | None = None
    end: float | None = None
    user_id: str | None = None
    queue_id: str | None = None
    leg: Leg | None = None
    hold_start: float | None = None
    disconnect_type: str | None = None
    wrapup_required: bool = False
    acw_start: float | None = None
    wrapup: Wrapup | None = None
    terminated: bool = False
    """The whole conversation has ended (call state ``terminated`` rather than ``disconnected``)."""
    segments: tuple[Segment, ...] = ()

    @property
    def held(self) -> bool:
        """On hold now (a hold that has begun and not ended)."""
        return self.hold_start is not None

    @property
    def call_state(self) -> str:
        """The call state (``alerting``, ``connected``, ``disconnected``, ``terminated``)."""
        if self.terminated:
            return "terminated"
        if self.end is not None:
            return "disconnected"
        return "alerting" if self.leg is Leg.ALERTING else "connected"


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    start: float
    phase: Phase
    ani: str
    dnis: str
    division_id: str
    participants: tuple[Participant, ...]
    end: float | None = None
    abandoned: bool = False
    transfers: int = 0

    @property
    def queue_id(self) -> str | None:
        """The queue the conversation is (or was last) in."""
        acds = [p for p in self.participants if p.purpose == "acd"]
        return acds[-1].queue_id if acds else None

    @property
    def queue_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.queue_id for p in self.participants if p.queue_id))

    @property
    def user_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.user_id for p in self.participants if p.user_id))


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    queue_ids: tuple[str, ...]
    presence: str
    """Canonical system presence (``ON_QUEUE``, ``AVAILABLE``, ``BREAK``, ...)."""
    presence_since: float
    routing: str
    """``OFF_QUEUE``, ``IDLE``, ``INTERACTING``, ``NOT_RESPONDING``."""
    routing_since: float


@dataclass(frozen=True, slots=True)
class Queue:
    id: str
    name: str


@dataclass(frozen=True, slots=True, order=True)
class ObservationMetric:
    metric: str
    qualifier: str | None
    count: int


# == changes =================================================================================================
@dataclass(frozen=True, slots=True)
class ConversationChanged:
    at: float
    conversation: Conversation
    details: tuple[tuple[str, str], ...] = ()
    """Detail events of this change: (family such as ``acd.start``, participant id)."""


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    at: float
    user: User


@dataclass(frozen=True, slots=True)
class RoutingStatusChanged:
    at: float
    user: User


@dataclass(frozen=True, slots=True)
class QueueObserved:
    at: float
    queue_id: str
    metrics: tuple[ObservationMetric, ...]


Change = ConversationChanged | PresenceChanged | RoutingStatusChanged | QueueObserved


# == mutable internals =======================================================================================
@dataclass(slots=True)
class _Party:
    id: str
    purpose: str
    name: str
    session_id: str
    start: float
    connected: float | None = None
    end: float | None = None
    user_id: str | None = None
    queue_id: str | None = None
    leg: Leg | None = None
    hold_start: float | None = None
    disconnect_type: str | None = None
    wrapup_required: bool = False
    acw_start: float | None = None
    wrapup: Wrapup | None = None
    segments: list[Segment] = field(default_factory=list)

    def open_segment(self, kind: str, at: float, queue_id: str | None = None) -> None:
        self.segments.append(Segment(kind, at, queue_id=queue_id))

    def close_segment(self, at: float, **extra: str | None) -> None:
        last = self.segments[-1]
        if last.end is None:
            fields = {
                "kind": last.kind,
                "start": last.start,
                "end": at,
                "queue_id": last.queue_id,
                "disconnect_type": extra.get("disconnect_type", last.disconnect_type),
                "wrapup_code": extra.get("wrapup_code", last.wrapup_code),
                "wrapup_note": extra.get("wrapup_note", last.wrapup_note),
            }
            self.segments[-1] = Segment(**fields)  # type: ignore[arg-type]

    def leave(self, at: float, disconnect_type: str) -> None:
        self.close_segment(at, disconnect_type=disconnect_type)
        self.end = at
        self.disconnect_type = disconnect_type
        self.hold_start = None


@dataclass(slots=True)
class _Call:
    id: str
    start: float
    phase: Phase
    ani: str
    dnis: str
    division_id: str
    parties: list[_Party]
    queue_id: str
    queued_at: float
    visit: int = 0
    plan: int = 0
    end: float | None = None
    abandoned: bool = False
    transfers: int = 0

    def customer(self) -> _Party:
        return self.parties[0]

    def acd(self) -> _Party:
        return [p for p in self.parties if p.purpose == "acd"][-1]

    def agent(self) -> _Party | None:
        """The agent the customer is with (alerting, connected or held), if any."""
        for party in reversed(self.parties):
            if party.leg in (Leg.ALERTING, Leg.CONNECTED, Leg.HELD):
                return party
        return None


@dataclass(slots=True)
class _Agent:
    user: User
    busy_with: str | None = None
    """The conversation the agent is alerting on, talking in or wrapping up."""
    missed_at: float | None = None


# == the world ===============================================================================================
class OrgWorld:
    """A seeded org: :meth:`advance` runs it to ``now`` and returns what changed, in order."""

    def __init__(self, settings: OrgSettings, start: float) -> None:
        self.settings = settings
        self.start = start
        self.now = start
        self._rng = random.Random(settings.seed)
        self._seq = 0
        self._heap: list[tuple[float, int, str, str, int]] = []
        self.queues: dict[str, Queue] = {}
        for i in range(settings.queues):
            qid = self._uuid()
            self.queues[qid] = Queue(qid, f"Queue {i + 1:02d}")
        self.presence_ids = {name: self._uuid() for name in sorted({*PRESENCE_NEXT, "BUSY", "IDLE"})}
        self.division_id = self._uuid()
        queue_ids = list(self.queues)
        self._agents: dict[str, _Agent] = {}
        for i in range(settings.users):
            uid = self._uuid()
            # Every agent serves one or two queues; together they cover all of them.
            member = {queue_ids[i % len(queue_ids)], self._rng.choice(queue_ids)}
            presence = "ON_QUEUE" if self._rng.random() < 0.7 else self._rng.choice(["AVAILABLE", "OFFLINE"])
            routing = _routing_when_free(presence)
            user = User(
                uid,
                f"Agent {i + 1:03d}",
                tuple(q for q in queue_ids if q in member),
                presence,
                start,
                routing,
                start,
            )
            self._agents[uid] = _Agent(user)
            self._schedule(start + self._exp(settings.mean_presence), "presence", uid)
        self._calls: dict[str, _Call] = {}
        self._snapshots: dict[str, Conversation] = {}
        self._observed: dict[str, tuple[ObservationMetric, ...]] = {}
        self.transition_counts: Counter[tuple[Phase, str]] = Counter()
        """How often each row of :data:`CONVERSATION_TRANSITIONS` was taken."""
        if settings.calls_per_hour > 0:
            for qid in self.queues:
                self._schedule(start + self._arrival_gap(), "arrival", qid)
        for qid in self.queues:
            self._observed[qid] = self.observation(qid)

    # -- public reads ----------------------------------------------------------------------------------------
    @property
    def users(self) -> dict[str, User]:
        return {uid: agent.user for uid, agent in self._agents.items()}

    def user(self, user_id: str) -> User | None:
        agent = self._agents.get(user_id)
        return agent.user if agent is not None else None

    def conversation(self, conversation_id: str) -> Conversation | None:
        """The current state of a conversation, also once it has ended."""
        return self._snapshots.get(conversation_id)

    def conversations(self) -> list[Conversation]:
        """Every conversation so far (ongoing and ended), oldest first."""
        return list(self._snapshots.values())

    def observation(self, queue_id: str) -> tuple[ObservationMetric, ...]:
        """The queue's real-time observation now (what ``v2.analytics.queues.{id}.observations`` carries)."""
        calls = [c for c in self._calls.values() if c.phase is not Phase.ENDED and c.queue_id == queue_id]
        metrics = [
            ObservationMetric("oWaiting", None, sum(c.phase is Phase.QUEUED for c in calls)),
            ObservationMetric("oAlerting", None, sum(c.phase is Phase.ALERTING for c in calls)),
            ObservationMetric(
                "oInteracting", None, sum(c.phase in (Phase.CONNECTED, Phase.HELD) for c in calls)
            ),
        ]
        members = [a.user for a in self._agents.values() if queue_id in a.user.queue_ids]
        routing: dict[str, int] = {}
        for user in members:
            if user.presence == "ON_QUEUE":
                routing[user.routing] = routing.get(user.routing, 0) + 1
        metrics += [ObservationMetric("oOnQueueUsers", status, n) for status, n in sorted(routing.items())]
        off = sum(u.presence != "ON_QUEUE" for u in members)
        metrics.append(ObservationMetric("oOffQueueUsers", None, off))
        return tuple(metrics)

    def next_due(self) -> float | None:
        """Simulated time of the next scheduled happening, if any."""
        return self._heap[0][0] if self._heap else None

    # -- driving ---------------------------------------------------------------------------------------------
    def advance(self, now: float) -> list[Change]:
        """Run every happening due by ``now`` (simulated epoch seconds) and return the changes, in order."""
        if now < self.now:
            raise ValueError(f"time cannot go back: {now} < {self.now}")
        changes: list[Change] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, kind, subject, token = heapq.heappop(self._heap)
            self.now = at
            touched = _Touched()
            getattr(self, f"_on_{kind}")(subject, token, touched)
            self._dispatch(touched)
            changes += self._emit(touched)
        self.now = now
        return changes

    # -- happenings (one handler per scheduled kind) ---------------------------------------------------------
    def _on_arrival(self, queue_id: str, _token: int, touched: _Touched) -> None:
        self._schedule(self.now + self._arrival_gap(), "arrival", queue_id)
        now = self.now
        cid = self._uuid()
        ani = f"tel:+1317555{self._rng.randint(1000, 9999)}"
        customer = _Party(self._uuid(), "customer", "Customer", self._uuid(), now, connected=now)
        customer.open_segment("interact", now)
        call = _Call(
            cid, now, Phase.QUEUED, ani, "tel:+18005550100", self.division_id, [customer], queue_id, now
        )
        self._calls[cid] = call
        touched.call(cid, ("customer.start", customer.id))
        self._enter_queue(call, queue_id, touched)

    def _on_abandon(self, cid: str, visit: int, touched: _Touched) -> None:
        call = self._calls.get(cid)
        if call is None or call.visit != visit or call.phase not in (Phase.QUEUED, Phase.ALERTING):
            return  # the customer was answered (or moved on) before running out of patience
        self._apply(call, "abandon")
        call.abandoned = True
        call.plan += 1  # whatever the ringing phone was going to do will not happen
        agent = call.agent()
        if agent is not None:  # abandoned while an agent's phone was ringing
            agent.leg = step_leg(agent.leg or Leg.ALERTING, "abandon")
            agent.leave(self.now, "peer")
            touched.call(cid, ("user.end", agent.id))
            self._free_agent(agent, touched)
        acd = call.acd()
        acd.leave(self.now, "peer")
        touched.call(cid, ("acd.end", acd.id))
        customer = call.customer()
        customer.leave(self.now, "endpoint")
        touched.call(cid, ("customer.end", customer.id))
        self._maybe_end(call, touched)

    def _on_answer(self, cid: str, plan: int, touched: _Touched) -> None:
        if (planned := self._planned(cid, plan, "answer")) is None:
            return
        call, agent = planned
        agent.close_segment(self.now)
        agent.connected = self.now
        agent.open_segment("interact", self.now, call.queue_id)
        acd = call.acd()
        acd.leave(self.now, "transfer")
        touched.call(cid, ("acd.end", acd.id))
        talk = self._exp(self.settings.mean_talk)
        roll = self._rng.random()
        call.plan += 1
        if roll < self.settings.p_transfer and call.transfers == 0 and len(self.queues) > 1:
            self._schedule(self.now + talk / 2, "transfer", cid, call.plan)
        elif roll < self.settings.p_transfer + self.settings.p_hold:
            self._schedule(self.now + talk * 0.3, "hold", cid, call.plan)
        else:
            self._schedule(self.now + talk, "hang_up", cid, call.plan)

    def _on_no_answer(self, cid: str, plan: int, touched: _Touched) -> None:
        if (planned := self._planned(cid, plan, "no_answer")) is None:
            return
        _, agent = planned
        assert agent.user_id is not None
        agent.leave(self.now, "noAnswerTransfer")
        touched.call(cid, ("user.end", agent.id))
        worker = self._agents[agent.user_id]
        worker.busy_with = None
        worker.missed_at = self.now
        self._set_routing(worker, "NOT_RESPONDING", touched)
        self._schedule(self.now + self.settings.not_responding, "recover", agent.user_id)

    def _on_hold(self, cid: str, plan: int, touched: _Touched) -> None:
        if (planned := self._planned(cid, plan, "hold")) is None:
            return
        call, agent = planned
        agent.hold_start = self.now
        agent.close_segment(self.now)
        agent.open_segment("hold", self.now, call.queue_id)
        touched.call(cid)
        call.plan += 1
        # Some customers give up while on hold.
        then = "hang_up" if self._rng.random() < HANG_UP_ON_HOLD else "resume"
        self._schedule(self.now + self._exp(self.settings.mean_hold), then, cid, call.plan)

    def _on_resume(self, cid: str, plan: int, touched: _Touched) -> None:
        if (planned := self._planned(cid, plan, "resume")) is None:
            return
        call, agent = planned
        agent.hold_start = None
        agent.close_segment(self.now)
        agent.open_segment("interact", self.now, call.queue_id)
        touched.call(cid)
        call.plan += 1
        self._schedule(self.now + self._exp(self.settings.mean_talk / 2), "hang_up", cid, call.plan)

    def _on_transfer(self, cid: str, plan: int, touched: _Touched) -> None:
        if (planned := self._planned(cid, plan, "transfer")) is None:
            return
        call, agent = planned
        call.transfers += 1
        self._start_acw(call, agent, "transfer", touched)
        target = self._rng.choice([q for q in self.queues if q != call.queue_id])
        self._enter_queue(call, target, touched)

    def _on_hang_up(self, cid: str, plan: int, touched: _Touched) -> None:
        if (planned := self._planned(cid, plan, "hang_up")) is None:
            return
        call, agent = planned
        customer = call.customer()
        customer.leave(self.now, "endpoint")
        touched.call(cid, ("customer.end", customer.id))
        self._start_acw(call, agent, "peer", touched)
        self._maybe_end(call, touched)

    def _on_wrap_up(self, cid: str, party_index: int, touched: _Touched) -> None:
        call = self._calls[cid]
        agent = call.parties[party_index]
        assert agent.leg is not None
        assert agent.acw_start is not None
        agent.leg = step_leg(agent.leg, "wrap_up")
        code, note = self._rng.choice(WRAPUP_CODES)
        agent.wrapup = Wrapup(code, code, note, self.now - agent.acw_start, self.now)
        agent.close_segment(self.now, wrapup_code=code, wrapup_note=note)
        touched.call(cid, ("acw", agent.id))
        self._free_agent(agent, touched)
        self._maybe_end(call, touched)

    def _on_presence(self, user_id: str, _token: int, touched: _Touched) -> None:
        worker = self._agents[user_id]
        if worker.busy_with is not None:
            # Agents change presence between conversations, not in the middle of one.
            self._schedule(self.now + 60.0, "presence", user_id)
            return
        self._schedule(self.now + self._exp(self.settings.mean_presence), "presence", user_id)
        presence = self._rng.choice(PRESENCE_NEXT[worker.user.presence])
        worker.user = replace(worker.user, presence=presence, presence_since=self.now)
        touched.presence.add(user_id)
        self._set_routing(worker, _routing_when_free(presence), touched)

    def _on_recover(self, user_id: str, _token: int, touched: _Touched) -> None:
        worker = self._agents[user_id]
        if worker.user.routing == "NOT_RESPONDING" and worker.busy_with is None:
            self._set_routing(worker, _routing_when_free(worker.user.presence), touched)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _planned(self, cid: str, plan: int, event: str) -> tuple[_Call, _Party] | None:
        """The conversation and the agent with the customer for a planned ``event``, the conversation's phase
        and the agent's leg moved on by it; None when the plan was superseded (the conversation moved on
        before this was due)."""
        call = self._calls.get(cid)
        if call is None or call.plan != plan:
            return None
        agent = call.agent()
        assert agent is not None
        assert agent.leg is not None
        self._apply(call, event)
        agent.leg = step_leg(agent.leg, event)
        return call, agent

    def _apply(self, call: _Call, event: str) -> None:
        before = call.phase
        call.phase = step(before, event)
        self.transition_counts[(before, event)] += 1

    def _enter_queue(self, call: _Call, queue_id: str, touched: _Touched) -> None:
        acd = _Party(
            self._uuid(),
            "acd",
            self.queues[queue_id].name,
            self._uuid(),
            self.now,
            connected=self.now,
            queue_id=queue_id,
        )
        acd.open_segment("interact", self.now, queue_id)
        call.parties.append(acd)
        call.queue_id = queue_id
        call.queued_at = self.now
        call.visit += 1
        touched.call(call.id, ("acd.start", acd.id))
        self._schedule(self.now + self._exp(self.settings.mean_patience), "abandon", call.id, call.visit)

    def _dispatch(self, touched: _Touched) -> None:
        """Offer waiting conversations to free agents: longest-waiting first, to the longest-idle member."""
        waiting = sorted(
            (c for c in self._calls.values() if c.phase is Phase.QUEUED), key=lambda c: (c.queued_at, c.id)
        )
        for call in waiting:
            free = [
                a
                for a in self._agents.values()
                if a.busy_with is None and a.user.routing == "IDLE" and call.queue_id in a.user.queue_ids
            ]
            if not free:
                continue
            worker = min(free, key=lambda a: (a.user.routing_since, a.user.id))
            self._offer(call, worker, touched)

    def _offer(self, call: _Call, worker: _Agent, touched: _Touched) -> None:
        self._apply(call, "offer")
        party = _Party(
            self._uuid(),
            "agent",
            worker.user.name,
            self._uuid(),
            self.now,
            user_id=worker.user.id,
            queue_id=call.queue_id,
            leg=Leg.ALERTING,
            wrapup_required=True,
        )
        party.open_segment("alert", self.now, call.queue_id)
        call.parties.append(party)
        worker.busy_with = call.id
        self._set_routing(worker, "INTERACTING", touched)
        touched.call(call.id, ("user.start", party.id))
        call.plan += 1
        if self._rng.random() < self.settings.p_no_answer:
            self._schedule(self.now + self.settings.alert_timeout, "no_answer", call.id, call.plan)
        else:
            ring = self._rng.uniform(1.0, max(1.0, min(6.0, self.settings.alert_timeout * 0.9)))
            self._schedule(self.now + ring, "answer", call.id, call.plan)

    def _start_acw(self, call: _Call, agent: _Party, disconnect_type: str, touched: _Touched) -> None:
        agent.leave(self.now, disconnect_type)
        agent.acw_start = self.now
        agent.open_segment("wrapup", self.now, agent.queue_id)
        touched.call(call.id, ("user.end", agent.id))
        index = call.parties.index(agent)
        self._schedule(self.now + self._exp(self.settings.mean_wrapup), "wrap_up", call.id, index)

    def _free_agent(self, agent: _Party, touched: _Touched) -> None:
        assert agent.user_id is not None
        worker = self._agents[agent.user_id]
        worker.busy_with = None
        self._set_routing(worker, _routing_when_free(worker.user.presence), touched)

    def _maybe_end(self, call: _Call, touched: _Touched) -> None:
        if call.phase is not Phase.WRAPUP or any(p.leg is Leg.WRAPUP for p in call.parties):
            return
        self._apply(call, "end")
        call.end = self.now
        touched.call(call.id)

    def _set_routing(self, worker: _Agent, status: str, touched: _Touched) -> None:
        if worker.user.routing != status:
            worker.user = replace(worker.user, routing=status, routing_since=self.now)
            touched.routing.add(worker.user.id)

    def _emit(self, touched: _Touched) -> list[Change]:
        changes: list[Change] = []
        for cid, details in touched.calls.items():
            snapshot = _freeze(self._calls[cid])
            self._snapshots[cid] = snapshot
            changes.append(ConversationChanged(self.now, snapshot, tuple(details)))
            if snapshot.phase is Phase.ENDED:
                del self._calls[cid]
        for uid in sorted(touched.presence):
            changes.append(PresenceChanged(self.now, self._agents[uid].user))
        for uid in sorted(touched.routing):
            changes.append(RoutingStatusChanged(self.now, self._agents[uid].user))
        affected = {q for cid in touched.calls for q in self._snapshots[cid].queue_ids}
        for uid in touched.presence | touched.routing:
            affected.update(self._agents[uid].user.queue_ids)
        for qid in sorted(affected):  # only these can have changed
            metrics = self.observation(qid)
            if metrics != self._observed[qid]:
                self._observed[qid] = metrics
                changes.append(QueueObserved(self.now, qid, metrics))
        return changes

    def _schedule(self, at: float, kind: str, subject: str, token: int = 0) -> None:
        # Whole milliseconds, as every time of the real API: a time rendered as ISO-8601 (REST, analytics)
        # and as epoch milliseconds (detail events) must be the same instant, or a back-filled event
        # rebuilt from one could not equal the live one rendered from the other.
        at = round(at * 1000) / 1000
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, subject, token))

    def _exp(self, mean: float) -> float:
        return self._rng.expovariate(1.0 / mean)

    def _arrival_gap(self) -> float:
        rate_per_queue = self.settings.calls_per_hour / 3600.0 / len(self.queues)
        return self._rng.expovariate(rate_per_queue) if rate_per_queue > 0 else math.inf

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _routing_when_free(presence: str) -> str:
    """An agent's routing status outside a conversation: idle when on queue, off queue otherwise."""
    return "IDLE" if presence == "ON_QUEUE" else "OFF_QUEUE"


class _Touched:
    """What one happening changed (collected, then emitted as snapshots in a stable order)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, str]]] = {}
        self.presence: set[str] = set()
        self.routing: set[str] = set()

    def call(self, cid: str, *details: tuple[str, str]) -> None:
        self.calls.setdefault(cid, []).extend(details)


def _freeze(call: _Call) -> Conversation:
    ended = call.phase is Phase.ENDED
    participants = tuple(
        Participant(
            id=p.id,
            purpose=p.purpose,
            name=p.name,
            session_id=p.session_id,
            start=p.start,
            connected=p.connected,
            end=p.end,
            user_id=p.user_id,
            queue_id=p.queue_id,
            leg=p.leg,
            hold_start=p.hold_start,
            disconnect_type=p.disconnect_type,
            wrapup_required=p.wrapup_required,
            acw_start=p.acw_start,
            wrapup=p.wrapup,
            terminated=ended,
            segments=tuple(p.segments),
        )
        for p in call.parties
    )
    return Conversation(
        id=call.id,
        start=call.start,
        phase=call.phase,
        ani=call.ani,
        dnis=call.dnis,
        division_id=call.division_id,
        participants=participants,
        end=call.end,
        abandoned=call.abandoned,
        transfers=call.transfers,
    )
