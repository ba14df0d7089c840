"""Random operation sequences keep the channel registry's invariants (Hypothesis stateful test)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gcbridge.secrets import Secret
from gcbridge.sim.genesys.channels import ChannelEnded, ChannelRegistry, EndReason, TopicsTaken
from gcbridge.sim.genesys.subscriptions import RequestError, grant
from gcbridge.sim.genesys.topics import PermissionModel

CLIENTS = ("a", "b")
TOPICS = (
    "v2.users.u1.presence",
    "v2.users.u1.routingStatus",
    "v2.users.u2.presence",
    "v2.users.u1?presence&station",
)
MAX_CHANNELS, MAX_TOPICS, TTL = 3, 3, 100.0


class RegistryMachine(RuleBasedStateMachine):
    @initialize(exclusive=st.booleans())
    def setup(self, exclusive: bool) -> None:
        self.exclusive = exclusive
        self.reg = ChannelRegistry(
            ttl=TTL, max_per_client=MAX_CHANNELS, max_topics=MAX_TOPICS, exclusive=exclusive
        )
        self.now = 0.0
        self.ended: set[str] = set()

    def _record(self, actions: list[ChannelEnded | TopicsTaken]) -> None:
        for action in actions:
            if isinstance(action, ChannelEnded):
                assert action.channel_id not in self.ended
                self.ended.add(action.channel_id)
            else:
                assert self.exclusive

    @rule(client=st.sampled_from(CLIENTS))
    def create(self, client: str) -> None:
        before = {c.id: c for c in self.reg.of_client(client)}
        channel, actions = self.reg.create(client, Secret("t"), self.now)
        self._record(actions)
        if len(before) == MAX_CHANNELS:
            (evicted,) = actions
            assert isinstance(evicted, ChannelEnded)
            assert evicted.reason is EndReason.EVICTED
            victim = before[evicted.channel_id]
            unconnected = [c for c in before.values() if not c.connected]
            pool = unconnected or list(before.values())
            assert victim.last_used == min(c.last_used for c in pool)
            assert victim.connected is False or not unconnected
        else:
            assert actions == []
        assert channel.expires == self.now + TTL

    @precondition(lambda self: bool(self.reg.all()))
    @rule(data=st.data(), replace=st.booleans(), topics=st.lists(st.sampled_from(TOPICS), max_size=4))
    def subscribe(self, data: st.DataObject, replace: bool, topics: list[str]) -> None:
        channel = data.draw(st.sampled_from(self.reg.all()))
        before = dict(channel.subscriptions)
        granted = grant(topics, PermissionModel(), ignore_errors=False)
        would_have = len(granted.accepted) if replace else len({**before, **granted.accepted})
        if would_have > MAX_TOPICS:
            with pytest.raises(RequestError, match="limit"):
                self.reg.subscribe(channel.id, granted, self.now, replace=replace)
            assert channel.subscriptions == before
            return
        self._record(self.reg.subscribe(channel.id, granted, self.now, replace=replace))
        assert channel.expires == self.now + TTL

    @precondition(lambda self: bool(self.reg.all()))
    @rule(data=st.data(), connected=st.booleans())
    def connect(self, data: st.DataObject, connected: bool) -> None:
        channel = data.draw(st.sampled_from(self.reg.all()))
        self.reg.set_connected(channel.id, connected, self.now)

    @rule(dt=st.floats(min_value=0.0, max_value=60.0))
    def advance(self, dt: float) -> None:
        self.now += dt
        self._record(self.reg.expire(self.now))

    @invariant()
    def budget_and_index_hold(self) -> None:
        if not hasattr(self, "reg"):
            return
        for client in CLIENTS:
            assert len(self.reg.of_client(client)) <= MAX_CHANNELS
        for channel in self.reg.all():
            assert channel.id not in self.ended
            assert channel.expires > self.now
            assert len(channel.subscriptions) <= MAX_TOPICS
        for topic in {t for c in self.reg.all() for t in c.individual_topics} | {"v2.users.u1.station"}:
            holders = {c.id for c in self.reg.all() if topic in c.individual_topics}
            assert {c.id for c in self.reg.recipients(topic)} == holders
            if self.exclusive:
                clients = [c.oauth_client for c in self.reg.recipients(topic)]
                assert len(clients) == len(set(clients))


RegistryMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_channel_registry_invariants = RegistryMachine.TestCase
