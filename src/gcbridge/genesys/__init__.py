"""Genesys Cloud notifications for asyncio programs: :class:`NotificationClient` and what it yields."""

from gcbridge.core.topics import InvalidTopicError, TopicCapacityError
from gcbridge.genesys.client import (
    ClientClosedError,
    ClientOptions,
    ClientStats,
    LifecycleEvent,
    NotificationClient,
    PathStats,
    SubscribeResult,
    SubscriptionRejectedError,
)
from gcbridge.genesys.events import Event, Gap, Item

__all__ = [
    "ClientClosedError",
    "ClientOptions",
    "ClientStats",
    "Event",
    "Gap",
    "InvalidTopicError",
    "Item",
    "LifecycleEvent",
    "NotificationClient",
    "PathStats",
    "SubscribeResult",
    "SubscriptionRejectedError",
    "TopicCapacityError",
]
