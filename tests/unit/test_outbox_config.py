"""``[outbox] url``: PostgreSQL is chosen by configuration, and a bad URL is named without its password."""

from __future__ import annotations

import pytest

from gcbridge.bridge.config import parse_config
from gcbridge.bridge.outbox_choice import describe_outbox

from .test_config import _clean_env, minimal, problems_of

__all__ = ["_clean_env"]  # an autouse fixture: imported so that it applies here too


def test_sqlite_stays_the_default() -> None:
    cfg = parse_config(minimal())
    assert cfg.outbox.url is None
    assert describe_outbox(cfg.outbox) == str(cfg.outbox.path)


def test_a_postgresql_url_is_kept_secret_and_described_without_the_password() -> None:
    data = minimal()
    data["outbox"] = {"url": "postgresql://bridge:pa55word@db.example:5433/gcbridge"}
    cfg = parse_config(data)
    assert cfg.outbox.url is not None
    assert cfg.outbox.url.get_secret_value().endswith("@db.example:5433/gcbridge")
    assert "pa55word" not in repr(cfg)
    assert describe_outbox(cfg.outbox) == "postgresql://bridge:***@db.example:5433/gcbridge"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://bridge:pa55word@db.example/gcbridge",
        "postgresql://bridge:pa55word@/gcbridge",
        "postgresql://bridge:pa55word@db.example",
        "postgresql://bridge:pa55word@db.example:notaport/gcbridge",
    ],
)
def test_a_bad_url_is_named_without_echoing_it(url: str) -> None:
    data = minimal()
    data["outbox"] = {"url": url}
    (problem,) = problems_of(data)
    assert problem.startswith("outbox.url: must look like postgresql://")
    assert "pa55word" not in problem


def test_the_adaptive_window_is_off_by_default_and_its_ceiling_is_checked() -> None:
    assert parse_config(minimal()).outbox.dispatcher.max_concurrency == 0
    data = minimal()
    data["outbox"] = {"dispatcher": {"concurrency": 32, "max_concurrency": 64}}
    assert parse_config(data).outbox.dispatcher.max_concurrency == 64
    data["outbox"] = {"dispatcher": {"concurrency": 32, "max_concurrency": 16}}
    assert any("max_concurrency" in p for p in problems_of(data))
