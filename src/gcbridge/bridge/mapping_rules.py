"""One mapping rule as configured (``[[servicenow.mapping.rules]]``), and the built-in rules as data.

The built-in rules are a TOML table shipped in the package (``default_mapping.toml`` beside this module),
in the same format as the configuration file, so that what gcbridge does by default can be read (and copied
into your own file as a starting point) without reading code.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_MAPPING_RESOURCE", "FieldSpec", "MappingRule", "default_rules"]

DEFAULT_MAPPING_RESOURCE: Final = "default_mapping.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Model):
    """One target field: an expression (or a list of alternatives, first present wins) and how to finish it.

    * ``value``: a template (``"Genesys call {body.id}"``) or a path (``"$.body.participants[0].name"``);
      with a list, the first alternative that has a value wins.
    * ``map``: translate the value (``{connected = "work_in_progress"}``); a value not in the map counts as
      missing.
    * ``default``: used when the value is missing (or unmapped); without it the field is left out of the
      row, so an update never blanks a field that an earlier event set.
    * ``required``: a missing value rejects the event (dead-letter list, with the field named) instead.
    * ``max_length``: truncate longer values with the mapping's truncation marker.
    """

    value: str | list[str]
    map: dict[str, str] | None = None
    default: str | None = None
    required: bool = False
    max_length: int | None = Field(default=None, gt=0)


class MappingRule(_Model):
    """Events whose topic matches one of ``topics`` become one row for ``sink`` into ``target``.

    ``topics``: topic patterns; ``*`` is one segment, a final ``#`` any number of segments
    (``v2.detail.events.conversation.#``); the older final ``**`` still works, with a deprecation warning.
    ``sink``: ``import_set`` (``target`` = staging table; ServiceNow's transform map coalesces on
    ``key_field``), ``table`` (``target`` = table; upsert on ``key_field``, default ``correlation_id``),
    ``event`` (Event Management ``em/jsonv2``; ``key`` becomes the ``message_key``).
    ``key`` is the expression for the record's identity (a conversation, user or queue id); it is also the
    outbox order key, so events of one key are delivered one at a time, in order.
    """

    name: str = Field(min_length=1)
    topics: list[str] = Field(min_length=1)
    sink: str  # checked against gcbridge.servicenow.rows.SINKS when the mapping compiles
    target: str = ""
    key: str = ""
    key_field: str = ""
    fields: dict[str, str | list[str] | FieldSpec] = Field(default_factory=dict)
    on_transform_error: Literal["reject", "retry"] = "reject"


def default_rules() -> list[MappingRule]:
    """The built-in rules (``default_mapping.toml``), used when the config has no ``rules``."""
    return list(_default_rules())


@cache
def _default_rules() -> tuple[MappingRule, ...]:
    text = resources.files("gcbridge.bridge").joinpath(DEFAULT_MAPPING_RESOURCE).read_text("utf-8")
    return tuple(MappingRule.model_validate(rule) for rule in tomllib.loads(text)["rules"])
