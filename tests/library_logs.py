"""Capture what the library logs (standard :mod:`logging` under ``gcbridge``) as a list of dicts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gcbridge._logs import ROOT_LOGGER, LogMessage


class _Collect(logging.Handler):
    def __init__(self, entries: list[dict[str, Any]], level: int) -> None:
        super().__init__(level)
        self.entries = entries

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg
        if isinstance(message, LogMessage):
            entry: dict[str, Any] = {"event": message.event, **message.fields}
        else:
            entry = {"event": record.getMessage()}
        entry.update(log_level=record.levelname.lower(), logger=record.name, exc_info=bool(record.exc_info))
        self.entries.append(entry)


@contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Every record of ``level`` or above logged under ``gcbridge`` meanwhile: ``event``, its keyword
    context, ``log_level`` (lower case) and ``logger`` (the same keys as structlog's ``capture_logs``)."""
    entries: list[dict[str, Any]] = []
    logger = logging.getLogger(ROOT_LOGGER)
    handler = _Collect(entries, level)
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
