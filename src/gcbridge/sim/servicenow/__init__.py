"""A ServiceNow instance simulator (Table, Import Set and Event Management APIs, OAuth, faults).

Quick start::

    from gcbridge.sim.servicenow import ServiceNowSim, SnSimConfig

    sim = ServiceNowSim(SnSimConfig(users={"admin": "admin-pass"}, oauth_clients={"cid": "csecret"}))
    base_url = await sim.start("127.0.0.1", 0)
    ...
    sim.records("interaction"); sim.import_sets; sim.requests
    sim.inject(503, count=2); sim.set_delay(1.0); sim.hibernate(True); sim.set_rate_limit(100)
    await sim.stop()

The command line is ``gcbridge sim servicenow``; see ``docs/simulator-servicenow.md``.
"""

from __future__ import annotations

from .config import DEFAULT_TABLES, SnSimConfig, default_transform_maps
from .importsets import ImportRow, ImportSet
from .ratelimit import RateLimitRule
from .sim import RequestRecord, ServiceNowSim
from .transform import AutoMap, RowStatus, TransformMap

__all__ = [
    "DEFAULT_TABLES",
    "AutoMap",
    "ImportRow",
    "ImportSet",
    "RateLimitRule",
    "RequestRecord",
    "RowStatus",
    "ServiceNowSim",
    "SnSimConfig",
    "TransformMap",
    "default_transform_maps",
]
