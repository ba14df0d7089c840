from __future__ import annotations

import pytest

from gcbridge.genesys.regions import REGION_DOMAINS, RegionHosts, hosts_for_base_url, resolve_region

IRELAND = RegionHosts(
    name="eu_west_1",
    api_base="https://api.mypurecloud.ie",
    login_base="https://login.mypurecloud.ie",
    streaming_host="streaming.mypurecloud.ie",
)


@pytest.mark.parametrize(
    "spelling",
    [
        "eu_west_1",
        "EU-WEST-1",
        "mypurecloud.ie",
        "api.mypurecloud.ie",
        "login.mypurecloud.ie",
        "streaming.mypurecloud.ie",
        "https://api.mypurecloud.ie/",
        " mypurecloud.ie. ",
    ],
)
def test_every_spelling_of_a_region_resolves_to_the_same_hosts(spelling: str) -> None:
    assert resolve_region(spelling) == IRELAND


def test_token_url_is_on_the_login_host() -> None:
    assert resolve_region("us_east_1").token_url == "https://login.mypurecloud.com/oauth/token"
    assert resolve_region("ap_southeast_2").api_base == "https://api.mypurecloud.com.au"
    assert resolve_region("us_east_2").login_base == "https://login.use2.us-gov-pure.cloud"


def test_every_table_entry_round_trips_through_its_domain_and_api_host() -> None:
    for name, domain in REGION_DOMAINS.items():
        assert resolve_region(domain).name == name
        assert resolve_region(f"api.{domain}").name == name
    assert len(REGION_DOMAINS) == 18


@pytest.mark.parametrize("bad", ["eu_west_9", "mypurecloud.fr", "", "api.example.com"])
def test_unknown_region_lists_the_valid_names(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown Genesys Cloud region") as info:
        resolve_region(bad)
    assert "eu_west_1 (mypurecloud.ie)" in str(info.value)
    assert "us_east_1" in str(info.value)


def test_base_url_override_uses_one_host_for_everything() -> None:
    hosts = hosts_for_base_url("http://127.0.0.1:8123/")
    assert hosts.api_base == hosts.login_base == "http://127.0.0.1:8123"
    assert hosts.token_url == "http://127.0.0.1:8123/oauth/token"
    assert hosts.streaming_host == "127.0.0.1:8123"
    with pytest.raises(ValueError, match="base URL"):
        hosts_for_base_url("127.0.0.1:8123")
