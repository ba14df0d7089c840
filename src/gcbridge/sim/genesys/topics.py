"""Topic names: validation, combined-topic expansion and the permission model (pure)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

_SEGMENT = r"[A-Za-z0-9_\-]+"
_PLAIN = re.compile(rf"^v2(?:\.{_SEGMENT})+$")
_COMBINED = re.compile(
    rf"^(v2(?:\.{_SEGMENT})+)\?({_SEGMENT}(?:\.{_SEGMENT})*(?:&{_SEGMENT}(?:\.{_SEGMENT})*)*)$"
)
#: Implicit topics that a client never subscribes to (the SDKs filter them out of subscription requests).
IMPLICIT_PREFIXES = ("channel.metadata", "v2.system")


class TopicError(ValueError):
    """A topic name that the notification service would reject as malformed."""


def expand(topic: str, max_combined_length: int = 200) -> tuple[str, ...]:
    """The individual topics that ``topic`` stands for.

    ``v2.users.u1?presence&routingStatus`` -> ``v2.users.u1.presence``, ``v2.users.u1.routingStatus``
    (spec 2.2); a plain topic stands for itself. Raises :class:`TopicError` for a malformed name, an implicit
    topic or a combined topic longer than ``max_combined_length`` characters.
    """
    if not isinstance(topic, str) or not topic:
        raise TopicError("topic must be a non-empty string")
    if topic.startswith(IMPLICIT_PREFIXES):
        raise TopicError(f"topic {topic!r} is implicit and cannot be subscribed")
    if "?" in topic:
        if len(topic) > max_combined_length:
            raise TopicError(f"combined topic exceeds {max_combined_length} characters")
        match = _COMBINED.match(topic)
        if match is None:
            raise TopicError(f"malformed combined topic {topic!r}")
        prefix, suffixes = match.group(1), match.group(2).split("&")
        return tuple(dict.fromkeys(f"{prefix}.{suffix}" for suffix in suffixes))
    if _PLAIN.match(topic) is None:
        raise TopicError(f"malformed topic {topic!r}")
    return (topic,)


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a topic is not permitted."""

    reason: str
    missing_permissions: tuple[str, ...]


class PermissionModel:
    """Which topics the (single simulated) org forbids: fnmatch-style patterns over individual topics."""

    def __init__(self) -> None:
        self._patterns: dict[str, tuple[str, ...]] = {}

    def forbid(self, pattern: str, missing_permissions: tuple[str, ...] = ()) -> None:
        self._patterns[pattern] = missing_permissions or (_permission_for(pattern),)

    def allow(self, pattern: str) -> None:
        self._patterns.pop(pattern, None)

    def check(self, topic: str) -> Denial | None:
        """``None`` if ``topic`` (an individual topic) is permitted."""
        for pattern, missing in self._patterns.items():
            if fnmatch.fnmatchcase(topic, pattern):
                return Denial(reason="Missing permissions", missing_permissions=missing)
        return None


def _permission_for(pattern: str) -> str:
    # A plausible permission string per family, so that clients see a realistic missingPermissions entry.
    if pattern.startswith("v2.detail.events"):
        return "analytics:conversationDetail:view"
    if pattern.startswith("v2.analytics"):
        return "analytics:queueObservation:view"
    if pattern.startswith("v2.routing.queues"):
        return "routing:queue:view"
    if pattern.startswith("v2.users"):
        return "directory:user:view"
    return "notifications:topic:view"
