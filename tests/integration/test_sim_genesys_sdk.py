"""The official Python SDK (``purecloudplatformclientv2``), an independent real client, against the simulator.

Every response must deserialise into the SDK's models; that is the fidelity check of the REST shapes.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from gcbridge.sim.genesys import GenesysSim

pytestmark = pytest.mark.sdk


def _drive_sdk(base_url: str) -> dict[str, Any]:
    """Everything the SDK does, synchronously (run in a thread while the simulator serves on the loop)."""
    import PureCloudPlatformClientV2 as sdk
    from PureCloudPlatformClientV2.rest import ApiException

    previous_host = sdk.configuration.host
    sdk.configuration.host = base_url  # no "//api." in it: the SDK posts the token to the same origin
    try:
        api_client = sdk.api_client.ApiClient().get_client_credentials_token("sim-client", "sim-secret")
        notifications = sdk.NotificationsApi(api_client)
        channel = notifications.post_notifications_channels()
        topic = sdk.ChannelTopic()
        topic.id = "v2.users.u1?presence&routingStatus"
        strict = notifications.post_notifications_channel_subscriptions(channel.id, [topic])
        forbidden = sdk.ChannelTopic()
        forbidden.id = "v2.detail.events.conversation.c1.acw"
        try:
            notifications.post_notifications_channel_subscriptions(channel.id, [forbidden])
            strict_error: Any = None
        except ApiException as exc:
            strict_error = exc
        partial = notifications.post_notifications_channel_subscriptions(
            channel.id, [forbidden, topic], ignore_errors=True
        )
        replaced = notifications.put_notifications_channel_subscriptions(channel.id, [topic])
        listed = notifications.get_notifications_channel_subscriptions(channel.id)
        head = notifications.head_notifications_channel(channel.id)
        try:
            notifications.head_notifications_channel("streaming-0-" + "z" * 26)
            missing: Any = None
        except ApiException as exc:
            missing = exc
        channels = notifications.get_notifications_channels(includechannels="oauthclient")
        notifications.delete_notifications_channel_subscriptions(channel.id)
        emptied = notifications.get_notifications_channel_subscriptions(channel.id)
        return {
            "token": api_client.access_token,
            "channel": channel,
            "strict": strict,
            "strict_error": strict_error,
            "partial": partial,
            "replaced": replaced,
            "listed": listed,
            "head": head,
            "missing": missing,
            "channels": channels,
            "emptied": emptied,
            "models": sdk,
        }
    finally:
        sdk.configuration.host = previous_host


async def test_official_sdk_against_the_simulator(genesys_sim: GenesysSim) -> None:
    genesys_sim.forbid_topic("v2.detail.events.*")
    result = await asyncio.wait_for(asyncio.to_thread(_drive_sdk, genesys_sim.base_url), 90)
    sdk = result["models"]

    assert result["token"]
    assert genesys_sim.token_requests == 1

    channel = result["channel"]
    assert isinstance(channel, sdk.Channel)
    assert channel.id.startswith("streaming-0-")
    assert channel.connect_uri == f"{genesys_sim.base_url.replace('http', 'ws')}/channels/{channel.id}"
    assert isinstance(channel.expires, datetime.datetime)
    assert channel.expires > datetime.datetime.now(datetime.UTC)

    strict = result["strict"]
    assert isinstance(strict, sdk.ChannelTopicEntityListing)
    assert [(t.id, t.state) for t in strict.entities] == [("v2.users.u1?presence&routingStatus", "Permitted")]
    assert all(isinstance(t, sdk.ChannelTopic) for t in strict.entities)

    assert result["strict_error"].status == 403
    assert "missing.permissions" in result["strict_error"].body

    for name in ("partial", "replaced", "listed", "emptied"):  # every listing is the SDK's model
        assert isinstance(result[name], sdk.ChannelTopicEntityListing), name
        assert all(isinstance(t, sdk.ChannelTopic) for t in result[name].entities), name
    assert all(isinstance(c, sdk.Channel) for c in result["channels"].entities)
    partial = {t.id: t for t in result["partial"].entities}
    rejected = partial["v2.detail.events.conversation.c1.acw"]
    assert rejected.state == "Rejected"
    assert rejected.rejection_reason
    assert rejected.missing_permissions == ["analytics:conversationDetail:view"]
    assert partial["v2.users.u1?presence&routingStatus"].state == "Permitted"

    assert [t.id for t in result["replaced"].entities] == ["v2.users.u1?presence&routingStatus"]
    assert [t.id for t in result["listed"].entities] == ["v2.users.u1?presence&routingStatus"]
    assert result["head"] is None
    assert result["missing"].status == 404

    channels = result["channels"]
    assert isinstance(channels, sdk.ChannelEntityListing)
    assert [c.id for c in channels.entities] == [channel.id]
    assert result["emptied"].entities == []
    assert [c.id for c in genesys_sim.channels] == [channel.id]


_BODY_MODELS = {
    "v2.users.{id}.presence": "PresenceEventUserPresence",
    "v2.users.{id}.routingStatus": "UserRoutingStatusUserRoutingStatus",
    "v2.users.{id}.conversations": "ConversationEventTopicConversation",
    "v2.routing.queues.{id}.conversations": "QueueConversationEventTopicConversation",
    "v2.detail.events.conversation.{id}.acd.start": "AcdStartDetailEventTopicAcdStartEvent",
    "v2.detail.events.conversation.{id}.acd.end": "AcdEndDetailEventTopicAcdEndEvent",
    "v2.detail.events.conversation.{id}.acw": "AcwDetailEventTopicAfterCallWorkEvent",
    "v2.detail.events.conversation.{id}.customer.start": "CustomerStartDetailEventTopicCustomerStartEvent",
    "v2.detail.events.conversation.{id}.customer.end": "CustomerEndDetailEventTopicCustomerEndEvent",
    "v2.detail.events.conversation.{id}.user.start": "UserStartDetailEventTopicUserStartEvent",
    "v2.detail.events.conversation.{id}.user.end": "UserEndDetailEventTopicUserEndEvent",
}


def _unknown_fields(sdk: Any, value: Any, type_name: str, where: str) -> list[str]:
    """JSON keys of ``value`` that the SDK model ``type_name`` (recursively) does not define."""
    if type_name.startswith("list[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [p for i, item in enumerate(value) for p in _unknown_fields(sdk, item, inner, f"{where}[{i}]")]
    model = getattr(sdk, type_name, None)
    if model is None or not isinstance(value, dict):
        return []  # a primitive (str, int, bool, datetime, object)
    instance = model()
    by_json = {json_name: attr for attr, json_name in instance.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{where}.{key}")
            continue
        problems += _unknown_fields(sdk, item, instance.swagger_types[by_json[key]], f"{where}.{key}")
    return problems


def test_generated_event_bodies_use_only_fields_of_the_sdk_event_models() -> None:
    import PureCloudPlatformClientV2 as sdk

    from gcbridge.sim.genesys.bodies import BodyGenerator

    generator = BodyGenerator(seed=3)
    for template, model in _BODY_MODELS.items():
        topic = template.format(id="6f1c4b8e-1111-4222-8333-444455556666")
        for _ in range(20):  # media types and optional parts vary between bodies
            body = generator.body(topic)
            assert body, topic
            assert _unknown_fields(sdk, body, model, "eventBody") == [], (topic, model)


def test_system_messages_match_the_sdk_system_message_model() -> None:
    import PureCloudPlatformClientV2 as sdk

    from gcbridge.sim.genesys import messages

    for system_topic_type, reason in [
        ("no_longer_subscribed", "another_channel_subscribed"),
        ("token_revoked", "user_tokens_revoked"),
    ]:
        envelope = messages.system(
            messages.NO_LONGER_SUBSCRIBED,
            channel_id="streaming-0-" + "a" * 26,
            oauth_client_id="sim-client",
            organization_id="org",
            message="m",
            system_topic_type=system_topic_type,
            reason=reason,
            data={"topics": ["v2.users.u1.presence"]},
        )
        body = envelope["eventBody"]
        assert _unknown_fields(sdk, body, "SystemMessageSystemMessage", "eventBody") == []
        model = sdk.SystemMessageSystemMessage()
        model.system_topic_type = body["systemTopicType"]  # the setter turns unknown values into
        model.reason = body["reason"]  # "outdated_sdk_version"
        assert (model.system_topic_type, model.reason) == (system_topic_type, reason)


def _sdk_lists_channels(base_url: str) -> Any:
    import PureCloudPlatformClientV2 as sdk

    previous_host = sdk.configuration.host
    sdk.configuration.host = base_url
    try:
        api_client = sdk.api_client.ApiClient().get_client_credentials_token("sim-client", "sim-secret")
        return sdk.NotificationsApi(api_client).get_notifications_channels()
    finally:
        sdk.configuration.host = previous_host


async def test_sdk_retries_the_simulators_429_with_retry_after_transparently(genesys_sim: GenesysSim) -> None:
    # Spec 1.6 [EXP]: urllib3's default Retry honours Retry-After on 429; our header must be one it accepts.
    genesys_sim.fail_next_rest(2, status=429, retry_after=1)
    listing = await asyncio.wait_for(asyncio.to_thread(_sdk_lists_channels, genesys_sim.base_url), 90)
    import PureCloudPlatformClientV2 as sdk

    assert isinstance(listing, sdk.ChannelEntityListing)
    assert listing.entities == []
    assert not genesys_sim.faults.api  # both injected 429s were consumed by the SDK's own retries
