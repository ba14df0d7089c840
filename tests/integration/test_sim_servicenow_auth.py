"""Authentication in the ServiceNow simulator: Basic, /oauth_token.do grants, bearer tokens."""

from __future__ import annotations

import pytest

from .sn_fixtures import FakeClock, SnClient, basic, running_sim, sim_config

NOT_AUTHENTICATED = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}
ACCESS_DENIED = {"error_description": "access_denied", "error": "server_error"}
PASSWORD_FORM = {
    "grant_type": "password",
    "client_id": "cid",
    "client_secret": "csecret",
    "username": "bridge",
    "password": "bridge-pass",
}


async def token(client: SnClient, form: dict[str, str]) -> tuple[int, object]:
    answer = await client.call("POST", "/oauth_token.do", data=form, auth={})
    return answer.status, answer.body


@pytest.mark.parametrize(
    "headers",
    [{}, basic("admin", "wrong"), {"Authorization": "Basic !!!"}, {"Authorization": "Bearer made-up"}],
    ids=["none", "wrong-password", "garbage", "unknown-bearer"],
)
async def test_bad_credentials_get_the_standard_401(headers: dict[str, str]) -> None:
    async with running_sim() as (sim, client):
        answer = await client.call("GET", "/api/now/table/incident", auth=headers)
        assert (answer.status, answer.body) == (401, NOT_AUTHENTICATED)
        assert sim.requests[-1].user is None


async def test_password_grant_and_bearer_use() -> None:
    async with running_sim() as (sim, client):
        status, body = await token(client, PASSWORD_FORM)
        assert status == 200
        assert isinstance(body, dict)
        assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 1799, "useraccount")
        assert body["refresh_token"]
        bearer = {"Authorization": f"Bearer {body['access_token']}"}
        answer = await client.call("POST", "/api/now/table/incident", json={}, auth=bearer)
        assert answer.status == 201
        assert sim.records("incident")[0]["sys_created_by"] == "bridge"
        again_status, again = await token(client, PASSWORD_FORM)
        assert again_status == 200
        assert isinstance(again, dict)
        assert again["access_token"] == body["access_token"]  # re-issued within its lifetime


async def test_token_endpoint_is_form_only() -> None:
    async with running_sim() as (_, client):
        answer = await client.call("POST", "/oauth_token.do", json=PASSWORD_FORM, auth={})
        assert (answer.status, answer.body) == (401, ACCESS_DENIED)


@pytest.mark.parametrize(
    "change",
    [
        {"client_secret": "wrong"},
        {"password": "wrong"},
        {"grant_type": "client_credentials"},
        {"grant_type": ""},
    ],
)
async def test_token_failures_get_the_generic_body(change: dict[str, str]) -> None:
    async with running_sim() as (_, client):
        assert await token(client, {**PASSWORD_FORM, **change}) == (401, ACCESS_DENIED)


async def test_expired_token_is_rejected_and_refresh_gives_a_new_one() -> None:
    clock = FakeClock()
    async with running_sim(sim_config(clock=clock)) as (_, client):
        _, body = await token(client, PASSWORD_FORM)
        assert isinstance(body, dict)
        clock.advance(1800)
        expired = await client.call(
            "GET", "/api/now/table/incident", auth={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert (expired.status, expired.body) == (401, NOT_AUTHENTICATED)
        refresh_form = {
            "grant_type": "refresh_token",
            "client_id": "cid",
            "client_secret": "csecret",
            "refresh_token": body["refresh_token"],
        }
        status, refreshed = await token(client, refresh_form)
        assert status == 200
        assert isinstance(refreshed, dict)
        assert refreshed["access_token"] != body["access_token"]
        assert "refresh_token" not in refreshed
        fresh = await client.call(
            "GET", "/api/now/table/incident", auth={"Authorization": f"Bearer {refreshed['access_token']}"}
        )
        assert fresh.status == 200


async def test_client_credentials_grant_behind_its_switch() -> None:
    form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
    async with running_sim(sim_config(oauth_client_users={"cid": "bridge"})) as (sim, client):
        assert await token(client, form) == (401, ACCESS_DENIED)
        sim.set_client_credentials(True)
        status, body = await token(client, form)
        assert status == 200
        assert isinstance(body, dict)
        assert "refresh_token" not in body
        answer = await client.call(
            "POST",
            "/api/now/table/incident",
            json={},
            auth={"Authorization": f"Bearer {body['access_token']}"},
        )
        assert answer.status == 201
        assert sim.requests[-1].user == "bridge"


async def test_revoked_tokens_get_401() -> None:
    async with running_sim() as (sim, client):
        _, body = await token(client, PASSWORD_FORM)
        assert isinstance(body, dict)
        sim.revoke_tokens()
        answer = await client.call(
            "GET", "/api/now/table/incident", auth={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert answer.status == 401
