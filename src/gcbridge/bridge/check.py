"""``gcbridge check``: try the configuration's credentials and permissions against the real endpoints.

Each step gives a :class:`Verdict` (``ok``, ``warn`` or ``fail``) with a sentence that says what to do. The
Genesys steps: an OAuth token, a notification channel, and a subscription of every configured topic on that
channel with ``ignoreErrors=true`` (rejected topics are listed with their missing permissions); the check
removes its subscriptions again. The ServiceNow steps: authentication, then every target of the mapping
probed the way delivery uses it (see :func:`check_servicenow`). The outbox step: ``[outbox] path`` is usable.
Back-fill's permissions are probed with one harmless request each; a missing one is a warning (only back-fill
needs it).

Mind: if Genesys makes topics exclusive to the newest channel of an OAuth client (spec §2.3a), checking
topics while the service runs with the same OAuth client moves them to the check's channel for a moment;
use ``--skip-topics`` on a live system.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

import aiohttp

from gcbridge import _json
from gcbridge.bridge import backfill_permissions
from gcbridge.bridge.config import BridgeConfig
from gcbridge.bridge.outbox_location import outbox_location_problem
from gcbridge.bridge.status import topic_count
from gcbridge.genesys.regions import RegionHosts, hosts_for_base_url, resolve_region
from gcbridge.outbox.base import Reject, Retry
from gcbridge.secrets import Secret
from gcbridge.servicenow.auth import Authenticator, BasicAuth, OAuthTokens
from gcbridge.servicenow.config import OAuthConfig
from gcbridge.servicenow.rest import Ok, ServiceNowRest, create_session

Level = Literal["ok", "warn", "fail"]
_TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    level: Level
    detail: str


def genesys_hosts(config: BridgeConfig) -> RegionHosts:
    g = config.genesys
    if g.base_url:
        return hosts_for_base_url(g.base_url)
    assert g.region is not None
    return resolve_region(g.region)


async def check_genesys(config: BridgeConfig, *, topics: bool = True) -> list[Verdict]:
    hosts = genesys_hosts(config)
    g = config.genesys
    out: list[Verdict] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=_TIMEOUT) as http:
        credentials = [(g.client_id, g.secret().get_secret_value())]
        credentials += [(c.client_id, c.secret().get_secret_value()) for c in g.extra_credentials]
        for index, (client_id, secret) in enumerate(credentials):
            label = "genesys token" if index == 0 else f"genesys token (extra_credentials[{index - 1}])"
            token, verdict = await _genesys_token(http, hosts, client_id, Secret(secret), label)
            out.append(verdict)
            if token is None or index > 0:
                continue
            channel_id, verdict = await _genesys_channel(http, hosts, token)
            out.append(verdict)
            if channel_id is not None and topics:
                out.append(await _genesys_topics(http, hosts, token, channel_id, g.topics))
            out.append(await _backfill_permissions(http, hosts, token))
    return out


async def _backfill_permissions(http: aiohttp.ClientSession, hosts: RegionHosts, token: Secret) -> Verdict:
    """What back-fill needs (see :mod:`gcbridge.bridge.backfill_permissions`); missing ones are a warning."""
    found = await backfill_permissions.probe(http, hosts.api_base, _bearer(token))
    level, detail = backfill_permissions.verdict(found)
    return Verdict("backfill permissions", level, detail)


async def _genesys_token(
    http: aiohttp.ClientSession, hosts: RegionHosts, client_id: str, secret: Secret, label: str
) -> tuple[Secret | None, Verdict]:
    basic = base64.b64encode(f"{client_id}:{secret.reveal()}".encode()).decode()
    try:
        async with http.post(
            hosts.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ) as r:
            body = await r.read()
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, Verdict(
            label,
            "fail",
            f"no token from {hosts.token_url}: {type(exc).__name__}: {exc}. "
            "Check base_url or region, and that this machine can reach that host",
        )
    data = _safe_json(body)
    if status == 200 and isinstance(data, dict) and data.get("access_token"):
        ttl = data.get("expires_in")
        return Secret(str(data["access_token"])), Verdict(
            label, "ok", f"client {client_id!r} got a token from {hosts.login_base} (expires_in {ttl} s)"
        )
    error = data.get("error") if isinstance(data, dict) else None
    description = data.get("error_description") if isinstance(data, dict) else None
    if error == "invalid_client":
        return None, Verdict(
            label,
            "fail",
            (
                f"invalid_client ({description or 'no description'}) for client {client_id!r} at "
                f"{hosts.login_base}: "
                "check the client secret, and that the region is the org's region"
            ),
        )
    return None, Verdict(label, "fail", f"HTTP {status} from {hosts.token_url}: {error or body[:200]!r}")


async def _genesys_channel(
    http: aiohttp.ClientSession, hosts: RegionHosts, token: Secret
) -> tuple[str | None, Verdict]:
    url = f"{hosts.api_base}/api/v2/notifications/channels"
    try:
        async with http.post(url, data=b"null", headers=_bearer(token)) as r:
            body, status = await r.read(), r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, Verdict("genesys channel", "fail", f"cannot reach {url}: {type(exc).__name__} {exc}")
    data = _safe_json(body)
    if status in (200, 201) and isinstance(data, dict) and data.get("id"):
        return str(data["id"]), Verdict("genesys channel", "ok", f"created channel {data['id']}")
    return None, Verdict(
        "genesys channel", "fail", f"HTTP {status} creating a channel: {_message(data, body)}"
    )


async def _genesys_topics(
    http: aiohttp.ClientSession, hosts: RegionHosts, token: Secret, channel_id: str, topics: Sequence[str]
) -> Verdict:
    url = f"{hosts.api_base}/api/v2/notifications/channels/{channel_id}/subscriptions"
    try:
        async with http.post(
            url, params={"ignoreErrors": "true"}, json=[{"id": t} for t in topics], headers=_bearer(token)
        ) as r:
            body, status = await r.read(), r.status
        async with http.delete(url, headers=_bearer(token)):
            pass
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Verdict("genesys topics", "fail", f"cannot reach {url}: {type(exc).__name__} {exc}")
    data = _safe_json(body)
    if status != 200 or not isinstance(data, dict):
        return Verdict("genesys topics", "fail", f"HTTP {status} subscribing: {_message(data, body)}")
    rejected = []
    for entity in data.get("entities") or []:
        if isinstance(entity, dict) and entity.get("state") == "Rejected":
            missing = (
                ", ".join(entity.get("missingPermissions") or []) or entity.get("rejectionReason") or "?"
            )
            rejected.append(f"{entity.get('id')} (missing: {missing})")
    if rejected:
        return Verdict(
            "genesys topics",
            "fail",
            f"{len(rejected)} of {topic_count(topics)} topics rejected: " + "; ".join(rejected[:10]),
        )
    return Verdict("genesys topics", "ok", f"all {topic_count(topics)} topics permitted")


def _authenticator(config: BridgeConfig, http: aiohttp.ClientSession) -> Authenticator:
    auth = config.servicenow.auth
    if isinstance(auth, OAuthConfig):
        return OAuthTokens(
            http,
            config.servicenow.instance_url,
            client_id=auth.client_id,
            client_secret=Secret(auth.client_secret.get_secret_value()),
            grant=auth.grant,
            username=auth.username,
            password=Secret(auth.password.get_secret_value()) if auth.password else None,
            scope=auth.scope,
        )
    return BasicAuth(auth.username, Secret(auth.password.get_secret_value()))


def mapping_targets(config: BridgeConfig) -> list[tuple[str, str]]:
    """``(sink kind, table)`` for every rule of the compiled mapping, without repeats."""
    seen: list[tuple[str, str]] = []
    for rule in config.servicenow.mapping.compiled.rules:
        kind = rule.sink
        table = rule.target or ("em_event" if kind == "event" else "")
        if table and (kind, table) not in seen:
            seen.append((kind, table))
    return seen


def check_outbox(config: BridgeConfig) -> Verdict:
    """Can ``[outbox] path`` hold the outbox (creates nothing)? See :mod:`gcbridge.bridge.outbox_location`."""
    path = config.outbox.path
    problem = outbox_location_problem(path)
    if problem is not None:
        return Verdict("outbox", "fail", problem)
    state = "exists" if path.exists() else "can be created"
    return Verdict("outbox", "ok", f"{path} {state}; its directory is writable and can lock files")


async def check_servicenow(config: BridgeConfig) -> list[Verdict]:
    """Authentication, then every target of the mapping probed the way delivery uses it, writing nothing:
    an Import Set staging table through the Import Set API, a Table API target through the Table API, and
    Event Management with an empty batch. A failure names the table, role or ACL most likely missing."""
    sn = config.servicenow
    out: list[Verdict] = []
    async with create_session(
        verify_tls=sn.verify_tls, connect_timeout=sn.timeouts.connect, total_timeout=sn.timeouts.total
    ) as http:
        auth = _authenticator(config, http)
        rest = ServiceNowRest(http, sn.instance_url, auth, timeout=sn.timeouts.total)
        for index, (kind, table) in enumerate(mapping_targets(config)):
            answer = await probe_target(rest, kind, table)
            if index == 0:
                verdict = _auth_verdict(sn.instance_url, answer)
                out.append(verdict)
                if verdict.level == "fail":
                    break
            out.append(target_verdict(kind, table, answer))
        if hasattr(auth, "close"):
            await auth.close()
    return out


PROBE_SYS_ID: Final = "0" * 32
"""No staging row has this sys_id: ``GET /api/now/import/<staging>/<it>`` answers 404 when the staging table
exists and the user may use the Import Set API, ``400 Invalid table`` when the table does not exist."""


async def probe_target(rest: ServiceNowRest, kind: str, table: str) -> Ok | Retry | Reject:
    """One request that exercises ``kind``'s API on ``table`` without writing anything."""
    if kind == "import_set":
        answer = await rest.call("GET", f"/api/now/import/{quote(table)}/{PROBE_SYS_ID}")
        if isinstance(answer, Reject) and answer.reason.startswith("HTTP 404"):
            return Ok(404, None)  # the staging table is there; the made-up row is not
        return answer
    if kind == "event":
        return await rest.em_events([])  # an empty batch: the role is checked, no event is created
    return await rest.table_query(table, "", limit=1)


