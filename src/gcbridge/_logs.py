"""How the library logs: through the standard :mod:`logging` module, silent unless the program configures it.

Every library module takes a named logger under ``gcbridge.`` (``log = get_logger(__name__)``) and passes
its context as keywords: ``log.warning("socket read failed", channel_id=cid, error=str(exc))``. The
context travels with the record in its message, a :class:`LogMessage`: a plain :mod:`logging` formatter
shows it as ``socket read failed channel_id=... error=...``, and a structured renderer (the service's, in
:mod:`gcbridge.bridge.logging`) reads :attr:`LogMessage.event` and :attr:`LogMessage.fields` to keep them
as separate fields.

The ``gcbridge`` logger gets a :class:`logging.NullHandler`, so that nothing is printed (not even warnings,
through :data:`logging.lastResort`) unless the program configures logging itself: a library must not write
to a program's stdout or stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

__all__ = ["ROOT_LOGGER", "KeyValueLogger", "LogMessage", "get_logger"]

ROOT_LOGGER: Final = "gcbridge"

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())

# Characters that make a value ambiguous in ``key=value`` text; such values are quoted.
_NEEDS_QUOTES: Final = frozenset(" \t\n\"'=")


class LogMessage:
    """A log record's message: the event text plus its key/value context, rendered only when formatted."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        if not self.fields:
            return self.event
        return " ".join([self.event, *(f"{key}={_text(value)}" for key, value in self.fields.items())])

    def __repr__(self) -> str:
        return f"LogMessage({self.event!r}, {dict(self.fields)!r})"


def _text(value: object) -> str:
    text = str(value)
    return repr(text) if not text or any(c in _NEEDS_QUOTES for c in text) else text


class KeyValueLogger:
    """A thin wrapper over a :class:`logging.Logger` that takes context as keyword arguments."""

    __slots__ = ("logger",)

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def debug(self, event: str, /, **fields: object) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: object) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: object) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: object) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, /, **fields: object) -> None:
        """An error line with the traceback of the exception being handled."""
        self._log(logging.ERROR, event, fields, exc_info=True)

    def log(self, level: int, event: str, /, **fields: object) -> None:
        self._log(level, event, fields)

    def _log(self, level: int, event: str, fields: Mapping[str, object], exc_info: bool = False) -> None:
        if self.logger.isEnabledFor(level):
            # stacklevel 3: the record names the library function that logged, not this wrapper
            self.logger.log(level, LogMessage(event, fields), exc_info=exc_info, stacklevel=3)


def get_logger(name: str) -> KeyValueLogger:
    """A logger for a library module; ``name`` must be under ``gcbridge.`` (pass ``__name__``)."""
    if name != ROOT_LOGGER and not name.startswith(ROOT_LOGGER + "."):
        raise ValueError(f"library loggers live under {ROOT_LOGGER!r}, got {name!r}")
    return KeyValueLogger(name)
