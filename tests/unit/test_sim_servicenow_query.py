"""The simulator's encoded-query parser and evaluator (``sysparm_query``)."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from gcbridge.sim.servicenow.query import Condition, OrderBy, parse_encoded_query, select

COLUMNS = {"number", "state", "short_description", "priority", "correlation_id", "u_INDEX", "u_"}

ROWS = [
    {
        "number": "INC001",
        "state": "1",
        "short_description": "Printer on fire",
        "priority": "10",
        "correlation_id": "a",
    },
    {
        "number": "INC002",
        "state": "2",
        "short_description": "printer jam",
        "priority": "9",
        "correlation_id": "b",
    },
    {
        "number": "INC003",
        "state": "2",
        "short_description": "VPN down",
        "priority": "1",
        "correlation_id": "",
    },
    {
        "number": "INC004",
        "state": "7",
        "short_description": "Mail slow",
        "priority": "9",
        "correlation_id": "A",
    },
]


def is_field(name: str) -> bool:
    return name in COLUMNS


def get(row: dict[str, str], field: str) -> str:
    return row.get(field, "")


def numbers(query: str) -> list[str]:
    return [r["number"] for r in select(ROWS, parse_encoded_query(query, is_field), get)]


def test_equality_is_case_sensitive() -> None:
    assert numbers("correlation_id=a") == ["INC001"]
    assert numbers("correlation_id=A") == ["INC004"]


def test_string_operators() -> None:
    assert numbers("short_descriptionLIKEprinter") == ["INC002"]
    assert numbers("short_descriptionNOTLIKEprinter") == ["INC001", "INC003", "INC004"]
    assert numbers("short_descriptionSTARTSWITHPrinter") == ["INC001"]
    assert numbers("short_descriptionENDSWITHslow") == ["INC004"]
    assert numbers("state!=2") == ["INC001", "INC004"]


def test_empty_and_in_operators() -> None:
    assert numbers("correlation_idISEMPTY") == ["INC003"]
    assert numbers("correlation_idISNOTEMPTY") == ["INC001", "INC002", "INC004"]
    assert numbers("stateIN1,7") == ["INC001", "INC004"]
    assert numbers("stateNOT IN1,7") == ["INC002", "INC003"]


def test_numeric_comparison_when_both_sides_are_numbers() -> None:
    assert numbers("priority>9") == ["INC001"]
    assert numbers("priority<=9") == ["INC002", "INC003", "INC004"]


def test_and_binds_looser_than_or() -> None:
    # (state=1 OR state=7) AND priority=9
    assert numbers("state=1^ORstate=7^priority=9") == ["INC004"]
    assert numbers("state=2^priority=1") == ["INC003"]


def test_new_query_adds_rows() -> None:
    assert numbers("state=1^NQstate=7") == ["INC001", "INC004"]


def test_order_by_ascending_descending_and_numeric() -> None:
    assert numbers("ORDERBYDESCnumber") == ["INC004", "INC003", "INC002", "INC001"]
    # numeric, not lexical: 1 < 9 < 10; ties keep insertion order
    assert numbers("ORDERBYpriority") == ["INC003", "INC002", "INC004", "INC001"]
    assert numbers("state=2^ORDERBYDESCpriority") == ["INC002", "INC003"]


def test_misspelled_field_is_ignored_and_matches_everything() -> None:
    parsed = parse_encoded_query("correlaton_id=a", is_field)
    assert parsed.ignored == ("correlaton_id=a",)
    assert parsed.has_invalid_parts
    assert numbers("correlaton_id=a") == ["INC001", "INC002", "INC003", "INC004"]


def test_invalid_part_is_dropped_but_valid_parts_still_filter() -> None:
    assert numbers("correlaton_id=a^state=2") == ["INC002", "INC003"]
    assert numbers("###^state=7") == ["INC004"]
    assert numbers("ORDERBYnope^state=7") == ["INC004"]


def test_glued_word_operator_prefers_an_existing_field() -> None:
    parsed = parse_encoded_query("u_INDEX=1", is_field)
    assert parsed.queries == (((Condition("u_INDEX", "=", "1"),),),)


def test_values_may_contain_operator_characters() -> None:
    parsed = parse_encoded_query("short_description=a=b!=c", is_field)
    assert parsed.queries == (((Condition("short_description", "=", "a=b!=c"),),),)


def test_order_clauses_are_parsed() -> None:
    parsed = parse_encoded_query("ORDERBYnumber^ORDERBYDESCstate", is_field)
    assert parsed.order == (OrderBy("number", False), OrderBy("state", True))


def test_empty_query_matches_everything() -> None:
    assert numbers("") == ["INC001", "INC002", "INC003", "INC004"]


_values = st.text(alphabet=string.ascii_letters + string.digits + " -_", max_size=8)
_rows = st.lists(st.fixed_dictionaries({"state": _values, "correlation_id": _values}), max_size=12)


@given(rows=_rows, value=_values)
def test_equality_selects_exactly_the_equal_rows(rows: list[dict[str, str]], value: str) -> None:
    selected = select(rows, parse_encoded_query(f"correlation_id={value}", is_field), get)
    assert selected == [r for r in rows if r["correlation_id"] == value]


@given(rows=_rows, value=_values, junk=st.sampled_from(["nofield=1", "zzz", "ORDERBYnofield", "=x"]))
def test_an_invalid_part_never_changes_the_answer(rows: list[dict[str, str]], value: str, junk: str) -> None:
    plain = select(rows, parse_encoded_query(f"state={value}", is_field), get)
    with_junk = select(rows, parse_encoded_query(f"state={value}^{junk}", is_field), get)
    assert with_junk == plain