_OK_DETAIL: Final = {
    "import_set": "staging table found through the Import Set API (its transform map is not checked)",
    "table": "table readable through the Table API (delivery also needs create and write ACLs)",
    "event": "Event Management accepts events",
}
_ACCESS_HINT: Final = {
    "import_set": (
        "grant the user the import_set_loader and import_transformer roles, or check the ACLs on {table}"
    ),
    "table": (
        "grant the user read, create and write ACLs on {table} (e.g. the itil role for incident) and "
        "check that the table allows access via web services"
    ),
    "event": "grant the user the evt_mgmt_integration role",
}
_MISSING_HINT: Final = {
    "import_set": "create the staging table {table} and its transform map, or fix the rule's target",
    "table": "create the table {table} or fix the rule's target",
    "event": "Event Management is not active on this instance (plugin com.glideapp.itom.em)",
}


def target_verdict(kind: str, table: str, answer: Ok | Retry | Reject) -> Verdict:
    """What a probe's answer says about one target (pure)."""
    name = f"servicenow {kind} {table}"
    if isinstance(answer, Ok):
        return Verdict(name, "ok", _OK_DETAIL.get(kind, "answers"))
    condition = answer.condition if isinstance(answer, Retry) else None
    if condition is not None and condition.kind == "missing_table":
        hint = _MISSING_HINT.get(kind, "fix the rule's target").format(table=table)
        return Verdict(name, "fail", f"{table} does not exist ({answer.reason}): {hint}")
    if condition is not None and condition.kind == "access":
        hint = _ACCESS_HINT.get(kind, "check the user's roles").format(table=table)
        return Verdict(name, "fail", f"access refused ({answer.reason}): {hint}")
    return Verdict(name, "fail", answer.reason)


def _auth_verdict(instance_url: str, answer: Ok | Retry | Reject) -> Verdict:
    condition = answer.condition if isinstance(answer, Retry) else None
    refused_later = condition is not None and condition.kind in ("missing_table", "access")
    if isinstance(answer, Ok | Reject) or refused_later:
        return Verdict("servicenow auth", "ok", f"authenticated at {instance_url}")
    if condition is not None:
        return Verdict("servicenow auth", "fail", f"{instance_url}: {condition.summary}: {answer.reason}")
    return Verdict("servicenow auth", "fail", f"{instance_url}: {answer.reason}")


def _bearer(token: Secret) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.reveal()}", "Content-Type": "application/json"}


def _safe_json(body: bytes) -> Any:
    try:
        return _json.loads(body) if body else None
    except _json.JSONDecodeError:
        return None


def _message(data: Any, body: bytes) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("code") or data)[:200]
    return body[:200].decode("utf-8", "replace")
