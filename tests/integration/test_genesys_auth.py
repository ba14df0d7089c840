"""TokenManager against the Genesys simulator (and a tiny stub where the simulator has no such fault)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from gcbridge.core.token import TokenPolicy, TokenState
from gcbridge.genesys.auth import AccessToken, TokenManager
from gcbridge.genesys.errors import InvalidClientError, TokenManagerClosedError, TokenUnavailableError
from gcbridge.genesys.regions import hosts_for_base_url
from gcbridge.genesys.rest import new_session
from gcbridge.secrets import Secret
from gcbridge.sim.genesys import GenesysSim, SimConfig
from tests.library_logs import capture_logs

SimFactory = Callable[..., Awaitable[tuple[GenesysSim, str]]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    started: list[GenesysSim] = []

    async def make(**config: object) -> tuple[GenesysSim, str]:
        sim = GenesysSim(SimConfig(**config))  # type: ignore[arg-type]
        base_url = await sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim, base_url

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s


def manager(
    session: aiohttp.ClientSession,
    sim: GenesysSim,
    base_url: str,
    *,
    secret: str | None = None,
    client_id: str | None = None,
) -> TokenManager:
    return TokenManager(
        session,
        hosts_for_base_url(base_url).token_url,
        client_id if client_id is not None else sim.config.client_id,
        Secret(secret if secret is not None else sim.config.client_secret),
    )


async def wait_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {within} s")


def secret_free(text: str, *secrets: str) -> bool:
    return not any(s and s in text for s in secrets)


async def test_concurrent_first_gets_cost_one_token_request(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim()
    tokens = manager(session, sim, base_url)
    got = await asyncio.gather(*(tokens.get() for _ in range(200)))
    assert {t.generation for t in got} == {1}
    assert sim.token_requests == 1
    assert tokens.stats.token_requests == 1
    await tokens.aclose()


async def test_proactive_refresh_before_expiry_announces_each_token(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim(token_ttl=3.0)  # refresh at half the lifetime: 1.5 s
    tokens = manager(session, sim, base_url)
    seen: list[AccessToken] = []
    tokens.on_token(seen.append)
    subscription = tokens.subscribe()
    await tokens.start()
    first = await asyncio.wait_for(anext(subscription), 10)
    second = await asyncio.wait_for(anext(subscription), 10)
    assert (first.generation, second.generation) == (1, 2)
    # the refresh happened while the first token was still valid (before its expiry, not after a 401)
    assert second.issued_at < first.expires_at
    assert tokens.stats.refreshes >= 1
    assert tokens.stats.invalidations == 0
    assert [t.generation for t in seen][:2] == [1, 2]
    await tokens.aclose()

    async def drain() -> list[AccessToken]:
        return [t async for t in subscription]

    # closing ends the subscription (at most a token published meanwhile is still handed out)
    rest = await asyncio.wait_for(drain(), 10)
    assert len(rest) <= 1


async def test_get_after_aclose_raises(make_sim: SimFactory, session: aiohttp.ClientSession) -> None:
    sim, base_url = await make_sim()
    tokens = manager(session, sim, base_url)
    await tokens.get()
    await tokens.aclose()
    with pytest.raises(TokenManagerClosedError):
        await tokens.get()


@pytest.mark.parametrize(
    ("wrong", "description", "status"),
    [
        ("secret", "authentication failed", 401),
        ("client", "client not found", 401),
        ("secret", "authentication failed", 400),  # the real status is not documented (spec 1.4)
    ],
)
async def test_invalid_client_is_fatal_and_leaks_nothing(
    make_sim: SimFactory, session: aiohttp.ClientSession, wrong: str, description: str, status: int
) -> None:
    sim, base_url = await make_sim(invalid_client_status=status)
    bad_secret = "wrong-secret-value-123"
    if wrong == "secret":
        tokens = manager(session, sim, base_url, secret=bad_secret)
    else:
        tokens = manager(session, sim, base_url, client_id="nobody", secret=bad_secret)
    subscription = tokens.subscribe()
    with capture_logs() as logs:
        with pytest.raises(InvalidClientError) as info:
            await tokens.get()
        # FATAL is absorbing: later calls fail at once, without another request
        with pytest.raises(InvalidClientError):
            await tokens.get()
        with pytest.raises(InvalidClientError):
            await anext(subscription)
    error = info.value
    assert tokens.state is TokenState.FATAL
    assert tokens.stats.token_requests == 1
    assert description in str(error)
    assert error.status == status
    for needed in ("wrong client secret", "wrong region", "deleted"):
        assert needed in str(error)
    for text in (str(error), repr(error), repr(tokens), repr(logs)):
        assert secret_free(text, bad_secret, sim.config.client_secret)
    assert any(entry["log_level"] == "error" for entry in logs)
    await tokens.aclose()


async def test_token_endpoint_429_retry_after_is_honoured(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim()
    tokens = manager(session, sim, base_url)
    sim.fail_next_token(1, status=429, retry_after=1.0)
    loop = asyncio.get_running_loop()
    asked_at = loop.time()
    token = await asyncio.wait_for(tokens.get(), 30)
    # the second request waited at least Retry-After (a lower bound: load can only make it later)
    assert token.issued_at - asked_at >= 1.0
    assert tokens.stats.token_requests == 2
    assert tokens.stats.failures == 1
    assert sim.token_requests == 1
    await tokens.aclose()


async def test_token_endpoint_5xx_backs_off_and_recovers(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim()
    tokens = manager(session, sim, base_url)
    sim.fail_next_token(2, status=503)
    token = await asyncio.wait_for(tokens.get(), 30)
    assert token.generation == 1
    assert tokens.stats.failures == 2
    assert tokens.stats.token_requests == 3
    assert tokens.last_failure == ""


async def test_get_with_max_wait_reports_the_last_failure(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim()
    tokens = manager(session, sim, base_url)
    sim.fail_next_token(100, status=503)
    await tokens.start()
    await wait_until(lambda: tokens.stats.failures >= 1)
    with pytest.raises(TokenUnavailableError, match="HTTP 503"):
        await tokens.get(max_wait=0.1)
    sim.clear_faults()
    await tokens.aclose()


async def test_invalidate_is_compare_and_invalidate(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim()
    tokens = manager(session, sim, base_url)
    first = await tokens.get()
    for _ in range(50):
        tokens.invalidate(first)
    second = await tokens.get()
    assert second.generation == 2
    tokens.invalidate(first)  # a late 401 of the old token: no effect
    assert await tokens.get() == second
    assert sim.token_requests == 2
    assert tokens.stats.invalidations == 1
    await tokens.aclose()


async def test_nothing_secret_in_logs_or_reprs(make_sim: SimFactory, session: aiohttp.ClientSession) -> None:
    sim, base_url = await make_sim(token_ttl=2.0)
    tokens = manager(session, sim, base_url)
    with capture_logs() as logs:
        await tokens.start()
        token = await tokens.get()
        sim.fail_next_token(1, status=503)
        tokens.invalidate(token)
        newer = await asyncio.wait_for(tokens.get(), 30)
        await tokens.aclose()
    values = [token.value.reveal(), newer.value.reveal(), sim.config.client_secret]
    assert len(logs) >= 3
    for text in (
        repr(logs),
        repr(token),
        str(token),
        repr(tokens),
        repr(tokens.stats),
        repr(tokens.subscribe()),
    ):
        assert secret_free(text, *values), text


async def test_malformed_token_answer_is_retried_not_fatal(session: aiohttp.ClientSession) -> None:
    """The simulator always answers well-formed JSON; a stub checks a broken 200 and a missing expires_in."""
    answers = [
        web.Response(text="<html>proxy error</html>", status=200),
        web.json_response({"access_token": "tok-ABC", "token_type": "bearer"}),
    ]

    async def token(request: web.Request) -> web.Response:
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        tokens = TokenManager(session, f"http://127.0.0.1:{port}/oauth/token", "cid", "s3cret")
        got = await asyncio.wait_for(tokens.get(), 30)
        assert got.value.reveal() == "tok-ABC"
        assert got.expires_at - got.issued_at == pytest.approx(300.0)  # default_expires_in
        assert tokens.stats.failures == 1
        await tokens.aclose()
    finally:
        await runner.cleanup()


async def test_rate_limited_refresh_keeps_serving_the_old_token(
    make_sim: SimFactory, session: aiohttp.ClientSession
) -> None:
    sim, base_url = await make_sim(token_ttl=30.0, token_rate_limit_per_min=1)
    tokens = TokenManager(
        session,
        hosts_for_base_url(base_url).token_url,
        sim.config.client_id,
        Secret(sim.config.client_secret),
        policy=TokenPolicy(refresh_ratio=0.05, min_refresh_lead=0.0),  # refresh after 1.5 s of 30
    )
    await tokens.start()
    first = await tokens.get()
    await wait_until(lambda: tokens.stats.failures >= 1)  # the refresh met the token-rate limit (429)
    now = asyncio.get_running_loop().time()
    assert tokens.state is TokenState.VALID
    assert await tokens.get() == first
    retry_at = tokens.retry_at
    assert retry_at is not None
    assert retry_at - now > 5  # Retry-After (the rest of the minute window), not the 1 s backoff
    assert sim.token_requests == 1
    await tokens.aclose()
