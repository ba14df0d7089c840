"""The config template's commented defaults are the real defaults: an operator who reads
``# total = 50.0`` and leaves the line commented gets 50.0."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from importlib import resources
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gcbridge.bridge.config import BridgeConfig
from gcbridge.core.backoff import BackoffPolicy
from gcbridge.genesys.client_types import ClientOptions

SECTION = re.compile(r"^#?\s*\[(\[?)([\w.]+)\]\]?\s*(?:#.*)?$")
COMMENTED_KEY = re.compile(r"^#\s*(\w+)\s*=\s*(.+?)\s*(?:#.*)?$")
UNSET: Any = object()


def template() -> str:
    return resources.files("gcbridge.bridge").joinpath("static", "gcbridge.example.toml").read_text("utf-8")


def section_defaults(section: str) -> dict[str, Any] | None:
    """The defaults of a ``[section]`` (``None`` for a section with no model of its own, or for a list)."""
    if section == "genesys.client":  # a free table, checked against the client's own options
        return {f.name: _dataclass_default(f) for f in dataclasses.fields(ClientOptions)}
    model: Any = BridgeConfig
    for part in section.split("."):
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        # an optional section (`ha: HaConfig | None`) has the defaults of its model
        optional = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(optional) == 1:
            annotation = optional[0]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return {name: _pydantic_default(f) for name, f in model.model_fields.items()}


def _dataclass_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return UNSET


def _pydantic_default(field: Any) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return UNSET if field.default is PydanticUndefined else field.default


def as_default(value: Any) -> Any:
    """A default as the template would write it (a backoff policy is a table)."""
    if isinstance(value, BackoffPolicy):
        written = dataclasses.asdict(value)
        written.pop("jitter", None)  # the template states the three numbers; jitter is described in words
        return written
    return value


def commented_defaults(text: str) -> list[tuple[str, str, Any]]:
    """Every ``# key = value`` line of the template, with the section it is in; lines under a commented list
    section (``# [[servicenow.mapping.rules]]``, an example) are left out."""
    out, section, in_list = [], "", False
    for line in text.splitlines():
        if header := SECTION.match(line):
            section, in_list = header.group(2), bool(header.group(1))
            continue
        if in_list or not (key := COMMENTED_KEY.match(line)):
            continue
        try:
            value = tomllib.loads(f"v = {key.group(2)}")["v"]
        except tomllib.TOMLDecodeError:
            continue  # prose that happens to contain "="
        out.append((section, key.group(1), value))
    return out


def test_every_commented_default_is_the_real_default() -> None:
    claims = commented_defaults(template())
    checked = 0
    for section, key, written in claims:
        defaults = section_defaults(section)
        if defaults is None:
            continue
        assert key in defaults, f"[{section}] {key}: no such option (renamed or removed?)"
        real = as_default(defaults[key])
        if real is None or real is UNSET:
            continue  # an example value for an option that has no default (a path, a secret file)
        if isinstance(written, dict) and isinstance(real, dict):
            real = {k: real[k] for k in written}
        assert written == real, f"[{section}] {key}: the template says {written!r}, the default is {real!r}"
        checked += 1
    assert checked >= 15, claims  # the template states most defaults; a parser that saw none proves nothing


def test_a_wrong_default_in_the_template_is_caught() -> None:
    wrong = template().replace("# total = 50.0", "# total = 65.0")
    (claim,) = [c for c in commented_defaults(wrong) if c[:2] == ("servicenow.timeouts", "total")]
    defaults = section_defaults("servicenow.timeouts")
    assert defaults is not None
    assert claim[2] == 65.0 != defaults["total"]
