from __future__ import annotations

import pytest

from gcbridge.genesys import ClientOptions, NotificationClient


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ping_interval": 0}, "ping_interval"),
        ({"heartbeat_timeout": -1}, "heartbeat_timeout"),
        ({"channel_budget": 21}, "channel_budget"),
        ({"rotation_headroom": 15}, "rotation_headroom"),
        ({"max_topics_per_channel": 1001}, "max_topics_per_channel"),
        ({"rotation_lead_fraction": 1.0}, "rotation_lead_fraction"),
    ],
)
def test_bad_options_are_refused_by_name(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ClientOptions(**kwargs)  # type: ignore[arg-type]


def test_defaults_detect_a_stall_within_thirty_seconds() -> None:
    o = ClientOptions()
    assert min(o.heartbeat_timeout, o.ping_interval + o.pong_timeout) == 30.0
    assert o.channel_budget - o.rotation_headroom == 12


def test_region_or_base_url_but_not_both() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        NotificationClient(client_id="a", client_secret="b")
    with pytest.raises(ValueError, match="exactly one"):
        NotificationClient(client_id="a", client_secret="b", region="eu_west_1", base_url="http://x:1")
    client = NotificationClient(client_id="a", client_secret="s3cret", region="mypurecloud.ie")
    assert client.hosts.api_base == "https://api.mypurecloud.ie"
    assert "s3cret" not in repr(client._creds)
