"""The ServiceNow writer: writes rows (:class:`~gcbridge.servicenow.rows.Row`) into ServiceNow.

Public API::

    from gcbridge.servicenow import Row, ServiceNowConfig, build_writer, create_session

    session = create_session()                      # aiohttp session without cookies (mandatory)
    writer = build_writer(config, session)          # Writer.write(row) -> Delivered | Retry | Reject
    ...
    await writer.close(); await session.close()

The writer knows nothing of Genesys: turning events into rows (the mapping rules, the expression language,
the outbox sink that joins the two) is the bridge's job, in :mod:`gcbridge.bridge.mapping` and
:mod:`gcbridge.bridge.router`. Answers and their outcomes: :func:`gcbridge.servicenow.rest.classify`. See
``docs/servicenow.md``.
"""

from gcbridge.servicenow.auth import AuthError, BasicAuth, OAuthTokens
from gcbridge.servicenow.config import (
    BasicAuthConfig,
    OAuthConfig,
    ServiceNowConfig,
    TimeoutConfig,
)
from gcbridge.servicenow.rest import ServiceNowRest, classify, create_session
from gcbridge.servicenow.rows import SINKS, Row
from gcbridge.servicenow.sinks import EventSink, ImportSetSink, TableUpsertSink, Writer, build_writer

__all__ = [
    "SINKS",
    "AuthError",
    "BasicAuth",
    "BasicAuthConfig",
    "EventSink",
    "ImportSetSink",
    "OAuthConfig",
    "OAuthTokens",
    "Row",
    "ServiceNowConfig",
    "ServiceNowRest",
    "TableUpsertSink",
    "TimeoutConfig",
    "Writer",
    "build_writer",
    "classify",
    "create_session",
]
