"""The seams of issue #11: one topic-pattern syntax, the built-in rules as data, the mapping compiled once at
configuration time, and a writer that takes rows."""

from __future__ import annotations

import logging
import os
import tomllib
from importlib import resources
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.bridge import mapping as mapping_module
from gcbridge.bridge.check import mapping_targets
from gcbridge.bridge.config import parse_config
from gcbridge.bridge.mapping import MappingConfig, MappingError, MappingRule, compile_mapping
from gcbridge.bridge.mapping_rules import default_rules
from gcbridge.bridge.router import build_router
from gcbridge.core.outcome import Delivered, Outcome, Reject, Retry
from gcbridge.core.topics import topic_matches
from gcbridge.servicenow.rows import Row
from gcbridge.servicenow.sinks import Writer


def rule(name: str, *topics: str) -> MappingRule:
    return MappingRule(name=name, topics=list(topics), sink="event", key="{topic}")


# ---- one topic-pattern syntax ------------------------------------------------------------------------------


def test_a_final_hash_takes_any_number_of_segments() -> None:
    mapping = compile_mapping(MappingConfig(rules=[rule("details", "v2.detail.events.conversation.#")]))
    for topic in ("v2.detail.events.conversation.c1.acw", "v2.detail.events.conversation.c1.customer.end"):
        assert mapping.rule_for(topic) is not None, topic
    assert mapping.rule_for("v2.detail.events.call.c1.acw") is None


def test_the_old_double_star_still_works_unchanged_and_logs_a_deprecation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gcbridge.bridge.mapping"):
        mapping = compile_mapping(MappingConfig(rules=[rule("old", "v2.detail.events.conversation.**")]))
    assert [r.getMessage() for r in caplog.records] == [
        "mapping rule 'old': topic pattern 'v2.detail.events.conversation.**': a final '**' is deprecated;"
        " write 'v2.detail.events.conversation.#' instead"
    ]
    assert mapping.rule_for("v2.detail.events.conversation.c1.acw") is not None
    assert mapping.rule_for("v2.detail.events.conversation") is None  # '**' meant one or more, as before


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("v2.#.presence", "'#' may only be the last segment"),
        ("v2.users.u#.presence", "a wildcard must be a whole segment"),
        ("v2..presence", "has an empty segment"),
    ],
)
def test_bad_patterns_are_named_at_configuration_time(pattern: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):  # pydantic's ValidationError carries the MappingError
        MappingConfig(rules=[rule("bad", pattern)])
    with pytest.raises(MappingError, match=problem):
        compile_mapping(MappingConfig.model_construct(rules=[rule("bad", pattern)]))


segment = st.sampled_from(["v2", "users", "u1", "presence"])


@given(
    pattern=st.tuples(st.lists(st.one_of(segment, st.just("*")), min_size=1, max_size=4), st.booleans()).map(
        lambda p: ".".join(p[0] + (["#"] if p[1] else []))
    ),
    topic=st.lists(segment, min_size=1, max_size=6).map(".".join),
)
def test_mapping_rules_and_the_client_agree_on_every_pattern(pattern: str, topic: str) -> None:
    mapping = compile_mapping(MappingConfig(rules=[rule("r", pattern)]))
    assert (mapping.rule_for(topic) is not None) == topic_matches(pattern, topic)


# ---- the built-in rules are data ---------------------------------------------------------------------------


def test_the_built_in_rules_are_the_toml_table_shipped_in_the_package() -> None:
    shipped = resources.files("gcbridge.bridge").joinpath("default_mapping.toml")
    data = tomllib.loads(shipped.read_text("utf-8"))
    rules = default_rules()
    assert [r.model_dump(exclude_defaults=True) for r in rules] == [
        MappingRule.model_validate(r).model_dump(exclude_defaults=True) for r in data["rules"]
    ]
    assert [r.name for r in rules] == ["conversations", "conversation_details", "presence", "queue_stats"]
    assert all("**" not in t for r in rules for t in r.topics)  # the defaults use the current syntax
    detail = compile_mapping().rule_for("v2.detail.events.conversation.c1.acw")
    assert detail is not None
    assert detail.name == "conversation_details"


# ---- compiled once -----------------------------------------------------------------------------------------


def minimal_config() -> dict[str, Any]:
    return {
        "genesys": {
            "region": "eu_west_1",
            "client_id": "cid",
            "client_secret": "genesys-secret",
            "topics": ["v2.users.u1.presence"],
        },
        "servicenow": {
            "instance_url": "https://acme.service-now.com",
            "auth": {"kind": "basic", "username": "bridge", "password": "sn-password"},
            "mapping": {
                "rules": [{"name": "p", "topics": ["v2.users.*.presence"], "sink": "event", "key": "{topic}"}]
            },
        },
    }


async def test_the_mapping_is_compiled_once_when_the_configuration_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GCBRIDGE_"):
            monkeypatch.delenv(name)
    compiled: list[MappingConfig] = []
    original = mapping_module._compile

    def counting(config: MappingConfig) -> mapping_module.Mapping:
        compiled.append(config)
        return original(config)

    monkeypatch.setattr(mapping_module, "_compile", counting)
    cfg = parse_config(minimal_config())
    assert len(compiled) == 1
    assert mapping_targets(cfg) == [("event", "em_event")]  # `gcbridge check` reads the same compiled rules
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        router = build_router(cfg.servicenow, session)  # the service's writer reads the same compiled rules
        await router.close()
    assert router.mapping is cfg.servicenow.mapping.compiled
    assert len(compiled) == 1


# ---- the writer takes rows ---------------------------------------------------------------------------------


class RecordingSink:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    async def write(self, row: Row) -> Outcome:
        self.rows.append(row)
        if row.key == "boom":
            raise RuntimeError("Authorization: Bearer secret-token")
        return Delivered(f"{row.target} inserted")


async def test_the_writer_sends_a_row_to_the_sink_it_names() -> None:
    sink = RecordingSink()
    writer = Writer({"table": sink})
    row = Row("table", "incident", "c1", "correlation_id", {"correlation_id": "c1"})
    assert await writer.write(row) == Delivered("incident inserted")
    assert sink.rows == [row]


async def test_the_writer_rejects_an_unknown_sink_and_retries_a_sink_bug_without_its_text() -> None:
    writer = Writer({"table": RecordingSink()})
    unknown = await writer.write(Row("import_set", "u_x", "c1", "u_id", {}))
    assert unknown == Reject("no ServiceNow sink 'import_set' (expected one of ['table'])")
    broken = await writer.write(Row("table", "incident", "boom", "correlation_id", {}))
    assert isinstance(broken, Retry)
    assert "secret-token" not in broken.reason
    assert broken.reason == "internal error in sink 'table': RuntimeError (see the log)"
