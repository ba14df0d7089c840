"""ServiceNow's own Python client, ``pysnc``, against the simulator: an independent fidelity check.

pysnc refuses ``http://`` instance URLs, so the simulator serves HTTPS here with a throw-away self-signed
certificate for 127.0.0.1 that the test trusts through ``REQUESTS_CA_BUNDLE`` (pysnc is built on requests).
pysnc is synchronous: the simulator runs on its own event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pysnc
import pytest
from pysnc.exceptions import AuthenticationException

from gcbridge.sim.servicenow import ServiceNowSim, SnSimConfig

from .sn_fixtures import sim_config

pytestmark = pytest.mark.sdk

T = TypeVar("T")


class ThreadedSim:
    """The simulator on a private event loop in a daemon thread, for synchronous clients."""

    def __init__(self, sim: ServiceNowSim) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sn-sim", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [
            str(shutil.which("openssl")),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class FakeClock:
    """The simulator's clock: token lifetimes pass when the test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def _serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: SnSimConfig
) -> Iterator[tuple[ThreadedSim, str]]:
    if shutil.which("openssl") is None:  # pragma: no cover - every CI image here has openssl
        pytest.fail("the pysnc fidelity test needs the openssl command to make a certificate")
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(cert))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    threaded = ThreadedSim(ServiceNowSim(config))
    base_url = threaded.run(threaded.sim.start("127.0.0.1", 0, ssl_context=context))
    try:
        yield threaded, base_url
    finally:
        threaded.close()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ThreadedSim, str]]:
    """(threaded simulator, https base URL) with requests trusting the simulator's certificate."""
    with _serving(tmp_path, monkeypatch, sim_config()) as serving:
        yield serving


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served_on_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> Iterator[tuple[ThreadedSim, str]]:
    """As ``served``, with the simulator on ``clock``."""
    with _serving(tmp_path, monkeypatch, sim_config(clock=clock)) as serving:
        yield serving


def test_create_query_update_delete(served: tuple[ThreadedSim, str]) -> None:
    threaded, base_url = served
    sim = threaded.sim
    client = pysnc.ServiceNowClient(base_url, ("admin", "admin-pass"))

    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "Caller reports dropped call"
    gr.correlation_id = "conv-42"
    sys_id = str(gr.insert())
    assert [r["sys_id"] for r in sim.records("incident")] == [sys_id]
    assert gr.number.get_value() == "INC0010001"

    found = client.GlideRecord("incident")
    found.add_query("correlation_id", "conv-42")
    found.query()
    assert found.get_row_count() == 1
    assert found.next()
    assert found.get_value("short_description") == "Caller reports dropped call"
    assert found.get_display_value("number") == "INC0010001"

    found.state = "2"
    found.update()
    assert sim.records("incident")[0]["state"] == "2"
    assert sim.records("incident")[0]["sys_mod_count"] == "1"

    one = client.GlideRecord("incident")
    assert one.get(sys_id)
    assert one.get_value("state") == "2"
    assert one.delete()
    assert sim.records("incident") == []
    assert not client.GlideRecord("incident").get(sys_id)  # 404 -> False


def test_paged_iteration_reads_every_record(served: tuple[ThreadedSim, str]) -> None:
    threaded, base_url = served
    for i in range(25):
        threaded.sim.state.store.insert("interaction", {"correlation_id": f"c-{i:02d}"}, "admin", 0.0)
    client = pysnc.ServiceNowClient(base_url, ("admin", "admin-pass"))
    gr = client.GlideRecord("interaction", batch_size=10)
    gr.order_by("correlation_id")
    gr.query()
    seen = [record.get_value("correlation_id") for record in gr]
    assert seen == [f"c-{i:02d}" for i in range(25)]
    list_calls = [r for r in threaded.sim.requests if r.path == "/api/now/table/interaction"]
    assert len(list_calls) == 3  # 10 + 10 + 5, paged by sysparm_offset
    assert all("sysparm_suppress_pagination_header=true" in r.query for r in list_calls)


