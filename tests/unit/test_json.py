from __future__ import annotations

import pytest

from gcbridge import _json


def test_integers_beyond_64_bits_round_trip_exactly() -> None:
    big = {"n": -(2**63) - 1, "m": 2**70, "s": "é"}
    encoded = _json.dumps(big)
    assert encoded == b'{"n":-9223372036854775809,"m":1180591620717411303424,"s":"\xc3\xa9"}'
    assert _json.dumps_str(big) == encoded.decode()


def test_unserialisable_values_still_raise() -> None:
    with pytest.raises(TypeError):
        _json.dumps({"x": object()})
