"""The mapping expression language: small, safe, compiled once at start-up.

Two spellings of one language:

* a **template**: text with placeholders, ``"Genesys call {body.id}"``; ``{{`` and ``}}`` are literal braces;
* a **path**: a string starting with ``$``, ``"$.eventBody.participants[0].name"``, the whole value.

A path starts at a root and walks into it:

=====================  =====================================================================================
``topic``              the topic name (alias ``topicName``)
``topic_parts``        the topic split at dots: ``topic_parts[3]`` is the queue id of
                       ``v2.routing.queues.<id>.conversations``; negative indexes count from the end
``body``               the event body (alias ``eventBody``)
``metadata``           the event metadata
``version``            the event version
``dedup_key``          the bridge's unique id of the event
``received_at``        when the bridge received the event, ``YYYY-MM-DD HH:MM:SS`` UTC
=====================  =====================================================================================

Steps: ``.name``, ``[3]``, ``[-1]``, ``['odd key']``, and a filter ``[?purpose=='customer']`` (also ``!=``,
a dotted field, and a string, number, ``true``/``false`` or ``null`` literal) that selects the *first* list
element that matches. After the path, ``| name`` applies a function: ``datetime`` (ISO-8601 or epoch
milliseconds to ServiceNow's ``YYYY-MM-DD HH:MM:SS`` UTC), ``lower``, ``upper``, ``trim``, ``json``,
``seconds`` (milliseconds to whole seconds), ``exists`` (the empty string when the value is present: a
presence test for an alternative, ``"voice{body.participants[0].calls|exists}"`` is ``voice`` when the
participant has calls and missing otherwise).

Evaluation never raises: a step into something absent gives :data:`MISSING`; a template with a missing
placeholder is missing as a whole; a function that cannot convert its input gives :class:`Unconvertible`
(the caller leaves the field out and notes why). There is no arithmetic, no calls, no attribute access on
Python objects: only dict keys and list indexes of parsed JSON.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gcbridge import _json

__all__ = [
    "MISSING",
    "ROOTS",
    "EventView",
    "Expression",
    "ExpressionError",
    "Memo",
    "Unconvertible",
    "compile_expression",
    "first_present",
    "render",
    "sn_datetime",
]


class ExpressionError(ValueError):
    """A malformed expression; the message says where (``at column N``) and what was expected."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class Unconvertible:
    """A function could not convert its input (``datetime`` of ``"soon"``): why, for the delivery note."""

    reason: str


@dataclass(frozen=True, slots=True)
class EventView:
    """The parts of an event an expression can see (built from an Event or an outbox payload)."""

    topic: str
    body: Any
    metadata: Any
    version: str | None
    dedup_key: str
    received_at: float

    def root(self, name: str) -> Any:
        if name in ("topic", "topicName"):
            return self.topic
        if name == "topic_parts":
            return self.topic.split(".")
        if name in ("body", "eventBody"):
            return self.body
        if name == "metadata":
            return self.metadata
        if name == "version":
            return MISSING if self.version is None else self.version
        if name == "dedup_key":
            return self.dedup_key
        if name == "received_at":
            return sn_datetime(self.received_at)
        return MISSING


#: Roots that are two names for one thing.
_ROOT_ALIAS: Final = {"topicName": "topic", "eventBody": "body"}

ROOTS: Final = frozenset(
    {
        "topic",
        "topicName",
        "topic_parts",
        "body",
        "eventBody",
        "metadata",
        "version",
        "dedup_key",
        "received_at",
    }
)


