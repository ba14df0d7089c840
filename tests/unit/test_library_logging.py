"""The library logs through the standard logging module, silently by default; the service renders those
records as JSON lines with their key/value context as fields."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from gcbridge._logs import LogMessage, get_logger
from gcbridge.bridge import logging as bridge_logging
from tests.library_logs import capture_logs
from tests.logging_state import restored_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with restored_logging():
        yield


def test_the_gcbridge_logger_has_a_null_handler_so_nothing_reaches_last_resort() -> None:
    import gcbridge.genesys  # noqa: F401 - importing the library installs it

    handlers = logging.getLogger("gcbridge").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_a_plain_formatter_shows_the_context_as_key_value_text() -> None:
    text = str(LogMessage("socket read failed", {"channel_id": "ch-1", "error": "reset by peer", "n": 3}))
    assert text == "socket read failed channel_id=ch-1 error='reset by peer' n=3"
    assert str(LogMessage("plain", {})) == "plain"
    assert str(LogMessage("empty", {"reason": ""})) == "empty reason=''"


def test_library_loggers_must_live_under_gcbridge() -> None:
    assert get_logger("gcbridge.genesys.client").logger.name == "gcbridge.genesys.client"
    with pytest.raises(ValueError, match="under 'gcbridge'"):
        get_logger("genesys")
    with pytest.raises(ValueError, match="under 'gcbridge'"):
        get_logger("gcbridgefoo.x")


def test_levels_and_handlers_are_the_programs_choice() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(funcName)s %(message)s"))
    logger = logging.getLogger("gcbridge")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    log = get_logger("gcbridge.genesys.test")

    def emit_some() -> None:
        log.debug("retrying", attempt=2)
        log.warning("path lost", reason="closed_1006")

    try:
        emit_some()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    # the record names the function that logged, not the wrapper
    assert stream.getvalue() == "WARNING gcbridge.genesys.test emit_some path lost reason=closed_1006\n"


def test_the_service_renders_library_records_as_json_with_fields_and_redaction() -> None:
    stream = io.StringIO()
    bridge_logging.configure(level="info", fmt="json", stream=stream)
    log = get_logger("gcbridge.genesys.test")
    log.debug("hidden below the configured level", n=1)
    log.warning("token request failed", url="http://login/oauth/token", client_secret="S3CRET-A", attempt=2)
    try:
        raise ConnectionResetError("Authorization: Bearer S3CRET-BBBB")
    except ConnectionResetError:
        log.exception("request crashed", method="POST")
    text = stream.getvalue()
    assert "S3CRET" not in text
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["event"] == "token request failed"
    assert first["url"] == "http://login/oauth/token"
    assert first["attempt"] == 2
    assert first["client_secret"] == bridge_logging.MASK
    assert first["level"] == "warning"
    assert first["logger"] == "gcbridge.genesys.test"
    assert second["event"] == "request crashed"
    assert second["method"] == "POST"
    assert "ConnectionResetError" in second["exception"]


def test_capture_logs_sees_debug_lines_and_context() -> None:
    log = get_logger("gcbridge.outbox.test")
    with capture_logs() as logs:
        log.debug("row retried", row_id=7)
    assert logs == [
        {
            "event": "row retried",
            "row_id": 7,
            "log_level": "debug",
            "logger": "gcbridge.outbox.test",
            "exc_info": False,
        }
    ]


def test_the_service_log_set_up_leaves_the_process_logger_class_alone() -> None:
    # structlog's LoggerFactory would make every later logger (the library's too) a structlog subclass whose
    # caller lookup ignores ``stacklevel`` on older structlog versions, so records named the wrapper instead
    with restored_logging():
        bridge_logging.configure(level="info", stream=io.StringIO())
        assert logging.getLoggerClass() is logging.Logger
        bridge_logging.get_logger("gcbridge.service.test").info("configured")
        assert type(logging.getLogger("gcbridge.service.test")) is logging.Logger
