"""The service configuration: TOML + environment, secret files, and errors that name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gcbridge.bridge.config import REGIONS, BridgeConfig, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "gcbridge.toml"
PACKAGED_EXAMPLE = REPO / "src" / "gcbridge" / "bridge" / "static" / "gcbridge.example.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("GCBRIDGE_"):
            monkeypatch.delenv(name)


def minimal(**genesys: object) -> dict[str, object]:
    g: dict[str, object] = {
        "region": "eu_west_1",
        "client_id": "cid",
        "client_secret": "genesys-secret",
        "topics": ["v2.users.u1.presence"],
    }
    g.update(genesys)
    return {
        "genesys": {k: v for k, v in g.items() if v is not None},
        "servicenow": {
            "instance_url": "https://acme.service-now.com",
            "auth": {"kind": "basic", "username": "bridge", "password": "sn-password"},
        },
    }


def problems_of(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_config(minimal())
    assert cfg.genesys.region == "eu_west_1"
    assert cfg.genesys.api_host == "api.mypurecloud.ie"
    assert cfg.admin.host == "127.0.0.1"
    assert cfg.admin.port == 9464
    assert cfg.outbox.drain_timeout == 30.0
    assert cfg.logging.level == "info"
    assert cfg.genesys.secret().get_secret_value() == "genesys-secret"


def test_region_accepts_dashes_and_case() -> None:
    assert parse_config(minimal(region="EU-West-2")).genesys.region == "eu_west_2"


def test_unknown_region_names_key_and_lists_valid_ones() -> None:
    (problem,) = problems_of(minimal(region="eu-west-9"))
    assert problem.startswith("genesys.region: unknown region 'eu-west-9'; valid: ")
    assert all(name in problem for name in REGIONS)


def test_every_problem_is_reported_at_once() -> None:
    data = minimal(region=None, client_secret=None, topics=["v2.users.u1.presence", "v2.users.u1.presence"])
    data["admin"] = {"port": 70000}
    data["genesys"]["bogus"] = 1  # type: ignore[index]
    problems = problems_of(data)
    text = "\n".join(problems)
    assert "genesys.topics: [1] 'v2.users.u1.presence' duplicates topics[0]" in text
    assert "admin.port: Input should be less than or equal to 65535" in text
    assert "genesys.bogus: unknown key" in text


def test_missing_secret_says_where_to_put_it() -> None:
    (problem,) = problems_of(minimal(client_secret=None))
    assert problem.startswith("genesys.client_secret: missing; set GCBRIDGE_GENESYS__CLIENT_SECRET")


def test_neither_region_nor_base_url() -> None:
    (problem,) = problems_of(minimal(region=None))
    assert problem.startswith("genesys: give region")


def test_implicit_and_malformed_topics_are_rejected() -> None:
    (problem,) = problems_of(minimal(topics=["channel.metadata", "has space"]))
    assert "[0] 'channel.metadata' is subscribed implicitly" in problem
    assert "[1] 'has space' is not a topic name" in problem


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCBRIDGE_GENESYS__CLIENT_SECRET", "from-env")
    monkeypatch.setenv("GCBRIDGE_ADMIN__PORT", "9999")
    monkeypatch.setenv("GCBRIDGE_GENESYS__TOPICS", '["v2.users.a1.presence", "v2.users.b2.presence"]')
    cfg = parse_config(minimal())
    assert cfg.genesys.secret().get_secret_value() == "from-env"
    assert cfg.admin.port == 9999
    assert cfg.genesys.topics == ["v2.users.a1.presence", "v2.users.b2.presence"]


def test_secret_files_relative_to_config_dir(tmp_path: Path) -> None:
    (tmp_path / "gsecret").write_text("file-secret\n")
    (tmp_path / "snpass").write_text("file-password\n")
    data = minimal(client_secret=None, client_secret_file="gsecret")
    data["servicenow"]["auth"] = {  # type: ignore[index]
        "kind": "basic",
        "username": "bridge",
        "password_file": "snpass",
    }
    data["outbox"] = {"path": "state/outbox.db"}
    cfg = parse_config(data, base_dir=tmp_path)
    assert cfg.genesys.secret().get_secret_value() == "file-secret"
    assert cfg.servicenow.auth.password.get_secret_value() == "file-password"  # type: ignore[union-attr]
    assert cfg.outbox.path == tmp_path / "state" / "outbox.db"
    assert cfg.outbox.gap_log_path == tmp_path / "state" / "gcbridge-gaps.jsonl"


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    (problem,) = problems_of(minimal(client_secret=None, client_secret_file=str(tmp_path / "nope")))
    assert problem.startswith("genesys: secret file ")
    assert "does not exist" in problem


def test_servicenow_missing_secret_file_is_named(tmp_path: Path) -> None:
    data = minimal()
    data["servicenow"]["auth"] = {  # type: ignore[index]
        "kind": "basic",
        "username": "bridge",
        "password_file": str(tmp_path / "nope"),
    }
    (problem,) = problems_of(data)
    assert problem.startswith("servicenow.auth.password_file: secret file ")


def test_secret_values_never_appear_in_errors_or_repr() -> None:
    data = minimal(client_secret="TOPSECRET-42", region="nowhere")
    data["servicenow"]["auth"]["password"] = "SNPASS-42"  # type: ignore[index]
    data["servicenow"]["instance_url"] = "ftp://x"  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert "TOPSECRET-42" not in str(info.value)
    assert "SNPASS-42" not in str(info.value)
    cfg = parse_config(minimal(client_secret="TOPSECRET-42"))
    assert "TOPSECRET-42" not in repr(cfg)
    assert "TOPSECRET-42" not in cfg.model_dump_json()


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[genesys\nregion = 1\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_example_file_parses_and_matches_packaged_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EXAMPLE.read_text() == PACKAGED_EXAMPLE.read_text()
    monkeypatch.setenv("GCBRIDGE_GENESYS__CLIENT_SECRET", "x")
    monkeypatch.setenv("GCBRIDGE_SERVICENOW__AUTH__CLIENT_SECRET", "y")
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg, BridgeConfig)
    assert cfg.genesys.region == "eu_west_1"
    assert cfg.servicenow.auth.kind == "oauth"
    # The example carries no secret.
    raw = tomllib.loads(EXAMPLE.read_text())
    assert "client_secret" not in raw["genesys"]
    assert "client_secret" not in raw["servicenow"]["auth"]


def test_client_options_are_checked_by_name_and_type() -> None:
    cfg = parse_config(minimal(client={"heartbeat_timeout": 40, "backoff": {"initial": 1.0, "cap": 30.0}}))
    options = cfg.genesys.client_options()
    assert options.heartbeat_timeout == 40
    assert options.backoff.cap == 30.0
    (problem,) = problems_of(minimal(client={"heartbeat_timeot": 40, "combine_topics": "yes"}))
    assert problem.startswith("genesys.client: unknown option heartbeat_timeot; valid: backoff, ")
    assert "combine_topics: expected bool, got 'yes'" in problem


def test_client_options_documented_in_the_example_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Uncomment the example's [genesys.client] lines: every documented option must be accepted as shown.
    lines, in_client = [], False
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith(("[", "# [")):
            in_client = line.strip() == "[genesys.client]"
        if in_client and line.startswith("# ") and " = " in line:
            line = line[2:]
        lines.append(line)
    path = tmp_path / "gcbridge.toml"
    path.write_text("\n".join(lines))
    monkeypatch.setenv("GCBRIDGE_GENESYS__CLIENT_SECRET", "x")
    monkeypatch.setenv("GCBRIDGE_SERVICENOW__AUTH__CLIENT_SECRET", "y")
    cfg = load_config(path)
    assert len(cfg.genesys.client) >= 8
    assert cfg.genesys.client_options().heartbeat_timeout == 65.0


def test_credentials_in_a_url_are_refused_without_echoing_them() -> None:
    data = minimal(region=None, base_url="https://gc:GC-URL-PASS@api.mypurecloud.ie")
    sn = data["servicenow"]
    assert isinstance(sn, dict)
    sn["instance_url"] = "https://admin:SN-URL-PASS@acme.service-now.com"
    problems = problems_of(data)
    assert problems == [
        "genesys.base_url: must not carry credentials (user:password@host); give them as client_secret",
        "servicenow.instance_url: must not carry credentials (user:password@host); "
        "put them in [servicenow.auth]",
    ]
    assert "URL-PASS" not in repr(problems)


def test_ha_needs_a_postgresql_outbox_and_has_documented_defaults() -> None:
    assert parse_config(minimal()).ha is None  # without [ha]: one instance, as before
    problems = problems_of({**minimal(), "ha": {}})
    assert len(problems) == 1
    assert problems[0].startswith("ha: needs [outbox] url")
    cfg = parse_config({**minimal(), "outbox": {"url": "postgresql://gc@db.example/gc"}, "ha": {}})
    assert cfg.ha is not None
    assert (cfg.ha.instance_id, cfg.ha.shards, cfg.ha.lease_ttl, cfg.ha.channel_budget) == (None, 16, 15.0, 6)
    bad = {**minimal(), "outbox": {"url": "postgresql://gc@db.example/gc"}, "ha": {"instance_id": "a b"}}
    assert any(p.startswith("ha.instance_id:") for p in problems_of(bad))
