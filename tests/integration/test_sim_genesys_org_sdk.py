"""The official Python SDK (``purecloudplatformclientv2``) reads every org endpoint of the simulator.

Each answer must deserialise into the SDK's model with its typed fields set (dates as ``datetime``) and no
enum value that the SDK does not know (its setters turn those into ``"outdated_sdk_version"``); and the
notification bodies of the org use only fields of the SDK's event models.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from gcbridge.sim.genesys import GenesysSim, org_bodies
from gcbridge.sim.genesys.org import OrgSettings, OrgWorld

from .conftest import SimFactory
from .test_sim_genesys_sdk import _unknown_fields

pytestmark = pytest.mark.sdk

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
OUTDATED = "outdated_sdk_version"


def _outdated_enums(model: Any, where: str = "") -> list[str]:
    """Paths of attributes (recursively) whose value the SDK replaced with ``outdated_sdk_version``."""
    if isinstance(model, list):
        return [p for i, item in enumerate(model) for p in _outdated_enums(item, f"{where}[{i}]")]
    if not hasattr(model, "swagger_types"):
        return [where] if model == OUTDATED else []
    found = []
    for attr in model.swagger_types:
        found += _outdated_enums(getattr(model, attr), f"{where}.{attr}")
    return found


def _drive_sdk(base_url: str, queue_ids: list[str], user_ids: list[str]) -> dict[str, Any]:
    import PureCloudPlatformClientV2 as sdk
    from PureCloudPlatformClientV2.rest import ApiException

    previous_host = sdk.configuration.host
    sdk.configuration.host = base_url
    try:
        api_client = sdk.api_client.ApiClient().get_client_credentials_token("sim-client", "sim-secret")
        analytics = sdk.AnalyticsApi(api_client)

        def details(page_number: int, *, queue_id: str | None = None) -> Any:
            query = sdk.ConversationQuery()
            query.interval = "2027-01-15T00:00:00.000Z/2027-01-16T00:00:00.000Z"
            query.order = "asc"
            query.order_by = "conversationStart"
            paging = sdk.PagingSpec()
            paging.page_size = 50
            paging.page_number = page_number
            query.paging = paging
            if queue_id is not None:
                predicate = sdk.SegmentDetailQueryPredicate()
                predicate.type = "dimension"
                predicate.dimension = "queueId"
                predicate.operator = "matches"
                predicate.value = queue_id
                segment_filter = sdk.SegmentDetailQueryFilter()
                segment_filter.type = "and"
                segment_filter.predicates = [predicate]
                query.segment_filters = [segment_filter]
            return analytics.post_analytics_conversations_details_query(query)

        first = details(1)
        filtered = details(1, queue_id=queue_ids[0])
        past_the_end = details(1000)
        conversation_id = first.conversations[0].conversation_id
        conversation = sdk.ConversationsApi(api_client).get_conversation(conversation_id)
        presences = sdk.PresenceApi(api_client).get_users_presences_purecloud_bulk(id=user_ids[:50])
        try:
            sdk.PresenceApi(api_client).get_users_presences_purecloud_bulk(id=user_ids[:51])
            too_many: Any = None
        except ApiException as exc:
            too_many = exc
        routing = sdk.UsersApi(api_client).get_user_routingstatus(user_ids[0])
        observation_query = sdk.QueueObservationQuery()
        observation_filter = sdk.QueueObservationQueryFilter()
        observation_filter.type = "or"
        predicates = []
        for queue_id in queue_ids:
            predicate = sdk.QueueObservationQueryPredicate()
            predicate.type = "dimension"
            predicate.dimension = "queueId"
            predicate.value = queue_id
            predicates.append(predicate)
        observation_filter.predicates = predicates
        observation_query.filter = observation_filter
        observation_query.metrics = ["oWaiting", "oInteracting", "oOnQueueUsers", "oOffQueueUsers"]
        observations = sdk.RoutingApi(api_client).post_analytics_queues_observations_query(observation_query)
        return {
            "first": first,
            "filtered": filtered,
            "past_the_end": past_the_end,
            "conversation": conversation,
            "presences": presences,
            "too_many": too_many,
            "routing": routing,
            "observations": observations,
            "models": sdk,
        }
    finally:
        sdk.configuration.host = previous_host


async def test_the_official_sdk_parses_every_org_answer(genesys_sim_factory: SimFactory) -> None:
    sim: GenesysSim = await genesys_sim_factory(org=OrgSettings(seed=9, users=60, time_scale=0, start=START))
    assert sim.org is not None
    sim.org.advance_by(3 * 3600)
    world = sim.org.world
    queue_ids, user_ids = list(world.queues), list(world.users)
    result = await asyncio.wait_for(asyncio.to_thread(_drive_sdk, sim.base_url, queue_ids, user_ids), 120)
    sdk = result["models"]
    bogus = sdk.Call()
    bogus.state = "bogus"  # the check below must be able to see an enum the SDK does not know
    assert _outdated_enums(bogus, "call") == ["call.state"]

    for name in ("first", "filtered", "past_the_end", "conversation", "presences", "routing", "observations"):
        assert _outdated_enums(result[name], name) == [], name

    first = result["first"]
    assert isinstance(first, sdk.AnalyticsConversationQueryResponse)
    assert first.total_hits == len(world.conversations())
    assert len(first.conversations) == 50
    conv = first.conversations[0]
    assert isinstance(conv, sdk.AnalyticsConversationWithoutAttributes)
    assert isinstance(conv.conversation_start, datetime.datetime)
    assert conv.originating_direction == "inbound"
    participant = conv.participants[0]
    assert participant.purpose == "customer"
    session = participant.sessions[0]
    assert session.media_type == "voice"
    assert session.direction == "inbound"
    segment = session.segments[0]
    assert isinstance(segment, sdk.AnalyticsConversationSegment)
    assert segment.segment_type in ("interact", "alert", "hold", "wrapup")
    assert isinstance(segment.segment_start, datetime.datetime)
    for filtered in result["filtered"].conversations:
        assert queue_ids[0] in {
            s.queue_id for p in filtered.participants for x in p.sessions for s in x.segments
        }
    assert result["past_the_end"].conversations is None
    assert result["past_the_end"].total_hits == first.total_hits

    conversation = result["conversation"]
    assert isinstance(conversation, sdk.Conversation)
    assert conversation.id == conv.conversation_id
    assert isinstance(conversation.start_time, datetime.datetime)
    assert conversation.state in ("connected", "terminated")
    call = conversation.participants[0].calls[0]
    assert isinstance(call, sdk.Call)
    assert call.state in ("connected", "disconnected", "terminated")
    agents = [p for p in conversation.participants if p.purpose == "agent"]
    for agent in agents:
        assert agent.user_id in user_ids
        if agent.wrapup is not None:
            assert isinstance(agent.wrapup, sdk.Wrapup)
            assert agent.wrapup.code

    presences = result["presences"]
    assert [p.user_id for p in presences] == user_ids[: len(presences)]
    assert all(isinstance(p, sdk.UcUserPresence) for p in presences)
    assert all(isinstance(p.modified_date, datetime.datetime) for p in presences)
    assert all(p.presence_definition.system_presence for p in presences)
    assert result["too_many"].status == 400
    assert "maximum of 50" in result["too_many"].body

    routing = result["routing"]
    assert isinstance(routing, sdk.RoutingStatus)
    assert routing.user_id == user_ids[0]
    assert routing.status == world.users[user_ids[0]].routing
    assert isinstance(routing.start_time, datetime.datetime)

    observations = result["observations"]
    assert isinstance(observations, sdk.QueueObservationQueryResponse)
    assert {r.group["queueId"] for r in observations.results} == set(queue_ids)
    for container in observations.results:
        assert all(
            isinstance(d, sdk.ObservationMetricData) and d.stats.count is not None for d in container.data
        )


def test_org_bodies_use_only_fields_of_the_sdk_models() -> None:
    import PureCloudPlatformClientV2 as sdk

    world = OrgWorld(OrgSettings(seed=5), START)
    changes = world.advance(START + 6 * 3600)
    models = {
        "conversations": "QueueConversationEventTopicConversation",
        "presence": "PresenceEventUserPresence",
        "routingStatus": "UserRoutingStatusUserRoutingStatus",
        "acd.start": "AcdStartDetailEventTopicAcdStartEvent",
        "acd.end": "AcdEndDetailEventTopicAcdEndEvent",
        "acw": "AcwDetailEventTopicAfterCallWorkEvent",
        "customer.start": "CustomerStartDetailEventTopicCustomerStartEvent",
        "customer.end": "CustomerEndDetailEventTopicCustomerEndEvent",
        "user.start": "UserStartDetailEventTopicUserStartEvent",
        "user.end": "UserEndDetailEventTopicUserEndEvent",
    }
    checked: set[str] = set()
    for change in changes:
        for topic, body in org_bodies.notifications(world, change):
            for suffix, model in models.items():
                if topic.endswith("." + suffix):
                    checked.add(suffix)
                    assert _unknown_fields(sdk, body, model, topic) == []
    assert checked == set(models)
    for conv in world.conversations():
        assert _unknown_fields(sdk, org_bodies.rest_conversation(conv), "Conversation", conv.id) == []
        analytics = org_bodies.analytics_conversation(conv)
        assert _unknown_fields(sdk, analytics, "AnalyticsConversationWithoutAttributes", conv.id) == []
    for user in world.users.values():
        assert _unknown_fields(sdk, org_bodies.rest_presence(world, user), "UcUserPresence", user.id) == []
        assert (
            _unknown_fields(sdk, org_bodies.rest_routing_status(user, user.id), "RoutingStatus", user.id)
            == []
        )


def test_detail_event_enums_are_the_sdk_s() -> None:
    import PureCloudPlatformClientV2 as sdk

    world = OrgWorld(OrgSettings(seed=6), START)
    changes = world.advance(START + 4 * 3600)
    setters = {
        "acd.end": sdk.AcdEndDetailEventTopicAcdEndEvent,
        "user.end": sdk.UserEndDetailEventTopicUserEndEvent,
        "customer.end": sdk.CustomerEndDetailEventTopicCustomerEndEvent,
    }
    seen = 0
    for change in changes:
        for topic, body in org_bodies.notifications(world, change):
            family = topic.split(".", 5)[-1]
            model_type = setters.get(family)
            if model_type is None:
                continue
            model = model_type()
            for attr, json_name in model.attribute_map.items():
                if (
                    json_name in ("disconnectType", "mediaType", "direction", "acdOutcome")
                    and json_name in body
                ):
                    setattr(model, attr, body[json_name])
                    assert getattr(model, attr) == body[json_name], (topic, json_name)
                    seen += 1
    assert seen > 100
