"""What the service needs of its collaborators, as Protocols (the notification client and the outbox sink).

:class:`~gcbridge.genesys.NotificationClient` satisfies :class:`EventSource` and
:class:`~gcbridge.bridge.router.Router` satisfies :class:`DeliverySink`; tests hand the service stand-ins that
satisfy them too, and mypy checks both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol

from gcbridge.genesys.client_types import LifecycleEvent
from gcbridge.genesys.events import Event, Gap
from gcbridge.outbox.base import OutboxRow, Outcome

__all__ = ["DeliverySink", "EventSource", "SubscribeAnswer"]


class SubscribeAnswer(Protocol):
    """What a subscription change reports (:class:`~gcbridge.genesys.SubscribeResult`)."""

    @property
    def rejected(self) -> Mapping[str, str]: ...

    @property
    def pending(self) -> Sequence[str]: ...


class EventSource(Protocol):
    """The notification client as the service uses it: a stream of events and gaps, subscriptions that change
    at run time, lifecycle callbacks and a stats snapshot for the status page."""

    def __aiter__(self) -> AsyncIterator[Event | Gap]: ...

    async def start(self) -> None:
        """Get ready to subscribe (the first token: bad credentials fail here)."""

    async def subscribe(self, topics: list[str]) -> SubscribeAnswer | None: ...

    async def unsubscribe(self, topics: list[str]) -> None: ...

    def on_lifecycle(self, callback: Callable[[LifecycleEvent], None]) -> object: ...

    def stats(self) -> object:
        """A snapshot read by :func:`gcbridge.bridge.status.channel_rows` (``paths`` or ``channels``)."""

    async def aclose(self) -> None:
        """Close the sockets; the stream ends after what the client already holds."""


class DeliverySink(Protocol):
    """The ServiceNow side as the service uses it: the outbox sink, closed at shutdown."""

    async def deliver(self, row: OutboxRow) -> Outcome: ...

    async def close(self) -> None: ...
