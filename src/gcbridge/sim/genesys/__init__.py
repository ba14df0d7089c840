"""A local Genesys Cloud org for tests and demos: OAuth, the Notification API, its WebSockets, and faults.

>>> sim = GenesysSim(SimConfig(time_scale=3600))      # doctest: +SKIP
>>> base_url = await sim.start()                      # doctest: +SKIP

See ``docs/simulator-genesys.md`` for the options and the fault controls.
"""

from __future__ import annotations

from gcbridge.sim.genesys.channels import Channel, EndReason
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.ledger import Delivery, PublishedRecord
from gcbridge.sim.genesys.org import OrgSettings
from gcbridge.sim.genesys.sim import GenesysSim, TokenIssued

__all__ = [
    "Channel",
    "Delivery",
    "EndReason",
    "GenesysSim",
    "OrgSettings",
    "PublishedRecord",
    "SimConfig",
    "TokenIssued",
]
