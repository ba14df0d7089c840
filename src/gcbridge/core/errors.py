"""The roots of every error the notification library raises, so that one ``except GenesysError`` catches them.

They live in :mod:`gcbridge.core` because the pure planning code raises some of them (``InvalidTopicError``,
``TopicCapacityError``); :mod:`gcbridge.genesys.errors` re-exports them beside the errors of the I/O shells.
"""

from __future__ import annotations

__all__ = ["GenesysError", "GenesysUsageError"]


class GenesysError(Exception):
    """Base class of every error raised by :mod:`gcbridge.genesys`: Genesys-side problems and misuse alike."""


class GenesysUsageError(GenesysError, ValueError):
    """The program passed something the library cannot use: an option, a region, a URL, an empty credential,
    a topic name. Also a :class:`ValueError`, as these were before this class existed."""
