"""The per-frame work of the socket readers and the consumer (stamp, parse, classify, de-duplicate, build the
Event; ``async for``): compiled when the extension was built (``_intake_c``, Cython), else the Python
reference (``_intake_py``), which documents it.

``GCBRIDGE_PURE_PYTHON=1`` in the environment picks the Python one (for debugging); ``COMPILED`` says which
runs. Both behave the same and use the same constants (``tests/unit/test_intake.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from gcbridge.genesys import _intake_py
from gcbridge.genesys._intake_py import (
    CLOSED,
    DUPLICATE,
    EVENT,
    FULL,
    MALFORMED,
    OTHER,
    SHARED,
    TAKEN,
    UNKNOWN_TOPIC,
)

_impl: Any = _intake_py
if os.environ.get("GCBRIDGE_PURE_PYTHON", "") in ("", "0"):
    with contextlib.suppress(ImportError):  # built without a C compiler or Cython: the Python one
        from gcbridge.genesys import _intake_c as _impl

COMPILED: bool = _impl is not _intake_py
Intake: type[_intake_py.Intake] = _impl.Intake
DedupWindow: type[_intake_py.DedupWindow] = _impl.DedupWindow
Stream: type[_intake_py.Stream] = _impl.Stream
starts_as_event: Callable[[object], bool] = _impl.starts_as_event

__all__ = [
    "CLOSED",
    "COMPILED",
    "DUPLICATE",
    "EVENT",
    "FULL",
    "MALFORMED",
    "OTHER",
    "SHARED",
    "TAKEN",
    "UNKNOWN_TOPIC",
    "DedupWindow",
    "Intake",
    "Stream",
    "starts_as_event",
]
