"""The library's back-filler for the configured Genesys Cloud org: the service's first OAuth client, its own
token manager and session (so back-fill's REST calls never wait behind the notification client's), and the
``[backfill]`` limits."""

from __future__ import annotations

from gcbridge.bridge.config import BridgeConfig
from gcbridge.genesys import Backfiller, BackfillOptions
from gcbridge.secrets import Secret

__all__ = ["backfill_options", "build_backfiller"]


def backfill_options(config: BridgeConfig) -> BackfillOptions:
    b = config.backfill
    return BackfillOptions(
        margin=b.margin, page_size=b.page_size, max_requests_per_minute=b.max_requests_per_minute
    )


def build_backfiller(config: BridgeConfig) -> Backfiller:
    """A back-filler for ``config`` (call inside a running event loop; ``aclose`` it at the end)."""
    g = config.genesys
    return Backfiller.from_credentials(
        client_id=g.client_id,
        client_secret=Secret(g.secret().get_secret_value()),
        region=g.region,
        base_url=g.base_url,
        options=backfill_options(config),
    )
