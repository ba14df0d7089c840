"""``gcbridge check`` against both simulators: good credentials, a wrong secret, a forbidden topic, a
ServiceNow user that cannot log in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gcbridge.bridge.check import check_genesys, check_servicenow
from gcbridge.bridge.config import BridgeConfig, parse_config
from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.servicenow.config import DEFAULT_TABLES, SnSimConfig, default_transform_maps
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER, run_gcbridge

TOPICS = ["v2.users.a1.presence", "v2.routing.queues.q1.conversations"]


@pytest.fixture
async def sims() -> AsyncIterator[tuple[GenesysSim, ServiceNowSim]]:
    gsim = GenesysSim(SimConfig(seed=1))
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
    topics = verdicts[-1]
    assert topics.level == "fail"
    assert "1 of 2 topics rejected" in topics.detail
    assert "v2.routing.queues.q1.conversations" in topics.detail
    assert "routing:queue:view" in topics.detail


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
