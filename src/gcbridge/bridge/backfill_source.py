"""The library's back-filler for the configured Genesys Cloud org: the service's first OAuth client, its own
token manager and session (so back-fill's REST calls never wait behind the notification client's), and the
``[backfill]`` limits."""

from __future__ import annotations

from typing import Any

from gcbridge.bridge.backfill_runner import Filler
from gcbridge.bridge.config import BridgeConfig
from gcbridge.secrets import Secret

__all__ = ["build_backfiller"]


def build_backfiller(config: BridgeConfig) -> Filler:
    """A ``gcbridge.genesys.Backfiller`` for ``config`` (call inside a running event loop)."""
    import gcbridge.genesys as genesys

    library: Any = genesys
    g, b = config.genesys, config.backfill
    options = library.BackfillOptions(
        margin=b.margin, page_size=b.page_size, max_requests_per_minute=b.max_requests_per_minute
    )
    filler: Filler = library.Backfiller.from_credentials(
        client_id=g.client_id,
        client_secret=Secret(g.secret().get_secret_value()),
        region=g.region,
        base_url=g.base_url,
        options=options,
    )
    return filler
