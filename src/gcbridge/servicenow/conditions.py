"""ServiceNow answers that mean the whole sink is failing, and what an operator should do about each.

:func:`gcbridge.servicenow.rest.classify` attaches one of these to a ``Retry`` (see
:class:`gcbridge.outbox.base.SinkCondition`); the dispatcher then pauses deliveries instead of retrying every
row, and ``/readyz``, ``/status`` and the ``gcbridge_servicenow_condition`` metric name the condition.
``docs/operations.md`` explains each one. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from gcbridge.core.outcome import SinkCondition

__all__ = [
    "KINDS",
    "RUN_OF_FAILURES",
    "access_denied",
    "bad_credentials",
    "hibernating",
    "is_acl_denial",
    "missing_table",
    "overloaded",
    "unavailable",
    "unreachable",
]

KINDS: Final = (
    "credentials",
    "access",
    "missing_table",
    "hibernating",
    "overloaded",
    "unavailable",
    "unreachable",
)
"""Every ``SinkCondition.kind`` built here (the label values of ``gcbridge_servicenow_condition``)."""

RUN_OF_FAILURES: Final = 5
"""Failures in a row (5xx, timeouts, connection errors) before they count as an outage: one flaky request
or a node restart must not pause everything."""

_INVALID_TABLE: Final = re.compile(r"^HTTP 400: Invalid (?:staging )?table\s*(?P<table>\S*)", re.I)
# 403 bodies of ACL denials (spec §1.2: "Insufficient rights to query records", "ACL Exception ... security
# constraints"); a data policy or business rule refusing one record is that row's problem, not the sink's
_ACL: Final = re.compile(r"insufficient rights|acl|security constraints|role|not authori[sz]ed", re.I)


def bad_credentials(status: int | str) -> SinkCondition:
    return SinkCondition(
        "credentials",
        f"ServiceNow rejected the credentials (HTTP {status})",
        "check [servicenow.auth] (user name, password or OAuth client) and that the user is active and not "
        "locked out; delivery resumes by itself once ServiceNow accepts them",
    )


def access_denied(message: str) -> SinkCondition:
    return SinkCondition(
        "access",
        f"ServiceNow refused access (HTTP 403{': ' + message if message else ''})",
        "grant the integration user the roles the targets need (import_set_loader and import_transformer for "
        "Import Sets, write ACLs for Table API targets, evt_mgmt_integration for events)",
    )


def is_acl_denial(message: str | None) -> bool:
    """Is this 403 an ACL or role denial (the sink's) rather than one record refused by a rule (the row's)?"""
    return not message or bool(_ACL.search(message))


def missing_table(reason: str) -> SinkCondition | None:
    """The condition for an ``HTTP 400: Invalid table <name>`` answer, else ``None``."""
    found = _INVALID_TABLE.match(reason)
    if found is None:
        return None
    table = found.group("table") or "(unnamed)"
    return SinkCondition(
        "missing_table",
        f"ServiceNow table {table} does not exist (HTTP 400 Invalid table)",
        f"create the table {table} (for an Import Set: the staging table and its transform map) or fix the "
        "target in the mapping; the rows wait in the outbox",
    )


def hibernating() -> SinkCondition:
    return SinkCondition(
        "hibernating",
        "ServiceNow answers with an HTML page instead of JSON (a hibernating instance or a proxy)",
        "wake the instance (developer instances hibernate when idle) or check the proxy in front of it",
    )


def overloaded() -> SinkCondition:
    """A 429 without ``Retry-After`` or rate-limit headers: the instance's inbound REST pool and its queue
    are full, for every caller alike. Retrying each row would hammer a saturated instance and leave every
    row with a growing backoff to sit out after the instance recovers (bench/README.md, 429 storm)."""
    return SinkCondition(
        "overloaded",
        "ServiceNow keeps answering HTTP 429 without Retry-After (its inbound REST pool and queue are full)",
        "nothing if it passes; if it persists, lower [servicenow] concurrency or find what else fills the "
        "instance's inbound REST pool; delivery resumes by itself",
        threshold=RUN_OF_FAILURES,
    )


def unavailable(status: int) -> SinkCondition:
    return SinkCondition(
        "unavailable",
        f"ServiceNow keeps answering HTTP {status} (instance or load balancer unavailable)",
        "check the instance's status; delivery resumes by itself when it answers again",
        threshold=RUN_OF_FAILURES,
    )


def unreachable(detail: str) -> SinkCondition:
    return SinkCondition(
        "unreachable",
        f"ServiceNow is not reachable ({detail})",
        "check [servicenow] instance_url, DNS, proxies and firewalls; delivery resumes by itself",
        threshold=RUN_OF_FAILURES,
    )
