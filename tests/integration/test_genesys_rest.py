"""NotificationsApi against the Genesys simulator: channels, subscriptions, 401 renewal, 429/5xx retries."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.errors import GenesysApiError, GenesysTransportError, TokenUnavailableError
from gcbridge.genesys.regions import hosts_for_base_url
from gcbridge.genesys.rest import NotificationsApi, RestPolicy, new_session
from gcbridge.secrets import Secret
from gcbridge.sim.genesys import GenesysSim
from tests.library_logs import capture_logs

SimFactory = Callable[..., Awaitable[GenesysSim]]
USER = "v2.users.6f1c4b8e-1111-4222-8333-444455556666"


class RecordingSleep:
    """Records the delays the client asks for and yields without waiting (no test waits for a backoff)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session(limit=200) as s:
        yield s


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


async def api_for(
    sim: GenesysSim,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
    *,
    api_base: str | None = None,
    policy: RestPolicy | None = None,
) -> NotificationsApi:
    hosts = hosts_for_base_url(sim.base_url)
    tokens = TokenManager(session, hosts.token_url, sim.config.client_id, Secret(sim.config.client_secret))
    return NotificationsApi(session, api_base or hosts.api_base, tokens, policy=policy, sleep=sleep)


async def test_channel_and_subscription_round_trip(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    sim.forbid_topic("v2.analytics.*", ["analytics:queueObservation:view"])
    api = await api_for(sim, session, sleep)

    channel = await api.create_channel()
    assert channel.connect_uri.endswith(f"/channels/{channel.id}")
    assert channel.token.generation == 1
    assert channel.token.value.reveal() not in repr(channel)
    assert sim.config.client_secret not in repr(api) + repr(api.tokens)
    assert channel.expires == pytest.approx(time.time() + 86_400, abs=120)
    assert await api.channel_exists(channel.id)
    assert not await api.channel_exists("streaming-0-doesnotexist0000000000000000")
    assert [c.id for c in await api.list_channels()] == [channel.id]

    forbidden = "v2.analytics.queues.q1.observations"
    result = await api.put_subscriptions(channel.id, [f"{USER}.presence", forbidden])
    assert result.permitted == (f"{USER}.presence",)
    assert set(result.rejected) == {forbidden}
    assert "analytics:queueObservation:view" in result.rejected[forbidden]

    added = await api.post_subscriptions(channel.id, [f"{USER}.routingStatus"])
    assert set(added.permitted) == {f"{USER}.presence", f"{USER}.routingStatus"}
    assert set(await api.get_subscriptions(channel.id)) == set(added.permitted)

    await api.delete_subscriptions(channel.id)
    assert await api.get_subscriptions(channel.id) == []
    assert sleep.delays == []
    await api.tokens.aclose()


async def test_subscribe_without_ignore_errors_fails_the_batch(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    sim.forbid_topic("v2.analytics.*")
    api = await api_for(sim, session, sleep)
    channel = await api.create_channel()
    with pytest.raises(GenesysApiError) as info:
        await api.put_subscriptions(
            channel.id, [f"{USER}.presence", "v2.analytics.queues.q1.observations"], ignore_errors=False
        )
    assert 400 <= info.value.status < 500
    assert info.value.code
    assert info.value.correlation_id
    assert await api.get_subscriptions(channel.id) == []
    assert sleep.delays == []  # a 4xx is not retried
    await api.tokens.aclose()


async def test_burst_of_1000_concurrent_401s_costs_one_token_request(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory(api_rate_limit_per_min=None)
    api = await api_for(sim, session, sleep)
    first = await api.tokens.get()
    assert sim.token_requests == 1
    assert sim.revoke_token() == 1
    with capture_logs() as logs:
        results = await asyncio.wait_for(asyncio.gather(*(api.list_channels() for _ in range(1000))), 120)
    assert len(results) == 1000
    assert sim.token_requests == 2
    assert api.tokens.stats.token_requests == 2
    assert api.tokens.stats.invalidations == 1
    current = await api.tokens.get()
    assert current.generation == 2
    renewals = [e for e in logs if "retrying once with a fresh one" in e["event"]]
    assert len(renewals) == 1000  # every call saw its 401 ...
    assert sleep.delays == []  # ... and none of them backed off
    text = repr(logs)
    assert first.value.reveal() not in text
    assert current.value.reveal() not in text
    await api.tokens.aclose()


async def test_rest_429_honours_retry_after(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    api = await api_for(sim, session, sleep)
    channel = await api.create_channel()
    sim.fail_next_rest(2, status=429, retry_after=7)
    assert await api.channel_exists(channel.id)
    assert len(sleep.delays) == 2
    assert all(d >= 7 for d in sleep.delays)
    await api.tokens.aclose()


async def test_rest_503_is_retried_with_growing_capped_backoff(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    api = await api_for(sim, session, sleep, policy=RestPolicy(max_attempts=5))
    sim.fail_next_rest(4, status=503)
    channel = await api.create_channel()
    assert channel.id
    assert len(sleep.delays) == 4
    ceilings = [0.5, 1.0, 2.0, 4.0]
    assert all(0 <= d <= c for d, c in zip(sleep.delays, ceilings, strict=True))
    await api.tokens.aclose()


async def test_retries_are_bounded_and_the_error_is_specific(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    api = await api_for(sim, session, sleep, policy=RestPolicy(max_attempts=3))
    token = await api.tokens.get()
    sim.fail_next_rest(10, status=503)
    with pytest.raises(GenesysApiError) as info:
        await api.list_channels()
    error = info.value
    assert error.status == 503
    assert error.correlation_id
    assert len(sleep.delays) == 2
    for text in (str(error), repr(error)):
        assert token.value.reveal() not in text
    sim.clear_faults()
    await api.tokens.aclose()


async def test_not_found_is_raised_with_code_and_correlation_id(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    api = await api_for(sim, session, sleep)
    with pytest.raises(GenesysApiError) as info:
        await api.get_subscriptions("streaming-0-nosuchchannel00000000000000")
    assert info.value.status == 404
    assert info.value.code == "not.found"
    assert info.value.correlation_id
    assert "streaming-0-nosuchchannel" in str(info.value)
    assert sleep.delays == []
    await api.tokens.aclose()


async def test_connection_errors_are_retried_then_reported(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    api = await api_for(sim, session, sleep, api_base=dead, policy=RestPolicy(max_attempts=4))
    with pytest.raises(GenesysTransportError, match="after 4 attempts"):
        await api.create_channel()
    assert len(sleep.delays) == 3
    await api.tokens.aclose()


async def test_a_session_with_cookies_is_warned_about(
    genesys_sim_factory: SimFactory, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    async with aiohttp.ClientSession() as cookie_session:
        with capture_logs() as logs:
            api = await api_for(sim, cookie_session, sleep)
        assert any("DummyCookieJar" in e["event"] for e in logs)
        await api.tokens.aclose()
    assert "Secret" not in repr(api)


async def test_a_second_401_is_raised_not_looped(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    api = await api_for(sim, session, sleep)
    await api.tokens.get()
    sim.fail_next_rest(2, status=401)  # the fresh token is rejected too
    with pytest.raises(GenesysApiError) as info:
        await api.list_channels()
    assert info.value.status == 401
    assert info.value.code == "bad.credentials"
    assert sim.token_requests == 2  # one renewal, then the error
    assert sleep.delays == []
    assert len(await api.list_channels()) == 0  # and the API works again once the server does
    await api.tokens.aclose()


async def test_token_wait_bounds_a_call_while_the_token_endpoint_fails(
    genesys_sim_factory: SimFactory, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    sim = await genesys_sim_factory()
    api = await api_for(sim, session, sleep, policy=RestPolicy(token_wait=0.2))
    sim.fail_next_token(1000, status=503)
    with pytest.raises(TokenUnavailableError):
        await api.create_channel()
    assert sim.channels == []
    sim.clear_faults()
    await api.tokens.aclose()
