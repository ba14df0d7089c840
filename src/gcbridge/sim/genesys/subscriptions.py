"""What a subscription request asks for and what it is granted (pure).

Spec 2.2: without ``ignoreErrors`` one malformed or forbidden topic fails the whole request; with it the
request succeeds and each topic is reported ``Permitted`` or ``Rejected``. A combined topic with a
forbidden part is reported ``Permitted`` plus a ``Rejected`` entity for the forbidden individual topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gcbridge.sim.genesys.topics import PermissionModel, TopicError, expand


class RequestError(Exception):
    """A request the notification service refuses as a whole; rendered as an ErrorBody."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class TopicEntity:
    """One ``ChannelTopic`` of a ``ChannelTopicEntityListing``."""

    id: str
    state: str = "Permitted"
    rejection_reason: str | None = None
    missing_permissions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "state": self.state}
        if self.rejection_reason is not None:
            body["rejectionReason"] = self.rejection_reason
        if self.missing_permissions:
            body["missingPermissions"] = list(self.missing_permissions)
        return body


@dataclass(frozen=True, slots=True)
class Grant:
    """The outcome of checking a request: what to subscribe and what to report as rejected."""

    accepted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Subscribed id (maybe combined) -> the permitted individual topics it stands for."""
    rejected: tuple[TopicEntity, ...] = ()


def topic_ids(body: object) -> list[str]:
    """The ids of a ``[{"id": "topic"}, ...]`` request body (raises :class:`RequestError` 400 otherwise)."""
    if not isinstance(body, list):
        raise RequestError(400, "bad.request", 'The request body must be a list of topics: [{"id": ...}]')
    ids: list[str] = []
    for item in body:
        topic = item.get("id") if isinstance(item, dict) else None
        if not isinstance(topic, str):
            raise RequestError(400, "bad.request", "Each topic must be an object with a string 'id'")
        ids.append(topic)
    return ids


def grant(
    requested: Sequence[str],
    permissions: PermissionModel,
    *,
    ignore_errors: bool,
    max_combined_length: int = 200,
) -> Grant:
    """Check each requested topic for form and permission."""
    accepted: dict[str, tuple[str, ...]] = {}
    rejected: list[TopicEntity] = []
    for topic in dict.fromkeys(requested):
        try:
            individual = expand(topic, max_combined_length)
        except TopicError as exc:
            if not ignore_errors:
                raise RequestError(400, "bad.request", f"Invalid topic: {exc}") from None
            rejected.append(TopicEntity(topic, "Rejected", f"Invalid topic: {exc}"))
            continue
        permitted: list[str] = []
        denied: list[TopicEntity] = []
        for name in individual:
            denial = permissions.check(name)
            if denial is None:
                permitted.append(name)
            else:
                denied.append(TopicEntity(name, "Rejected", denial.reason, denial.missing_permissions))
        if denied and not ignore_errors:
            missing = sorted({p for d in denied for p in d.missing_permissions})
            raise RequestError(
                403,
                "missing.permissions",
                f"Unable to subscribe to topic {topic}: missing permissions {', '.join(missing)}",
                messageWithParams="Unable to subscribe to topic {topic}: missing permissions {permissions}",
                messageParams={"topic": topic, "permissions": ", ".join(missing)},
            )
        if not permitted:
            first = denied[0]
            rejected.append(TopicEntity(topic, "Rejected", first.rejection_reason, first.missing_permissions))
            continue
        accepted[topic] = tuple(permitted)
        if len(individual) > 1:
            rejected.extend(denied)
    return Grant(accepted, tuple(rejected))
