"""Genesys Cloud regions and their hosts (API, login, streaming).

The table follows ``PureCloudPlatformClientV2/purecloud_region_hosts.py`` (SDK 269); the login host is the API
host with ``api.`` replaced by ``login.`` (as the SDK does), the streaming host ``streaming.<domain>``.
A wrong region is the most common cause of ``invalid_client`` at the token endpoint.

Examples::

    resolve_region("eu_west_1").token_url        # 'https://login.mypurecloud.ie/oauth/token'
    resolve_region("mypurecloud.ie").api_base    # 'https://api.mypurecloud.ie'
    hosts_for_base_url("http://127.0.0.1:8080")  # the simulator: one base URL for everything
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from gcbridge.genesys.errors import GenesysUsageError

__all__ = ["REGION_DOMAINS", "RegionHosts", "hosts_for_base_url", "resolve_region"]

#: region enum name (as in the SDK) -> domain
REGION_DOMAINS: Final[dict[str, str]] = {
    "us_east_1": "mypurecloud.com",
    "eu_west_1": "mypurecloud.ie",
    "ap_southeast_2": "mypurecloud.com.au",
    "ap_northeast_1": "mypurecloud.jp",
    "eu_central_1": "mypurecloud.de",
    "us_west_2": "usw2.pure.cloud",
    "ca_central_1": "cac1.pure.cloud",
    "ap_northeast_2": "apne2.pure.cloud",
    "eu_west_2": "euw2.pure.cloud",
    "ap_south_1": "aps1.pure.cloud",
    "us_east_2": "use2.us-gov-pure.cloud",
    "sa_east_1": "sae1.pure.cloud",
    "me_central_1": "mec1.pure.cloud",
    "ap_northeast_3": "apne3.pure.cloud",
    "eu_central_2": "euc2.pure.cloud",
    "mx_central_1": "mxc1.pure.cloud",
    "ap_southeast_1": "apse1.pure.cloud",
    "eusc_de_east_1": "edee1.eusc-pure.cloud",
}

_HOST_PREFIXES: Final = ("api.", "login.", "streaming.")


@dataclass(frozen=True, slots=True)
class RegionHosts:
    """Where to talk to one Genesys Cloud region (or the simulator)."""

    api_base: str  # e.g. "https://api.mypurecloud.ie" (no trailing slash)
    login_base: str  # e.g. "https://login.mypurecloud.ie"
    streaming_host: str  # e.g. "streaming.mypurecloud.ie"; the socket URL itself comes from connectUri
    name: str = "custom"  # the region enum name, or "custom" for a base-URL override

    @property
    def token_url(self) -> str:
        return f"{self.login_base}/oauth/token"


def resolve_region(region: str) -> RegionHosts:
    """Hosts of a region given as enum name (``eu_west_1``, ``EU-WEST-1``), domain (``mypurecloud.ie``) or a
    host (``api.mypurecloud.ie``, ``login.mypurecloud.ie``, with or without ``https://``).

    Raises :class:`ValueError` listing the valid names for anything else. For the simulator or a proxy use
    :func:`hosts_for_base_url`.
    """
    text = region.strip().lower()
    if "://" in text:
        text = urlsplit(text).hostname or ""
    text = text.rstrip("/.")
    key = text.replace("-", "_")
    if key in REGION_DOMAINS:
        return _hosts(key, REGION_DOMAINS[key])
    domain = text
    for prefix in _HOST_PREFIXES:
        if domain.startswith(prefix):
            domain = domain[len(prefix) :]
            break
    for name, known in REGION_DOMAINS.items():
        if domain == known:
            return _hosts(name, known)
    valid = ", ".join(f"{name} ({domain})" for name, domain in REGION_DOMAINS.items())
    raise GenesysUsageError(f"unknown Genesys Cloud region {region!r}; use a region name or domain: {valid}")


def hosts_for_base_url(base_url: str, *, name: str = "custom") -> RegionHosts:
    """One base URL for the API and the token endpoint (the simulator, or a test proxy)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GenesysUsageError(f"base URL must look like 'http://host:port', got {base_url!r}")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return RegionHosts(name=name, api_base=base, login_base=base, streaming_host=parts.netloc)


def _hosts(name: str, domain: str) -> RegionHosts:
    return RegionHosts(
        name=name,
        api_base=f"https://api.{domain}",
        login_base=f"https://login.{domain}",
        streaming_host=f"streaming.{domain}",
    )
