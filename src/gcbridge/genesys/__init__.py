"""Genesys Cloud notifications for asyncio programs: :class:`NotificationClient` and what it yields.

Most programs need only ``NotificationClient``, ``ClientOptions``, ``Event`` and ``Gap``; every error the
library raises derives from ``GenesysError``. The building blocks
underneath (the OAuth ``TokenManager``, the ``NotificationsApi`` REST layer, ``resolve_region``) are exported
for programs that manage channels themselves. ``Backfiller`` repairs a ``Gap`` from the REST API.
"""

from gcbridge.core.backoff import BackoffPolicy
from gcbridge.core.topics import InvalidTopicError, TopicCapacityError
from gcbridge.genesys.auth import AccessToken, TokenManager
from gcbridge.genesys.backfill import (
    Backfiller,
    BackfillError,
    BackfillOptions,
    BackfillReport,
    BackfillRun,
    Unfillable,
)
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
from gcbridge.genesys.errors import (
    ClientNotStartedError,
    GenesysApiError,
    GenesysAuthError,
    GenesysError,
    GenesysTransportError,
    GenesysUsageError,
    InvalidClientError,
    StartTimeoutError,
)
from gcbridge.genesys.events import Event, Gap, Item
from gcbridge.genesys.regions import RegionHosts, resolve_region
from gcbridge.genesys.rest import ChannelInfo, NotificationsApi, SubscriptionResult

__all__ = [
    "AccessToken",
    "BackfillError",
    "BackfillOptions",
    "BackfillReport",
    "BackfillRun",
    "Backfiller",
    "BackoffPolicy",
    "ChannelInfo",
    "ClientClosedError",
    "ClientNotStartedError",
    "ClientOptions",
    "ClientStats",
    "Event",
    "Gap",
    "GenesysApiError",
    "GenesysAuthError",
    "GenesysError",
    "GenesysTransportError",
    "GenesysUsageError",
    "InvalidClientError",
    "InvalidTopicError",
    "Item",
    "LifecycleEvent",
    "NotificationClient",
    "NotificationsApi",
    "PathStats",
    "RegionHosts",
    "StartTimeoutError",
    "SubscribeResult",
    "SubscriptionRejectedError",
    "SubscriptionResult",
    "TokenManager",
    "TopicCapacityError",
    "Unfillable",
    "resolve_region",
]