def test_query_with_no_match_and_a_misspelled_field(served: tuple[ThreadedSim, str]) -> None:
    _, base_url = served
    client = pysnc.ServiceNowClient(base_url, ("admin", "admin-pass"))
    for conv in ("a", "b"):
        gr = client.GlideRecord("incident")
        gr.initialize()
        gr.correlation_id = conv
        gr.insert()
    none = client.GlideRecord("incident")
    none.add_query("correlation_id", "zzz")
    none.query()
    assert none.get_row_count() == 0
    typo = client.GlideRecord("incident")
    typo.add_query("corelation_id", "a")  # ignored by the instance: every row comes back
    typo.query()
    assert typo.get_row_count() == 2


def test_retries_past_injected_503s(served: tuple[ThreadedSim, str]) -> None:
    threaded, base_url = served
    threaded.sim.inject(503, count=2)
    client = pysnc.ServiceNowClient(base_url, ("admin", "admin-pass"))
    gr = client.GlideRecord("incident")
    gr.query()  # pysnc's urllib3 Retry(total=4) re-sends on 503
    assert gr.get_row_count() == 0
    assert [r.status for r in threaded.sim.requests] == [503, 503, 200]


def test_wrong_password_is_an_authentication_error(served: tuple[ThreadedSim, str]) -> None:
    _, base_url = served
    client = pysnc.ServiceNowClient(base_url, ("admin", "wrong"))
    with pytest.raises(AuthenticationException, match="User Not Authenticated"):
        client.GlideRecord("incident").query()


def test_client_credentials_flow(served: tuple[ThreadedSim, str]) -> None:
    threaded, base_url = served
    threaded.sim.set_client_credentials(True)
    client = pysnc.ServiceNowClient(base_url, pysnc.ServiceNowClientCredentialsFlow("cid", "csecret"))
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "via OAuth"
    gr.insert()
    assert threaded.sim.records("incident")[0]["sys_created_by"] == "cid"
    assert [r.path for r in threaded.sim.requests][:2] == ["/oauth_token.do", "/api/now/table/incident"]


def test_password_grant_flow_with_the_client_in_a_basic_header_then_a_refresh(
    served_on_clock: tuple[ThreadedSim, str], clock: FakeClock
) -> None:
    """pysnc's password grant sends the OAuth client's id and secret in an HTTP Basic header (RFC 6749 2.3.1,
    through requests-oauthlib) and refreshes with them in the form: both must work, as on an instance."""
    threaded, base_url = served_on_clock
    client = pysnc.ServiceNowClient(
        base_url, pysnc.ServiceNowPasswordGrantFlow("admin", "admin-pass", "cid", "csecret")
    )
    first_token = client.session.token["access_token"]
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "via the password grant"
    gr.insert()
    assert threaded.sim.records("incident")[0]["sys_created_by"] == "admin"

    # Half an hour later the simulator has expired the access token; pysnc sees that from the token's own
    # expiry (requests-oauthlib's public ``token``, on the wall clock) and refreshes before its next call.
    clock.now += 1800
    client.session.token = {**client.session.token, "expires_at": time.time() - 1}
    found = client.GlideRecord("incident")
    found.query()
    assert found.get_row_count() == 1
    new_token = client.session.token["access_token"]
    assert new_token != first_token
    issuer = threaded.sim.state.issuer
    assert (issuer.user_for(first_token, clock.now), issuer.user_for(new_token, clock.now)) == (None, "admin")
    token_calls = [(r.status, r.user) for r in threaded.sim.requests if r.path == "/oauth_token.do"]
    assert [status for status, _ in token_calls] == [200, 200]  # the password grant, then the refresh
    assert [r.status for r in threaded.sim.requests if r.path != "/oauth_token.do"][-1] == 200


def test_password_grant_flow_with_a_wrong_client_secret_is_denied(served: tuple[ThreadedSim, str]) -> None:
    threaded, base_url = served
    flow = pysnc.ServiceNowPasswordGrantFlow("admin", "admin-pass", "cid", "wrong-secret")
    with pytest.raises(Exception, match="access_denied"):
        pysnc.ServiceNowClient(base_url, flow)
    assert [(r.path, r.status) for r in threaded.sim.requests] == [("/oauth_token.do", 401)]
