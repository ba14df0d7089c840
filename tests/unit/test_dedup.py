from __future__ import annotations

import pytest

from gcbridge.core.dedup import DedupWindow, dedup_key


def test_key_ignores_key_order_but_not_content() -> None:
    a = dedup_key("v2.users.u1.presence", {"a": 1, "b": {"x": 1, "y": 2}})
    b = dedup_key("v2.users.u1.presence", {"b": {"y": 2, "x": 1}, "a": 1})
    assert a == b
    assert a != dedup_key("v2.users.u2.presence", {"a": 1, "b": {"x": 1, "y": 2}})
    assert a != dedup_key("v2.users.u1.presence", {"a": 2, "b": {"x": 1, "y": 2}})
    assert len(a) == 32


def test_window_drops_repeats_then_forgets_them() -> None:
    w = DedupWindow(window=10.0, max_entries=100)
    assert w.first("k", 0.0)
    assert not w.first("k", 5.0)
    assert w.first("other", 10.5)
    w.expire(10.5)  # also done every 64 inserts
    assert "k" not in w
    assert w.first("k", 11.0)


def test_window_size_bound_forgets_oldest_first() -> None:
    w = DedupWindow(window=1000.0, max_entries=3)
    for i, k in enumerate("abcd"):
        assert w.first(k, float(i))
    assert len(w) == 3
    assert "a" not in w
    assert w.evicted_early == 1
    assert not w.first("d", 5.0)


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        DedupWindow(window=0)
