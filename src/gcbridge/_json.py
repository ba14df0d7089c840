"""One JSON codec for the whole package (orjson: measurably faster on event-sized messages)."""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError as exc:
        # orjson refuses integers beyond 64 bits; the standard library writes them exactly. Anything else
        # that orjson cannot serialise the standard library cannot either, so its error stands.
        if "64-bit" not in str(exc):
            raise
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_str(obj: Any) -> str:
    return dumps(obj).decode()
