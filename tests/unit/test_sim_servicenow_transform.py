"""Import Set transform maps and coalescing in the ServiceNow simulator (pure, no server)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcbridge.sim.servicenow.config import default_transform_maps, table_schema
from gcbridge.sim.servicenow.store import RecordStore
from gcbridge.sim.servicenow.transform import (
    MAX_ROW_BYTES,
    AutoMap,
    RowOutcome,
    RowStatus,
    TransformMap,
    coalesce_key,
    run_transform,
    staging_columns,
)

NOW = 1_700_000_000.0


@pytest.fixture
def store() -> RecordStore:
    s = RecordStore()
    s.add_table(table_schema("interaction", "IMS"))
    s.add_table(table_schema("u_genesys_presence", None))
    return s


def interaction_map() -> TransformMap:
    tmap = default_transform_maps()["u_genesys_interaction_import"]
    assert isinstance(tmap, TransformMap)
    return tmap


def run(
    store: RecordStore, row: dict[str, str], tmap: TransformMap | None = None, forced_error: str | None = None
) -> RowOutcome:
    return run_transform(
        store, tmap or interaction_map(), row, user="bridge", now=NOW, forced_error=forced_error
    )


def test_default_map_renames_conversation_id_and_strips_u_prefix() -> None:
    mapped = interaction_map().map_row(
        {"u_conversation_id": "c-1", "u_state": "queued", "u_short_description": "x"}
    )
    assert mapped == {"correlation_id": "c-1", "state": "queued", "short_description": "x"}


def test_first_row_inserts_second_identical_row_is_ignored(store: RecordStore) -> None:
    first = run(store, {"u_conversation_id": "c-1", "u_state": "queued"})
    assert first.status is RowStatus.INSERTED
    again = run(store, {"u_conversation_id": "c-1", "u_state": "queued"})
    assert again.status is RowStatus.IGNORED
    assert again.message == "No field values changed"
    assert again.target_sys_id == first.target_sys_id
    assert [r["state"] for r in store.rows("interaction")] == ["queued"]


def test_changed_row_updates_the_coalesced_record(store: RecordStore) -> None:
    first = run(store, {"u_conversation_id": "c-1", "u_state": "queued"})
    second = run(store, {"u_conversation_id": "c-1", "u_state": "work_in_progress"})
    assert second.status is RowStatus.UPDATED
    assert second.target_sys_id == first.target_sys_id
    record = store.get("interaction", first.target_sys_id or "")
    assert record is not None
    assert (record["state"], record["sys_mod_count"]) == ("work_in_progress", "1")


def test_coalesce_is_case_insensitive(store: RecordStore) -> None:
    first = run(store, {"u_conversation_id": "ABC-1"})
    second = run(store, {"u_conversation_id": "abc-1", "u_state": "closed_complete"})
    assert second.status is RowStatus.UPDATED
    assert second.target_sys_id == first.target_sys_id
    assert store.count("interaction") == 1


def test_only_the_first_of_several_matches_is_updated(store: RecordStore) -> None:
    older = store.insert("interaction", {"correlation_id": "dup"}, "admin", NOW)
    newer = store.insert("interaction", {"correlation_id": "dup"}, "admin", NOW)
    outcome = run(store, {"u_conversation_id": "dup", "u_state": "closed_complete"})
    assert outcome.target_sys_id == older["sys_id"]
    assert newer["state"] == "new"


def test_missing_coalesce_value_skips_the_row(store: RecordStore) -> None:
    outcome = run(store, {"u_state": "queued"})
    assert outcome.status is RowStatus.SKIPPED
    assert outcome.target_sys_id is None
    assert store.count("interaction") == 0


def test_forced_error_and_unknown_target_table_are_errors(store: RecordStore) -> None:
    forced = run(store, {"u_conversation_id": "c-1"}, forced_error="Target record not found")
    assert (forced.status, forced.message) == (RowStatus.ERROR, "Target record not found")
    broken = TransformMap("Broken", "no_such_table", coalesce=["x"])
    assert run(store, {"u_x": "1"}, broken).status is RowStatus.ERROR
    assert store.count("interaction") == 0


def test_oversize_row_is_skipped(store: RecordStore) -> None:
    outcome = run(store, {"u_conversation_id": "c-1", "u_notes": "x" * MAX_ROW_BYTES})
    assert outcome.status is RowStatus.SKIPPED
    assert store.count("interaction") == 0


def test_multi_field_coalesce_needs_every_field_to_match(store: RecordStore) -> None:
    tmap = TransformMap(
        "Presence", "u_genesys_presence", coalesce=["u_user_id", "u_presence"], auto_map=AutoMap.SAME
    )
    run(store, {"u_user_id": "u1", "u_presence": "Available"}, tmap)
    other = run(store, {"u_user_id": "u1", "u_presence": "Busy"}, tmap)
    assert other.status is RowStatus.INSERTED
    assert store.count("u_genesys_presence") == 2


def test_map_without_coalesce_always_inserts(store: RecordStore) -> None:
    tmap = TransformMap("Log", "interaction", field_map={"u_text": "short_description"})
    run(store, {"u_text": "a"}, tmap)
    run(store, {"u_text": "a"}, tmap)
    assert store.count("interaction") == 2
    assert coalesce_key(tmap, {"u_text": "a"}) is None


def test_coalesce_key_folds_case() -> None:
    assert coalesce_key(interaction_map(), {"u_conversation_id": "AbC"}) == ("interaction", "abc")


def test_only_u_columns_reach_the_staging_table() -> None:
    assert staging_columns({"u_a": "1", "short_description": "x", "sys_id": "y"}) == {"u_a": "1"}


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["conv-a", "CONV-A", "conv-b", "Conv-B", "conv-c", ""]), st.sampled_from("xyz")
        ),
        max_size=25,
    )
)
def test_one_record_per_coalesce_value_holding_its_last_row(rows: list[tuple[str, str]]) -> None:
    store = RecordStore()
    store.add_table(table_schema("interaction", "IMS"))
    last: dict[str, str] = {}
    for conversation, state in rows:
        outcome = run(store, {"u_conversation_id": conversation, "u_state": state})
        assert (outcome.status is RowStatus.SKIPPED) == (conversation == "")
        if conversation:
            last[conversation.casefold()] = state
    records = {r["correlation_id"].casefold(): r["state"] for r in store.rows("interaction")}
    assert store.count("interaction") == len(last)
    assert records == last
