"""The encoded-query language of ``sysparm_query`` (a subset), parsed and evaluated without I/O.

Grammar: conditions joined by ``^`` (AND); a condition written ``^ORfield=value`` is OR-ed with the one before
it (so ``a^ORb^c`` is ``(a OR b) AND c``); ``^NQ`` starts a new query whose rows are added to the first;
``ORDERBYfield`` / ``ORDERBYDESCfield`` sort. Operators: ``=``, ``!=``, ``LIKE``, ``NOTLIKE``, ``STARTSWITH``,
``ENDSWITH``, ``ISEMPTY``, ``ISNOTEMPTY``, ``IN``, ``NOT IN``, ``<``, ``<=``, ``>``, ``>=``. Column names,
operators and values are case-sensitive, as the Table API documentation says.

Like a real instance, parts that do not parse or that name a column the table does not have are **ignored**
(collected in :attr:`EncodedQuery.ignored`), so a misspelled field matches every row. An instance with
``glide.invalid_query.returns_no_rows=true`` returns no rows instead; the caller decides with
:attr:`EncodedQuery.has_invalid_parts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

R = TypeVar("R")
FieldGetter = Callable[[R, str], str]

# Longest first, so that ``NOTLIKE`` is not read as a field ending in ``NOT`` followed by ``LIKE``.
_WORD_OPERATORS: Final = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOTLIKE",
    "LIKE",
    "STARTSWITH",
    "ENDSWITH",
    "NOT IN",
    "IN",
)
_SYMBOL_OPERATORS: Final = ("!=", ">=", "<=", "=", ">", "<")
_NO_VALUE_OPERATORS: Final = frozenset({"ISEMPTY", "ISNOTEMPTY"})
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    operator: str
    value: str


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: str
    descending: bool


@dataclass(frozen=True, slots=True)
class EncodedQuery:
    """``queries`` are alternatives (``^NQ``); each is an AND of OR-groups of conditions."""

    queries: tuple[tuple[tuple[Condition, ...], ...], ...]
    order: tuple[OrderBy, ...]
    ignored: tuple[str, ...]

    @property
    def has_invalid_parts(self) -> bool:
        return bool(self.ignored)


def _candidates(term: str) -> list[Condition]:
    """Every way to read ``term`` as ``fieldOPvalue``, leftmost operator first."""
    ident = _IDENT.match(term)
    if ident is None:
        return []
    found: list[Condition] = []
    # Word operators are upper case and may be glued to the field (``short_descriptionLIKEfoo``).
    for cut in range(1, ident.end() + 1):
        rest = term[cut:]
        for op in _WORD_OPERATORS:
            if rest.startswith(op):
                value = rest[len(op) :]
                if op in _NO_VALUE_OPERATORS and value:
                    continue
                found.append(Condition(term[:cut], op, value))
                break
    rest = term[ident.end() :]
    for op in _SYMBOL_OPERATORS:
        if rest.startswith(op):
            found.append(Condition(term[: ident.end()], op, rest[len(op) :]))
            break
    return found


def _split_condition(term: str, is_field: Callable[[str], bool]) -> Condition | None:
    """The reading with the longest existing field (``u_INDEX=1``, not ``u_`` IN ``DEX=1``), else leftmost."""
    candidates = _candidates(term)
    valid = [c for c in candidates if is_field(c.field)]
    if valid:
        return max(valid, key=lambda c: len(c.field))
    return candidates[0] if candidates else None


def parse_encoded_query(text: str, is_field: Callable[[str], bool]) -> EncodedQuery:
    """Parse ``text``; ``is_field`` says whether a (possibly dot-walked) column exists on the table."""
    queries: list[tuple[tuple[Condition, ...], ...]] = []
    order: list[OrderBy] = []
    ignored: list[str] = []
    for sub in text.split("^NQ"):
        groups: list[list[Condition]] = []
        for term in sub.split("^"):
            if not term:
                continue
            if term.startswith("ORDERBYDESC"):
                _add_order(term[len("ORDERBYDESC") :], True, order, ignored, is_field, term)
                continue
            if term.startswith("ORDERBY"):
                _add_order(term[len("ORDERBY") :], False, order, ignored, is_field, term)
                continue
            if term.startswith("OR") and groups:
                alternative = _split_condition(term[2:], is_field)
                if alternative is not None and is_field(alternative.field):
                    groups[-1].append(alternative)
                    continue
            condition = _split_condition(term, is_field)
            if condition is None or not is_field(condition.field):
                ignored.append(term)
                continue
            groups.append([condition])
        queries.append(tuple(tuple(group) for group in groups))
    return EncodedQuery(tuple(queries), tuple(order), tuple(ignored))


def _add_order(
    field: str,
    descending: bool,
    order: list[OrderBy],
    ignored: list[str],
    is_field: Callable[[str], bool],
    term: str,
) -> None:
    if field and is_field(field):
        order.append(OrderBy(field, descending))
    else:
        ignored.append(term)


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _compare(actual: str, expected: str) -> int:
    a, b = _as_number(actual), _as_number(expected)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return (actual > expected) - (actual < expected)


_PREDICATES: Final[dict[str, Callable[[str, str], bool]]] = {
    "=": lambda actual, value: actual == value,
    "!=": lambda actual, value: actual != value,
    "LIKE": lambda actual, value: value in actual,
    "NOTLIKE": lambda actual, value: value not in actual,
    "STARTSWITH": lambda actual, value: actual.startswith(value),
    "ENDSWITH": lambda actual, value: actual.endswith(value),
    "ISEMPTY": lambda actual, _value: actual == "",
    "ISNOTEMPTY": lambda actual, _value: actual != "",
    "IN": lambda actual, value: actual in value.split(","),
    "NOT IN": lambda actual, value: actual not in value.split(","),
    ">": lambda actual, value: _compare(actual, value) > 0,
    ">=": lambda actual, value: _compare(actual, value) >= 0,
    "<": lambda actual, value: _compare(actual, value) < 0,
    "<=": lambda actual, value: _compare(actual, value) <= 0,
}


def matches(row: R, query: EncodedQuery, get: FieldGetter[R]) -> bool:
    """True if ``row`` satisfies one of the alternatives. An empty query matches everything."""
    if not query.queries:
        return True
    return any(
        all(any(_PREDICATES[c.operator](get(row, c.field), c.value) for c in group) for group in alternative)
        for alternative in query.queries
    )


def _sort_key(value: str) -> tuple[int, float, str]:
    number = _as_number(value)
    return (0, number, "") if number is not None else (1, 0.0, value)


def select(rows: Iterable[R], query: EncodedQuery, get: FieldGetter[R]) -> list[R]:
    """The rows that match, in the query's order (stable: ties keep insertion order)."""
    selected = [row for row in rows if matches(row, query, get)]
    for clause in reversed(query.order):  # stable sorts, last key first: the first clause ends up dominant

        def key(row: R, column: str = clause.field) -> tuple[int, float, str]:
            return _sort_key(get(row, column))

        selected.sort(key=key, reverse=clause.descending)
    return selected


def equality_query(pairs: Sequence[tuple[str, str]], is_field: Callable[[str], bool]) -> EncodedQuery:
    """The ``&field=value`` alternative to ``sysparm_query``: unknown columns are ignored the same way."""
    conditions = tuple((Condition(f, "=", v),) for f, v in pairs if is_field(f))
    ignored = tuple(f"{f}={v}" for f, v in pairs if not is_field(f))
    return EncodedQuery((conditions,), (), ignored)
