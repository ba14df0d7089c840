"""``gcbridge check`` against both simulators: good credentials, a wrong secret, a forbidden topic, a
ServiceNow user that cannot log in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gcbridge.bridge.check import check_genesys, check_outbox, check_servicenow
from gcbridge.bridge.config import BridgeConfig, parse_config
from gcbridge.bridge.outbox_location import outbox_location_problem
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.org import OrgSettings
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.config import DEFAULT_TABLES, SnSimConfig, default_transform_maps
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER, run_gcbridge

TOPICS = ["v2.users.a1.presence", "v2.routing.queues.q1.conversations"]


@pytest.fixture
async def sims() -> AsyncIterator[tuple[GenesysSim, ServiceNowSim]]:
    # with an org: its REST endpoints answer back-fill's permission probes
    gsim = GenesysSim(SimConfig(seed=1, org=OrgSettings(seed=1, users=2, queues=1, time_scale=0)))
    gsim.add_oauth_client("check-client", GENESYS_SECRET)
    # On an instance an Import Set staging table is a table like any other (readable through the Table
    # API); the simulator keeps them apart unless they are declared.
    staging = {name: None for name in default_transform_maps()}
    snsim = ServiceNowSim(SnSimConfig(users={SN_USER: SN_PASSWORD}, tables={**DEFAULT_TABLES, **staging}))
    await gsim.start("127.0.0.1", 0)
    await snsim.start("127.0.0.1", 0)
    try:
        yield gsim, snsim
    finally:
        await gsim.stop()
        await snsim.stop()


def config(
    gsim: GenesysSim,
    snsim: ServiceNowSim,
    tmp_path: Path,
    *,
    secret: str = GENESYS_SECRET,
    password: str = SN_PASSWORD,
) -> BridgeConfig:
    assert snsim.base_url is not None
    return parse_config(
        {
            "genesys": {
                "base_url": gsim.base_url,
                "client_id": "check-client",
                "client_secret": secret,
                "topics": TOPICS,
            },
            "servicenow": {
                "instance_url": snsim.base_url,
                "auth": {"kind": "basic", "username": SN_USER, "password": password},
            },
        },
        base_dir=tmp_path,
    )


async def run_check_command(
    gsim: GenesysSim, snsim: ServiceNowSim, tmp_path: Path, *, sn_password: str
) -> tuple[int, str, str]:
    """``gcbridge check`` on a TOML config file, secrets in the environment: (exit code, stdout, stderr)."""
    assert snsim.base_url is not None
    config_file = tmp_path / "gcbridge.toml"
    topics = ", ".join(f'"{t}"' for t in TOPICS)
    config_file.write_text(
        f'[genesys]\nbase_url = "{gsim.base_url}"\nclient_id = "check-client"\ntopics = [{topics}]\n'
        f'[servicenow]\ninstance_url = "{snsim.base_url}"\n'
        f'[servicenow.auth]\nkind = "basic"\nusername = "{SN_USER}"\n'
    )
    env = {
        "GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET,
        "GCBRIDGE_SERVICENOW__AUTH__PASSWORD": sn_password,
    }
    return await run_gcbridge("check", "--config", str(config_file), env=env)


async def test_check_passes_with_good_credentials(
    sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path
) -> None:
    gsim, snsim = sims
    cfg = config(gsim, snsim, tmp_path)
    verdicts = await check_genesys(cfg) + await check_servicenow(cfg)
    assert [v.level for v in verdicts] == ["ok"] * len(verdicts), verdicts
    names = [v.name for v in verdicts]
    assert names[:3] == ["genesys token", "genesys channel", "genesys topics"]
    assert "servicenow auth" in names
    assert any(n.startswith("servicenow import_set u_genesys_interaction_import") for n in names)
    assert gsim.channels
    assert all(not channel.topics for channel in gsim.channels)  # the check removed its subscriptions


async def test_check_names_a_wrong_secret(sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path) -> None:
    gsim, snsim = sims
    (verdict,) = await check_genesys(config(gsim, snsim, tmp_path, secret="wrong-secret"))
    assert verdict.level == "fail"
    assert "invalid_client" in verdict.detail
    assert "check the client secret" in verdict.detail
    assert "wrong-secret" not in verdict.detail


async def test_check_lists_rejected_topics(sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path) -> None:
    gsim, snsim = sims
    gsim.forbid_topic("v2.routing.queues.*.conversations", ["routing:queue:view"])
    verdicts = await check_genesys(config(gsim, snsim, tmp_path))
    (topics,) = [v for v in verdicts if v.name == "genesys topics"]
    assert topics.level == "fail"
    assert "1 of 2 topics rejected" in topics.detail
    assert "v2.routing.queues.q1.conversations" in topics.detail
    assert "routing:queue:view" in topics.detail


async def test_check_lists_missing_backfill_permissions_as_a_warning(
    sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path
) -> None:
    gsim, snsim = sims
    assert gsim.org is not None
    verdicts = await check_genesys(config(gsim, snsim, tmp_path))
    (ok,) = [v for v in verdicts if v.name == "backfill permissions"]
    assert ok.level == "ok"
    assert "analytics:queueObservation:view" in ok.detail
    gsim.org.denied_permissions.update({"conversation:communication:view", "analytics:queueObservation:view"})
    verdicts = await check_genesys(config(gsim, snsim, tmp_path))
    (warn,) = [v for v in verdicts if v.name == "backfill permissions"]
    assert warn.level == "warn"
    assert "missing conversation:communication:view; analytics:queueObservation:view" in warn.detail
    assert "queue observations will be partial" in warn.detail
    assert "analytics:conversationDetail:view" not in warn.detail  # that one is granted
    assert [v.level for v in verdicts if v.name != "backfill permissions"] == ["ok"] * (len(verdicts) - 1)


async def test_check_reports_servicenow_login_failure(
    sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path
) -> None:
    gsim, snsim = sims
    verdicts = await check_servicenow(config(gsim, snsim, tmp_path, password="nope"))
    assert verdicts[0].name == "servicenow auth"
    assert verdicts[0].level == "fail"
    assert "401" in verdicts[0].detail or "Not Authenticated" in verdicts[0].detail


async def test_check_command_prints_verdicts(sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path) -> None:
    code, text, err = await run_check_command(*sims, tmp_path, sn_password=SN_PASSWORD)
    assert code == 0, text + err
    assert "ok    genesys topics" in text
    assert " 0 failed" in text
    assert GENESYS_SECRET not in text + err


async def test_check_fails_a_target_table_the_instance_does_not_have(
    sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path
) -> None:
    gsim, snsim = sims
    cfg = config(gsim, snsim, tmp_path)
    rule = {
        "name": "presence",
        "topics": ["v2.users.*.presence"],
        "sink": "table",
        "target": "u_genesys_presense",  # misspelled
        "key": "{topic_parts[2]}",
        "fields": {"u_presence": "{body.presenceDefinition.systemPresence}"},
    }
    raw = cfg.model_dump(mode="python")
    raw["genesys"]["client_secret"] = GENESYS_SECRET
    raw["servicenow"]["auth"]["password"] = SN_PASSWORD
    raw["servicenow"]["mapping"] = {"rules": [rule]}
    verdicts = await check_servicenow(parse_config(raw, base_dir=tmp_path))
    by_name = {v.name: v for v in verdicts}
    assert by_name["servicenow auth"].level == "ok"
    table = by_name["servicenow table u_genesys_presense"]
    assert table.level == "fail"
    assert "Invalid table u_genesys_presense" in table.detail


async def test_check_command_exits_1_on_a_failed_item(
    sims: tuple[GenesysSim, ServiceNowSim], tmp_path: Path
) -> None:
    code, text, err = await run_check_command(*sims, tmp_path, sn_password="WRONG-SN-PASSWORD")
    assert code == 1, text + err
    assert "ok    genesys token" in text
    assert "fail  servicenow auth" in text
    assert "User Not Authenticated" in text
    assert " 1 failed" in text
    assert "WRONG-SN-PASSWORD" not in text + err


# ---- issue #13: no false failures against the shipped simulator; the outbox location -------------------


@pytest.fixture
async def shipped_sn() -> AsyncIterator[ServiceNowSim]:
    """The ServiceNow simulator as shipped (``gcbridge sim servicenow``): staging tables only reachable
    through the Import Set API, em_event created by the first event."""
    snsim = ServiceNowSim(SnSimConfig(users={SN_USER: SN_PASSWORD}))
    await snsim.start("127.0.0.1", 0)
    try:
        yield snsim
    finally:
        await snsim.stop()


def sn_only_config(
    snsim: ServiceNowSim, tmp_path: Path, rules: list[dict[str, Any]] | None = None
) -> BridgeConfig:
    assert snsim.base_url is not None
    servicenow: dict[str, Any] = {
        "instance_url": snsim.base_url,
        "auth": {"kind": "basic", "username": SN_USER, "password": SN_PASSWORD},
    }
    if rules is not None:
        servicenow["mapping"] = {"rules": rules}
    return parse_config(
        {
            "genesys": {
                "base_url": "http://127.0.0.1:9",
                "client_id": "c",
                "client_secret": "s",
                "topics": TOPICS,
            },
            "servicenow": servicenow,
        },
        base_dir=tmp_path,
    )


async def test_check_passes_against_the_shipped_simulator_with_the_default_mapping(
    shipped_sn: ServiceNowSim, tmp_path: Path
) -> None:
    verdicts = await check_servicenow(sn_only_config(shipped_sn, tmp_path))
    assert [v.level for v in verdicts] == ["ok"] * len(verdicts), verdicts
    names = [v.name for v in verdicts]
    assert names[0] == "servicenow auth"
    assert "servicenow import_set u_genesys_interaction_import" in names
    assert shipped_sn.records("interaction") == []  # the probes wrote nothing


async def test_check_names_a_missing_staging_table_and_what_to_create(
    shipped_sn: ServiceNowSim, tmp_path: Path
) -> None:
    rule = {
        "name": "presence",
        "topics": ["v2.users.*.presence"],
        "sink": "import_set",
        "target": "u_genesys_presense_import",  # misspelled
        "key": "{topic_parts[2]}",
        "key_field": "u_user_id",
        "fields": {"u_presence": "{body.presenceDefinition.systemPresence}"},
    }
    verdicts = await check_servicenow(sn_only_config(shipped_sn, tmp_path, [rule]))
    by_name = {v.name: v for v in verdicts}
    assert by_name["servicenow auth"].level == "ok"
    staging = by_name["servicenow import_set u_genesys_presense_import"]
    assert staging.level == "fail"
    assert staging.detail.startswith("u_genesys_presense_import does not exist")
    assert "create the staging table u_genesys_presense_import and its transform map" in staging.detail


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/etc/passwd", "is an existing file that is not an SQLite database"),
        ("/etc/passwd/outbox.db", "/etc/passwd is not a directory"),
        ("/proc/gcbridge", "cannot create files in /proc"),
    ],
)
def test_check_outbox_names_the_key_and_the_problem(path: str, problem: str, tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "genesys": {
                "base_url": "http://127.0.0.1:9",
                "client_id": "c",
                "client_secret": "s",
                "topics": TOPICS,
            },
            "servicenow": {
                "instance_url": "http://127.0.0.1:9",
                "auth": {"kind": "basic", "username": "u", "password": "p"},
            },
            "outbox": {"path": path},
        },
        base_dir=tmp_path,
    )
    verdict = check_outbox(cfg)
    assert verdict.level == "fail"
    assert verdict.detail.startswith(f'[outbox] path = "{path}": ')
    assert problem in verdict.detail


def test_check_outbox_accepts_a_directory_that_can_be_created_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "state" / "gcbridge" / "outbox.db"
    assert outbox_location_problem(target) is None
    assert not (tmp_path / "state").exists()
    (tmp_path / "dir.db").mkdir()
    problem = outbox_location_problem(tmp_path / "dir.db")
    assert problem is not None
    assert "is a directory" in problem
    assert outbox_location_problem(target, create=True) is None
    assert target.parent.is_dir()


async def test_run_with_an_unusable_outbox_path_fails_with_one_line_naming_the_key(tmp_path: Path) -> None:
    config_file = tmp_path / "gcbridge.toml"
    config_file.write_text(
        '[genesys]\nbase_url = "http://127.0.0.1:9"\nclient_id = "c"\nclient_secret = "s"\n'
        'topics = ["v2.users.a1.presence"]\n'
        '[servicenow]\ninstance_url = "http://127.0.0.1:9"\n'
        '[servicenow.auth]\nkind = "basic"\nusername = "u"\npassword = "p"\n'
        '[outbox]\npath = "/etc/passwd/outbox.db"\n'
    )
    code, out, err = await run_gcbridge("run", "--config", str(config_file), within=60)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert '[outbox] path = "/etc/passwd/outbox.db": /etc/passwd is not a directory' in lines[0]
    assert "Traceback" not in out + err

    code, out, err = await run_gcbridge("check", "--config", str(config_file), "--skip-servicenow", within=60)
    assert code == 1
    assert "fail  outbox" in out
    assert "/etc/passwd is not a directory" in out
