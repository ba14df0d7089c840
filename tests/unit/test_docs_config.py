"""The configurations printed in the documentation are valid: an operator copies them as they are."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gcbridge.bridge.config import load_config

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECRET_FILE = re.compile(r'"(/run/secrets/[^"]+)"')


def toml_blocks(doc: Path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)


def test_the_full_configuration_for_a_real_deployment_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("GCBRIDGE_"):
            monkeypatch.delenv(name)
    # the first block is the full configuration; later ones are fragments of it (several instances)
    block = toml_blocks(DOCS / "running-for-real.md")[0]
    # The secrets live in files outside the TOML; stand-ins for them here, everything else as printed.
    for path in SECRET_FILE.findall(block):
        stand_in = tmp_path / Path(path).name
        stand_in.write_text("not-a-real-secret\n")
        block = block.replace(path, str(stand_in))
    config_file = tmp_path / "gcbridge.toml"
    config_file.write_text(block)
    cfg = load_config(config_file)
    assert cfg.genesys.region == "eu_west_1"
    assert len(cfg.genesys.extra_credentials) == 1
    assert cfg.servicenow.auth.kind == "oauth"
    assert cfg.servicenow.auth.client_secret.get_secret_value() == "not-a-real-secret"
    assert str(cfg.outbox.path) == "/var/lib/gcbridge/outbox.db"
    assert cfg.admin.host == "127.0.0.1"
