"""``Event``: an immutable value whose ``dedup_key`` is computed once, on first use, unless given."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from gcbridge.core.dedup import dedup_key
from gcbridge.genesys.events import Event

TOPIC = "v2.users.u1.presence"
BODY = {"presenceDefinition": {"systemPresence": "Available"}, "id": "p1"}


def lazy() -> Event:
    return Event(TOPIC, dict(BODY), "2", {"CorrelationId": "c1"}, "", 1.7e9, "ch-1")


def test_fields_are_read_by_name_and_the_channel_defaults_to_empty() -> None:
    ev = Event(topic=TOPIC, body=BODY, version=None, metadata={}, dedup_key="k", received_at=2.5)
    assert (ev.topic, ev.body, ev.version, ev.metadata, ev.dedup_key, ev.received_at, ev.channel_id) == (
        TOPIC,
        BODY,
        None,
        {},
        "k",
        2.5,
        "",
    )


def test_an_empty_key_is_computed_from_topic_and_canonical_body_once() -> None:
    ev = lazy()
    first = ev.dedup_key
    assert first == dedup_key(TOPIC, {"id": "p1", "presenceDefinition": {"systemPresence": "Available"}})
    ev.body["id"] = "changed"  # the body is the caller's dict: the key was fixed at first use
    assert ev.dedup_key == first


def test_events_are_frozen() -> None:
    ev = lazy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.topic = "other"  # type: ignore[misc]
    # a property, not a field: CPython 3.11's frozen-with-slots __setattr__ refuses it with a TypeError
    with pytest.raises((AttributeError, TypeError)):
        ev.dedup_key = "other"  # type: ignore[misc]


def test_equality_is_by_value_with_the_key_computed_or_given() -> None:
    ev = lazy()
    assert ev == lazy()
    assert ev == Event(TOPIC, dict(BODY), "2", {"CorrelationId": "c1"}, ev.dedup_key, 1.7e9, "ch-1")
    assert ev != Event(TOPIC, dict(BODY), "2", {"CorrelationId": "c1"}, "another-key", 1.7e9, "ch-1")
    assert ev != Event(TOPIC, dict(BODY), "2", {"CorrelationId": "c1"}, "", 1.7e9, "ch-2")
    assert ev != (TOPIC, BODY)
    with pytest.raises(TypeError):
        hash(ev)


@pytest.mark.parametrize("read_key_first", [False, True])
def test_pickle_and_copy_keep_every_field(read_key_first: bool) -> None:
    ev = lazy()
    if read_key_first:
        _ = ev.dedup_key
    for clone in (pickle.loads(pickle.dumps(ev)), copy.copy(ev), copy.deepcopy(ev)):  # noqa: S301 - our own bytes
        assert type(clone) is Event
        assert clone == ev
        assert clone.dedup_key == ev.dedup_key


def test_repr_names_every_field_and_shows_the_key() -> None:
    ev = lazy()
    text = repr(ev)
    assert text.startswith(f"Event(topic={TOPIC!r}, body=")
    for name in ("version", "metadata", "received_at", "channel_id"):
        assert f"{name}=" in text
    assert f"dedup_key={ev.dedup_key!r}" in text
    assert "_dedup_key" not in text


def test_the_field_names_are_the_documented_ones() -> None:
    names = {f.name for f in dataclasses.fields(Event)} - {"_dedup_key"}
    assert names | {"dedup_key"} == {
        "topic",
        "body",
        "version",
        "metadata",
        "dedup_key",
        "received_at",
        "channel_id",
    }
    assert not hasattr(lazy(), "__dict__")  # slots
