"""One ``except GenesysError`` catches every error the library raises for a Genesys-side or usage problem,
and the older bases (ValueError, RuntimeError) still catch what they caught before."""

from __future__ import annotations

import inspect

import pytest

import gcbridge.genesys as genesys
from gcbridge.core.topics import TopicPlanner, normalise_topics
from gcbridge.genesys import (
    BackoffPolicy,
    ClientClosedError,
    ClientNotStartedError,
    ClientOptions,
    GenesysError,
    GenesysUsageError,
    InvalidTopicError,
    NotificationClient,
    StartTimeoutError,
    SubscriptionRejectedError,
    TopicCapacityError,
    resolve_region,
)
from gcbridge.genesys.regions import hosts_for_base_url


def test_every_exported_exception_derives_from_genesys_error() -> None:
    exported = [
        obj
        for name in genesys.__all__
        if inspect.isclass(obj := getattr(genesys, name)) and issubclass(obj, BaseException)
    ]
    assert len(exported) >= 12
    assert [e.__name__ for e in exported if not issubclass(e, GenesysError)] == []


@pytest.mark.parametrize(
    ("error", "old_base"),
    [
        (InvalidTopicError, ValueError),
        (GenesysUsageError, ValueError),
        (TopicCapacityError, RuntimeError),
        (ClientClosedError, RuntimeError),
        (ClientNotStartedError, RuntimeError),
        (StartTimeoutError, TimeoutError),
    ],
)
def test_the_old_bases_still_catch(error: type[Exception], old_base: type[Exception]) -> None:
    assert issubclass(error, old_base)
    assert issubclass(error, GenesysError)


def test_usage_problems_raise_genesys_usage_errors() -> None:
    with pytest.raises(GenesysUsageError, match="start_timeout"):
        ClientOptions(start_timeout=0)
    with pytest.raises(GenesysUsageError, match="channel_budget"):
        ClientOptions(channel_budget=21)
    with pytest.raises(GenesysUsageError, match=r"BackoffPolicy\.initial"):
        ClientOptions(backoff=BackoffPolicy(initial=0))
    with pytest.raises(GenesysUsageError, match="unknown Genesys Cloud region"):
        resolve_region("mars_1")
    with pytest.raises(GenesysUsageError, match="base URL"):
        hosts_for_base_url("not a url")
    with pytest.raises(GenesysUsageError, match="exactly one of region"):
        NotificationClient(client_id="c", client_secret="s")
    with pytest.raises(GenesysError, match="implicitly"):
        normalise_topics(["v2.system.socket_closing"])
    with pytest.raises(GenesysError, match="do not fit"):
        TopicPlanner(max_shards=1, max_topics_per_shard=1, combine=False).add(["v2.a.b", "v2.a.c"])


async def test_using_a_client_before_start_or_after_close_is_a_genesys_error() -> None:
    client = NotificationClient(base_url="http://127.0.0.1:9", client_id="c", client_secret="s")
    with pytest.raises(ClientNotStartedError, match="start the client first"):
        await client.subscribe(["v2.users.u1.presence"])
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.subscribe(["v2.users.u1.presence"])


def test_subscription_rejected_and_start_timeout_messages() -> None:
    rejected = SubscriptionRejectedError({"v2.users.u1.presence": "missing presence:view"})
    assert "missing presence:view" in str(rejected)
    timeout = StartTimeoutError("http://127.0.0.1:9/oauth/token", 2.5, "ClientConnectorError: refused")
    assert str(timeout).startswith(
        "could not start: no token from http://127.0.0.1:9/oauth/token within 2.5 s"
    )
    assert "last failure: ClientConnectorError: refused" in str(timeout)
    assert "no answer" in str(StartTimeoutError("http://x/oauth/token", 1, ""))