def sn_datetime(value: Any) -> str | Unconvertible:
    """ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC) from ISO-8601 text, epoch milliseconds, or epoch seconds.

    Numbers above 1e11 are milliseconds (Genesys detail events), smaller ones seconds.
    """
    if isinstance(value, bool):
        return Unconvertible(f"cannot convert {value!r} to a date-time")
    if isinstance(value, int | float):
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
        except (OverflowError, OSError, ValueError):
            return Unconvertible(f"cannot convert {value!r} to a date-time")
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            return Unconvertible(f"cannot convert {value[:60]!r} to a date-time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
    else:
        return Unconvertible(f"cannot convert a {type(value).__name__} to a date-time")
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(value: Any) -> str | _Missing:
    """A JSON value as the flat string ServiceNow wants (``None`` is missing; objects become JSON text)."""
    if value is MISSING or value is None:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return _json.dumps_str(value)


def _fn_seconds(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value // 1000)
    return Unconvertible(f"cannot convert {value!r} from milliseconds to seconds")


def _fn_text(op: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        text = render(value)
        return MISSING if text is MISSING else op(str(text))

    return apply


_FUNCTIONS: Final[dict[str, Callable[[Any], Any]]] = {
    "datetime": sn_datetime,
    "lower": _fn_text(str.lower),
    "upper": _fn_text(str.upper),
    "trim": _fn_text(str.strip),
    "json": lambda value: _json.dumps_str(value),
    "seconds": _fn_seconds,
    "exists": lambda value: "",
}

# ---- compiled steps ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    name: str

    def apply(self, value: Any) -> Any:
        if isinstance(value, dict):
            return value.get(self.name, MISSING)
        return MISSING


@dataclass(frozen=True, slots=True)
class _Index:
    index: int

    def apply(self, value: Any) -> Any:
        if isinstance(value, list) and -len(value) <= self.index < len(value):
            return value[self.index]
        return MISSING


@dataclass(frozen=True, slots=True)
class _Filter:
    field: tuple[str, ...]
    equal: bool
    literal: Any

    def apply(self, value: Any) -> Any:
        if not isinstance(value, list):
            return MISSING
        for item in value:
            found = item
            for name in self.field:
                found = found.get(name, MISSING) if isinstance(found, dict) else MISSING
            if (found == self.literal and found is not MISSING) is self.equal:
                return item
        return MISSING


_Step = _Key | _Index | _Filter


#: A per-event memo (see :meth:`Expression.evaluate`): what the shared sub-paths gave for one event.
Memo = dict[Any, Any]

#: Roots that are computed, not just read: worth remembering for the rest of the event.
_COMPUTED_ROOTS: Final = frozenset({"topic_parts", "received_at"})


def _walk(value: Any, steps: tuple[_Step, ...]) -> Any:
    for step in steps:
        if value is MISSING:
            return MISSING
        value = step.apply(value)
    return value


@dataclass(frozen=True, slots=True)
class _Path:
    source: str
    root: str
    steps: tuple[_Step, ...]
    functions: tuple[str, ...]
    # The steps up to and including the last filter: the part of the walk that many paths of one rule share
    # (``body.participants[?purpose=='customer']`` is the head of about twenty of the built-in conversation
    # fields), remembered per event under ``head_key``; ``tail`` is the rest of the walk.
    head: tuple[_Step, ...] = field(init=False, repr=False, compare=False)
    tail: tuple[_Step, ...] = field(init=False, repr=False, compare=False)
    head_key: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        last_filter = max((i for i, s in enumerate(self.steps) if isinstance(s, _Filter)), default=-1)
        head, tail = self.steps[: last_filter + 1], self.steps[last_filter + 1 :]
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "tail", tail)
        # A string (its hash is cached; a tuple of dataclasses would hash and compare field by field on every
        # lookup): the root, its aliases (body/eventBody) as one, and the steps' reprs, which are equal only
        # for steps that are equal, so equal keys mean equal walks.
        key = repr((_ROOT_ALIAS.get(self.root, self.root), head)) if head else None
        object.__setattr__(self, "head_key", key)

    def _root(self, event: EventView, memo: Memo | None) -> Any:
        if memo is None or self.root not in _COMPUTED_ROOTS:
            return event.root(self.root)
        try:
            return memo[self.root]
        except KeyError:
            value = memo[self.root] = event.root(self.root)
            return value

    def evaluate(self, event: EventView, memo: Memo | None = None) -> Any:
        """The path's value; with ``memo`` (one dict per event, see :meth:`Expression.evaluate`) the walk to
        the last filter is done once per event for all paths that share it."""
        if memo is None or self.head_key is None:
            value = _walk(self._root(event, memo), self.steps)
        else:
            try:
                value = memo[self.head_key]
            except KeyError:
                value = memo[self.head_key] = _walk(self._root(event, memo), self.head)
            for step in self.tail:  # _walk inlined: this is the per-field hot path
                if value is MISSING:
                    return MISSING
                value = step.apply(value)
        if not self.functions:
            return value
        for name in self.functions:
            if value is MISSING or value is None or isinstance(value, Unconvertible):
                return value
            value = _FUNCTIONS[name](value)
        return value


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled template or path; :meth:`evaluate` gives a string, :data:`MISSING` or an Unconvertible."""

    source: str
    parts: tuple[str | _Path, ...]
    # the path when the expression is one path and nothing else (most are): decided once, not per event
    single: _Path | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        only = self.parts[0] if len(self.parts) == 1 else None
        object.__setattr__(self, "single", only if isinstance(only, _Path) else None)

    @property
    def roots(self) -> frozenset[str]:
        return frozenset(p.root for p in self.parts if isinstance(p, _Path))

    def evaluate(self, event: EventView, memo: Memo | None = None) -> str | _Missing | Unconvertible:
        """Evaluate for ``event``. ``memo``: a dict that lives for one event (and only one), shared by all
        the expressions evaluated for it, so that their common sub-paths are walked once."""
        if self.single is not None:
            value = self.single.evaluate(event, memo)
            return value if isinstance(value, Unconvertible) else render(value)
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.evaluate(event, memo)
            if isinstance(value, Unconvertible):
                return value
            text = render(value)
            if text is MISSING:
                return MISSING
            out.append(str(text))
        return "".join(out)


# ---- parsing ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INT = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_SPACE = re.compile(r"\s*")


class _Parser:
    """Recursive descent over one path (``root steps* ('|' name)*``); ``pos`` indexes ``text``."""

    def __init__(self, text: str, offset: int) -> None:
        self.text = text
        self.pos = 0
        self.offset = offset  # column of text[0] in the whole expression, for messages

    def fail(self, what: str) -> ExpressionError:
        column = self.offset + self.pos + 1
        return ExpressionError(f"{what} at column {column}")

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()

    def name(self, what: str) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected {what}")
        self.pos = match.end()
        return match.group()

    def literal(self) -> Any:
        text, pos = self.text, self.pos
        if pos < len(text) and text[pos] in "'\"":
            end = text.find(text[pos], pos + 1)
            if end < 0:
                raise self.fail("unterminated string")
            self.pos = end + 1
            return text[pos + 1 : end]
        match = _NUMBER.match(text, pos)
        if match is not None:
            self.pos = match.end()
            return float(match.group()) if match.group(1) else int(match.group())
        for word, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                self.pos += len(word)
                return value
        raise self.fail("expected a string, number, true, false or null")

    def bracket(self) -> _Step:
        self.pos += 1  # '['
        self.skip_space()
        text = self.text
        if text.startswith("?", self.pos):
            self.pos += 1
            self.skip_space()
            field = [self.name("a field name after '[?'")]
            while text.startswith(".", self.pos):
                self.pos += 1
                field.append(self.name("a field name"))
            self.skip_space()
            if text.startswith("==", self.pos):
                equal = True
            elif text.startswith("!=", self.pos):
                equal = False
            else:
                raise self.fail("expected '==' or '!=' in a filter")
            self.pos += 2
            self.skip_space()
            step: _Step = _Filter(tuple(field), equal, self.literal())
        elif self.pos < len(text) and text[self.pos] in "'\"":
            step = _Key(str(self.literal()))
        else:
            match = _INT.match(text, self.pos)
            if match is None:
                raise self.fail("expected an index, a quoted key or a '?' filter after '['")
            self.pos = match.end()
            step = _Index(int(match.group()))
        self.skip_space()
        if not text.startswith("]", self.pos):
            raise self.fail("expected ']'")
        self.pos += 1
        return step

    def path(self) -> _Path:
        self.skip_space()
        text = self.text
        if text.startswith("$", self.pos):
            self.pos += 1
            if not text.startswith(".", self.pos):
                raise self.fail("expected '.' after '$'")
            self.pos += 1
        root_at = self.pos
        root = self.name("a root (one of " + ", ".join(sorted(ROOTS)) + ")")
        if root not in ROOTS:
            self.pos = root_at
            raise self.fail(f"unknown root {root!r} (expected one of {', '.join(sorted(ROOTS))})")
        steps: list[_Step] = []
        while self.pos < len(text):
            char = text[self.pos]
            if char == ".":
                self.pos += 1
                steps.append(_Key(self.name("a field name after '.'")))
            elif char == "[":
                steps.append(self.bracket())
            else:
                break
        functions: list[str] = []
        self.skip_space()
        while text.startswith("|", self.pos):
            self.pos += 1
            self.skip_space()
            at = self.pos
            name = self.name("a function name after '|'")
            if name not in _FUNCTIONS:
                self.pos = at
                raise self.fail(
                    f"unknown function {name!r} (expected one of {', '.join(sorted(_FUNCTIONS))})"
                )
            functions.append(name)
            self.skip_space()
        if self.pos != len(text):
            raise self.fail(f"unexpected {text[self.pos]!r}")
        return _Path(text.strip(), root, tuple(steps), tuple(functions))


def _template_parts(source: str) -> list[str | _Path]:
    parts: list[str | _Path] = []
    literal: list[str] = []
    pos = 0
    while pos < len(source):
        char = source[pos]
        if char == "{" and source.startswith("{{", pos):
            literal.append("{")
            pos += 2
        elif char == "}" and source.startswith("}}", pos):
            literal.append("}")
            pos += 2
        elif char == "{":
            end = _placeholder_end(source, pos)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Parser(source[pos + 1 : end], pos + 1).path())
            pos = end + 1
        elif char == "}":
            raise ExpressionError(f"single '}}' at column {pos + 1} (write '}}}}' for a literal brace)")
        else:
            literal.append(char)
            pos += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _placeholder_end(source: str, start: int) -> int:
    """Index of the ``}`` closing the placeholder at ``start``, skipping quoted strings in filters."""
    pos = start + 1
    quote = ""
    while pos < len(source):
        char = source[pos]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "}":
            return pos
        pos += 1
    raise ExpressionError(f"unclosed '{{' at column {start + 1}")


def compile_expression(source: str) -> Expression:
    """Compile a template or a ``$``-path; raises :class:`ExpressionError` with the column of the problem."""
    if source.lstrip().startswith("$"):
        offset = len(source) - len(source.lstrip())
        return Expression(source, (_Parser(source.strip(), offset).path(),))
    return Expression(source, tuple(_template_parts(source)))


def first_present(
    expressions: Sequence[Expression], event: EventView, memo: Memo | None = None
) -> tuple[str | _Missing, list[Unconvertible]]:
    """The first alternative with a value, and the conversion problems met on the way (``memo``: see
    :meth:`Expression.evaluate`)."""
    problems: list[Unconvertible] = []
    for expression in expressions:
        value = expression.evaluate(event, memo)
        if isinstance(value, Unconvertible):
            problems.append(value)
        elif value is not MISSING:
            return value, problems
    return MISSING, problems
