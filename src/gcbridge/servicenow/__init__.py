"""The ServiceNow writer: delivers outbox rows (Genesys events) into ServiceNow.

Public API::

    from gcbridge.servicenow import ServiceNowConfig, build_router, create_session

    session = create_session()                      # aiohttp session without cookies (mandatory)
    router = build_router(config, session)          # an outbox Sink: Router.deliver(row) -> Outcome
    ...
    await router.close(); await session.close()

Mapping events to rows: :mod:`gcbridge.servicenow.mapping` (``compile_mapping``, ``event_to_outbox_item``,
``default_rules``); the expression language: :mod:`gcbridge.servicenow.expressions`; answers and their
outcomes: :func:`gcbridge.servicenow.rest.classify`. See ``docs/servicenow.md``.
"""

from gcbridge.servicenow.auth import AuthError, BasicAuth, OAuthTokens
from gcbridge.servicenow.config import (
    BasicAuthConfig,
    FieldSpec,
    MappingConfig,
    MappingRule,
    OAuthConfig,
    ServiceNowConfig,
    TimeoutConfig,
)
from gcbridge.servicenow.mapping import (
    Mapping,
    MappingError,
    compile_mapping,
    default_rules,
    event_to_outbox_item,
)
from gcbridge.servicenow.rest import ServiceNowRest, classify, create_session
from gcbridge.servicenow.sinks import EventSink, ImportSetSink, Router, TableUpsertSink, build_router

__all__ = [
    "AuthError",
    "BasicAuth",
    "BasicAuthConfig",
    "EventSink",
    "FieldSpec",
    "ImportSetSink",
    "Mapping",
    "MappingConfig",
    "MappingError",
    "MappingRule",
    "OAuthConfig",
    "OAuthTokens",
    "Router",
    "ServiceNowConfig",
    "ServiceNowRest",
    "TableUpsertSink",
    "TimeoutConfig",
    "build_router",
    "classify",
    "compile_mapping",
    "create_session",
    "default_rules",
    "event_to_outbox_item",
]
